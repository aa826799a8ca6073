/** The README's configuration reference stays complete: every key and variable is listed. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { configKeys } from '../libs/runtime/config.js';

describe('README', () => {
  it('documents every configuration key with its environment variable', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    for (const k of configKeys) {
      assert.ok(readme.includes(`| \`${k.path}\` | \`${k.env}\` |`), `README lacks a row for ${k.path}`);
    }
  });
});
