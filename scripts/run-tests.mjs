#!/usr/bin/env node
// Runs every *.test.ts under the source folders with Node's own test runner (TypeScript
// through tsx). Extra arguments are passed through, e.g. a file list to run only those.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const roots = ['libs', 'services', 'cmd', 'test'];
const args = process.argv.slice(2);
const files = args.filter((a) => !a.startsWith('--'));
const flags = args.filter((a) => a.startsWith('--'));

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
}

if (files.length === 0) for (const r of roots) walk(r, files);
files.sort();
const res = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=180000', ...flags, ...files],
  { stdio: 'inherit', env: { ...process.env, TELEMESH_LOG_LEVEL: process.env.TELEMESH_LOG_LEVEL ?? 'silent' } },
);
process.exit(res.status ?? 1);
