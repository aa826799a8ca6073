#!/usr/bin/env node
// Runs every *.test.ts under the source folders with Node's own test runner (TypeScript
// through tsx). Extra arguments are passed through: files or folders to run only those,
// and `--` flags for the test runner.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const roots = ['libs', 'services', 'cmd', 'test'];
const args = process.argv.slice(2);
const selected = args.filter((a) => !a.startsWith('--'));
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

const files = [];
// A folder stands for the test files under it; with nothing selected, every source folder.
for (const p of selected.length === 0 ? roots : selected) {
  if (statSync(p, { throwIfNoEntry: false })?.isDirectory()) walk(p, files);
  else files.push(p);
}
files.sort();
const res = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=180000', ...flags, ...files],
  { stdio: 'inherit', env: { ...process.env, TELEMESH_LOG_LEVEL: process.env.TELEMESH_LOG_LEVEL ?? 'silent' } },
);
process.exit(res.status ?? 1);
