import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { flag, parseArgs } from './args.js';

describe('parseArgs', () => {
  it('splits command, flags in both forms, boolean flags and positionals', () => {
    const a = parseArgs(['serve', '--target=all', '--server.httpPort', '7500', '--config.verify', 'x', '--', '--raw'], new Set(['config.verify']));
    assert.equal(a.command, 'serve');
    assert.deepEqual(a.flags, [
      ['target', 'all'],
      ['server.httpPort', '7500'],
      ['config.verify', ''],
    ]);
    assert.deepEqual(a.positionals, ['x', '--raw']);
    assert.equal(flag(a, 'target'), 'all');
    assert.equal(flag(a, 'missing'), undefined);
  });

  it('treats a trailing flag without value as boolean', () => {
    const a = parseArgs(['query', 'up', '--json'], new Set());
    assert.deepEqual(a.flags, [['json', '']]);
    assert.deepEqual(a.positionals, ['up']);
  });
});
