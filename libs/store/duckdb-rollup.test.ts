import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
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

describe('DuckDB columnar writes and rollup bookkeeping', () => {
  const MIN5 = 5 * 60_000;
  const cpu = Object.freeze([Object.freeze({ name: '__name__', value: 'cpu' }), Object.freeze({ name: 'host', value: 'a' })]);
  const rows = (ts: number[], vs: number[]) => ({ rowCount: ts.length, labels: ts.map(() => cpu), timestampsMs: Float64Array.from(ts), values: Float64Array.from(vs) });

  it('marks late windows dirty in the write transaction, so compaction folds them in', async () => {
    const clock = { now: 100 * MIN5 };
    n += 1;
    const store = await openDuckDbStore({ path: join(root, `c${n}.duckdb`), logger, now: () => clock.now, compactionIntervalMs: 0, retentionIntervalMs: 0 });
    try {
      await store.writeColumns!('t', 'b1', rows([10 * MIN5, 10 * MIN5 + 1000], [1, 3]));
      assert.equal(await store.rollupsCompleteBefore('t'), 10 * MIN5);
      await store.compact();
      assert.equal(await store.rollupsCompleteBefore('t'), Infinity);
      // Late data, spread over windows far apart: each touched window is marked.
      await store.writeColumns!('t', 'b2', rows([10 * MIN5 + 2000, 40 * MIN5], [5, 7]));
      assert.equal(await store.rollupsCompleteBefore('t'), 10 * MIN5);
      await store.compact();
      const [s] = await store.selectRollup('t', [], 0, Infinity, MIN5);
      assert.deepEqual(
        s!.windows.map((w) => [w.startMs, w.count, w.sum]),
        [
          [10 * MIN5, 3, 9],
          [40 * MIN5, 1, 7],
        ],
      );
    } finally {
      await store.close();
    }
  });

  it('writes a series row again after retention deleted it, though its label set is cached', async () => {
    const DAY = 86_400_000;
    const clock = { now: 1000 * DAY };
    n += 1;
    const store = await openDuckDbStore({ path: join(root, `c${n}.duckdb`), logger, now: () => clock.now, compactionIntervalMs: 0, retentionIntervalMs: 0, retention: { rawRetentionMs: DAY, tiers: [] } });
    try {
      await store.writeColumns!('t', 'b1', rows([clock.now - 10], [1]));
      clock.now += 3 * DAY;
      const r = await store.applyRetention();
      assert.equal(r.seriesDeleted, 1);
      await store.writeColumns!('t', 'b2', rows([clock.now], [2]));
      const got = await store.select('t', [], 0, Infinity);
      assert.deepEqual(got, [{ labels: [...cpu].map((l) => ({ ...l })), timestampsMs: [clock.now], values: [2] }]);
    } finally {
      await store.close();
    }
  });
});
