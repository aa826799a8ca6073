import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { SeriesSamples } from '../model/index.js';
import { openDuckDbStore } from './duckdb.js';
import { measureBytesPerSample } from './measure.js';
import { runRollupStoreContract } from './rollup-contract.js';
import type { RollupStore } from './rollup.js';

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

// Again with every whole span sealed as soon as it has ended: the 30-day case then reads
// its hourly windows out of sealed rollup chunks.
runRollupStoreContract('duckdb, sealing as soon as it may', (now) => {
  n += 1;
  return openDuckDbStore({ path: join(root, `r${n}.duckdb`), logger, now, compactionIntervalMs: 0, retentionIntervalMs: 0, sealAfterMs: 1 });
});

describe('DuckDB sealed rollup windows', () => {
  const MIN = 60_000;
  const HOUR = 60 * MIN;
  const DAY = 24 * HOUR;
  const T0 = 20_000 * DAY;

  /** Two tenants' series over `hours` from T0, one sample every 30 s (values with two decimals). */
  function day(from: number, hours: number): SeriesSamples[] {
    const out: SeriesSamples[] = [];
    for (const host of ['a', 'b', 'c']) {
      const ts: number[] = [];
      const vs: number[] = [];
      for (let t = from; t < from + hours * HOUR; t += 30_000) {
        ts.push(t + (host === 'b' ? 7 : 0));
        vs.push(Math.round((50 + 10 * Math.sin(t / 3_600_000) + (t % 7)) * 100) / 100);
      }
      out.push({ labels: [{ name: '__name__', value: 'g' }, { name: 'host', value: host }], timestampsMs: ts, values: vs });
    }
    return out;
  }

  /** Every window of both tiers and both tenants, with its sketch's quartiles. */
  async function windows(store: RollupStore) {
    const out: unknown[] = [];
    for (const tenant of ['t', 'u']) {
      for (const res of [5 * MIN, HOUR]) {
        for (const s of await store.selectRollup(tenant, [], -Infinity, Infinity, res)) {
          out.push({
            tenant,
            res,
            labels: s.labels,
            windows: s.windows.map(({ startMs, min, max, sum, count, last, lastMs, sketch }) => ({
              ...{ startMs, min, max, sum, count, last, lastMs },
              sketch: [0.25, 0.5, 0.75].map((q) => sketch.quantile(q)),
              n: sketch.count,
            })),
          });
        }
      }
    }
    return out;
  }

  it('answer exactly as rows do, through late samples, redelivery, reopening and retention', async () => {
    const clock = { now: T0 };
    const open = (sealAfterMs: number) => {
      n += 1;
      const path = join(root, `s${n}.duckdb`);
      return openDuckDbStore({ path, logger, now: () => clock.now, compactionIntervalMs: 0, retentionIntervalMs: 0, sealAfterMs }).then((store) => ({ store, path }));
    };
    // The same writes and compactions into a store that never seals (rows only) and one
    // that seals every whole span 2 hours after it ended (the default).
    const rows = await open(0);
    const sealed = await open(2 * HOUR);
    const both = async (fn: (s: RollupStore) => Promise<unknown>) => {
      await fn(rows.store);
      await fn(sealed.store);
    };
    try {
      for (let h = 0; h < 30; h += 3) {
        await both((s) => s.write('t', `t${h}`, day(T0 + h * HOUR, 3)));
        await both((s) => s.write('u', `u${h}`, day(T0 + h * HOUR, 3).slice(0, 1)));
        clock.now = T0 + (h + 3) * HOUR + 5 * MIN;
        await both((s) => s.compact());
      }
      assert.deepEqual(await windows(sealed.store), await windows(rows.store));
      // Late samples into a sealed 5-minute span and a sealed day of hours, one of them
      // opening a window no series had; then the batch redelivered.
      const late = [
        { labels: [{ name: '__name__', value: 'g' }, { name: 'host', value: 'a' }], timestampsMs: [T0 + 10 * MIN + 1, T0 + 50 * MIN], values: [1e6, -3] },
        { labels: [{ name: '__name__', value: 'g' }, { name: 'host', value: 'z' }], timestampsMs: [T0 + HOUR + 1], values: [0.5] },
      ];
      await both((s) => s.write('t', 'late', late));
      await both((s) => s.compact());
      await both((s) => s.write('t', 'late', late));
      await both((s) => s.compact());
      const after = await windows(sealed.store);
      assert.deepEqual(after, await windows(rows.store));
      const a5 = (after[0] as { windows: { startMs: number; max: number; count: number }[] }).windows;
      assert.deepEqual(a5.slice(0, 3).map((w) => [w.startMs - T0, w.count]), [[0, 10], [5 * MIN, 10], [10 * MIN, 11]]);
      assert.equal(a5[2].max, 1e6);
      assert.ok(JSON.stringify(after).includes('"z"'));

      // Most windows are sealed, and stay so across a reopen.
      await sealed.store.close();
      const measured = await measureBytesPerSample(sealed.path);
      assert.ok(measured.sealedWindows > 0.8 * measured.rollupRows, `${measured.sealedWindows} of ${measured.rollupRows} windows sealed`);
      sealed.store = await openDuckDbStore({ path: sealed.path, logger, now: () => clock.now, compactionIntervalMs: 0, retentionIntervalMs: 0 });
      assert.deepEqual(await windows(sealed.store), after);

      // Retention cutting through a sealed span of each tier.
      clock.now = T0 + 90 * DAY + 5 * HOUR + 7 * MIN;
      const r1 = await rows.store.applyRetention();
      const r2 = await sealed.store.applyRetention();
      assert.deepEqual(r2, r1);
      assert.deepEqual(await windows(sealed.store), await windows(rows.store));
      clock.now = T0 + 2 * 365 * DAY + 13 * HOUR;
      assert.deepEqual(await sealed.store.applyRetention(), await rows.store.applyRetention());
      assert.deepEqual(await windows(sealed.store), await windows(rows.store));
    } finally {
      await rows.store.close();
      await sealed.store.close().catch(() => undefined);
    }
  });
  it('works off a backlog of windows to seal a few spans per compaction run', async () => {
    const clock = { now: T0 + 12 * DAY + 3 * HOUR };
    n += 1;
    const path = join(root, `s${n}.duckdb`);
    const open = () => openDuckDbStore({ path, logger, now: () => clock.now, compactionIntervalMs: 0, retentionIntervalMs: 0 });
    let store = await open();
    const ts = Array.from({ length: 12 * 288 }, (_, i) => T0 + i * 5 * MIN);
    await store.write('t', 'b', [{ labels: [{ name: '__name__', value: 'g' }], timestampsMs: ts, values: ts.map((_, i) => i) }]);
    // 12 days of 5-minute windows are 144 two-hour spans: more than one run seals.
    const sealedAfterEachRun: number[] = [];
    for (let run = 0; run < 3; run++) {
      await store.compact();
      await store.close();
      const m = await measureBytesPerSample(path);
      assert.equal(m.rollupRows, 12 * 288 + 12 * 24);
      sealedAfterEachRun.push(m.sealedWindows);
      store = await open();
    }
    try {
      const [w5] = await store.selectRollup('t', [], -Infinity, Infinity, 5 * MIN);
      assert.equal(w5.windows.length, 12 * 288);
      assert.deepEqual(w5.windows.slice(0, 2).map((w) => [w.startMs - T0, w.sum]), [[0, 0], [5 * MIN, 1]]);
    } finally {
      await store.close();
    }
    assert.ok(sealedAfterEachRun[0] < sealedAfterEachRun[1], sealedAfterEachRun.join(' < '));
    assert.equal(sealedAfterEachRun[2], 12 * 288 + 12 * 24);
  });
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
