import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { pino } from 'pino';
import { openDuckDbStore } from './duckdb.js';
import { runRollupStoreContract } from './rollup-contract.js';

const logger = pino({ level: process.env.TELEMESH_LOG_LEVEL ?? 'silent' });
let root = '';
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'telemesh-rollup-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

runRollupStoreContract('duckdb', (now) => {
  n += 1;
  return openDuckDbStore({ path: join(root, `r${n}.duckdb`), logger, now, compactionIntervalMs: 0, retentionIntervalMs: 0 });
});
