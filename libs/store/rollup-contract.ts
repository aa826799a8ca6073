/**
 * The rollup and retention contract every `RollupStore` adapter passes (DuckDB always,
 * MongoDB when a server is configured): windows per tier, recomputation of windows touched
 * by late samples, redelivery that changes nothing, retention per tier with an injectable
 * clock, and a 30-day quantile from hourly sketches checked against the exact answer.
 *
 * Imports node:test, so only test files may import this module.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SeriesSamples } from '../model/index.js';
import { StoreInputError } from './errors.js';
import { DEFAULT_RETENTION } from './rollup.js';
import type { RollupStore } from './rollup.js';
import { QuantileSketch } from './sketch.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/** A day boundary, so windows of every tier line up with the test's arithmetic. */
const T0 = 19_700 * DAY;

const req = (host: string, points: [number, number][]): SeriesSamples => ({
  labels: [
    { name: '__name__', value: 'req' },
    { name: 'host', value: host },
  ],
  timestampsMs: points.map((p) => p[0]),
  values: points.map((p) => p[1]),
});

function summary(store: RollupStore, res: number, host = 'a') {
  return store
    .selectRollup('t', [{ op: '=', name: 'host', value: host }], -Infinity, Infinity, res)
    .then((got) => got[0]?.windows.map(({ startMs, min, max, sum, count, last }) => ({ startMs: startMs - T0, min, max, sum, count, last })));
}

/**
 * Registers the rollup and retention suite for one adapter. `open(now)` must return a fresh,
 * empty store with the default retention policy, using `now` as its clock and with its
 * periodic jobs off (the suite runs them); each test closes the store it opened.
 */
export function runRollupStoreContract(name: string, open: (now: () => number) => Promise<RollupStore>): void {
  /** A store with a movable clock. */
  async function openClocked(): Promise<{ store: RollupStore; clock: { now: number } }> {
    const clock = { now: T0 };
    const store = await open(() => clock.now);
    return { store, clock };
  }

  describe(`RollupStore contract: ${name}`, () => {
    it('computes 5-minute and hourly windows; late samples recompute what they touch; redelivery changes nothing', async () => {
      const { store, clock } = await openClocked();
      try {
        await store.write('t', 'b1', [
          req('a', [[T0, 1], [T0 + MIN, 4], [T0 + 6 * MIN, 2]]),
          req('b', [[T0, 100]]),
        ]);
        await store.write('other', 'b1', [req('a', [[T0, 999]])]);
        // At T0+7m only the first 5-minute window has ended; the second is still filling and
        // waits. Per tenant: that window and its hour; rows are one per series and window.
        clock.now = T0 + 7 * MIN;
        assert.deepEqual(await store.compact(), { windows: 2 + 2, rows: 2 + 2 + 1 + 1 });
        assert.deepEqual(await summary(store, 5 * MIN), [{ startMs: 0, min: 1, max: 4, sum: 5, count: 2, last: 4 }]);
        // Once it has ended, the second window is rolled up and the hour merged again.
        clock.now = T0 + 2 * HOUR;
        assert.deepEqual(await store.compact(), { windows: 2, rows: 1 + 2 });
        assert.deepEqual(await summary(store, 5 * MIN), [
          { startMs: 0, min: 1, max: 4, sum: 5, count: 2, last: 4 },
          { startMs: 5 * MIN, min: 2, max: 2, sum: 2, count: 1, last: 2 },
        ]);
        assert.deepEqual(await summary(store, HOUR), [{ startMs: 0, min: 1, max: 4, sum: 7, count: 3, last: 2 }]);
        // Nothing dirty: a second run recomputes nothing.
        assert.deepEqual(await store.compact(), { windows: 0, rows: 0 });

        // A late sample lands in the first window (before its newest sample).
        await store.write('t', 'b2', [req('a', [[T0 + 30_000, 10]])]);
        // The batch redelivered after a crash: must not count twice.
        assert.equal((await store.write('t', 'b2', [req('a', [[T0 + 30_000, 10]])])).duplicate, true);
        // Only the touched 5-minute window and its hour are recomputed, for every series in them.
        assert.deepEqual(await store.compact(), { windows: 2, rows: 4 });
        assert.deepEqual(await summary(store, 5 * MIN), [
          { startMs: 0, min: 1, max: 10, sum: 15, count: 3, last: 4 },
          { startMs: 5 * MIN, min: 2, max: 2, sum: 2, count: 1, last: 2 },
        ]);
        assert.deepEqual(await summary(store, HOUR), [{ startMs: 0, min: 1, max: 10, sum: 17, count: 4, last: 2 }]);
        // Other series and tenants are untouched.
        assert.deepEqual(await summary(store, HOUR, 'b'), [{ startMs: 0, min: 100, max: 100, sum: 100, count: 1, last: 100 }]);
        const other = await store.selectRollup('other', [], -Infinity, Infinity, HOUR);
        assert.deepEqual(other.map((s) => s.windows.map((w) => w.sum)), [[999]]);

        // Range, matcher and limit handling follow `select`.
        assert.equal((await store.selectRollup('t', [], T0 + MIN, T0 + 5 * MIN, 5 * MIN))[0].windows.length, 1);
        await assert.rejects(store.selectRollup('t', [], -Infinity, Infinity, 5 * MIN, { maxSamples: 2 }), /maxSamples=2/);
        await assert.rejects(store.selectRollup('t', [], -Infinity, Infinity, 7 * MIN), (err: unknown) => {
          assert.ok(err instanceof StoreInputError);
          assert.match(err.message, /resolutionMs: no rollup tier of 420000 ms \(tiers: 300000, 3600000\)/);
          return true;
        });
        assert.equal(store.pickTier(HOUR, 30 * DAY), HOUR);
      } finally {
        await store.close();
      }
    });

    it('tells, per tenant, up to when rollups hold every stored sample', async () => {
      const { store, clock } = await openClocked();
      try {
        assert.equal(await store.rollupsCompleteBefore('t'), Infinity);
        await store.write('t', 'b1', [req('a', [[T0 + MIN, 1], [T0 + 6 * MIN, 2]])]);
        // Nothing compacted yet: rollups are complete only before the first written window.
        assert.equal(await store.rollupsCompleteBefore('t'), T0);
        assert.equal(await store.rollupsCompleteBefore('other'), Infinity);
        // The first 5-minute window has ended and is rolled up; the second is still filling.
        clock.now = T0 + 7 * MIN;
        await store.compact();
        assert.equal(await store.rollupsCompleteBefore('t'), T0 + 5 * MIN);
        clock.now = T0 + 2 * HOUR;
        await store.compact();
        assert.equal(await store.rollupsCompleteBefore('t'), Infinity);
        // A late sample makes its window (and everything after it) pending again.
        await store.write('t', 'b2', [req('a', [[T0 + 3 * MIN, 5]])]);
        assert.equal(await store.rollupsCompleteBefore('t'), T0);
      } finally {
        await store.close();
      }
    });

    it('expires raw samples and each tier by its own retention, then the series', async () => {
      const { store, clock } = await openClocked();
      try {
        await store.write('t', 'b1', [req('a', [[T0, 1], [T0 + 10 * MIN, 2]])]);
        clock.now = T0 + HOUR;
        await store.compact();
        // Hours later (an adapter may have moved the samples to a compact form by now).
        clock.now = T0 + 3 * HOUR;
        await store.compact();
        const count = async () => ({
          raw: (await store.select('t', [], -Infinity, Infinity)).length,
          m5: (await store.selectRollup('t', [], -Infinity, Infinity, 5 * MIN)).length,
          h1: (await store.selectRollup('t', [], -Infinity, Infinity, HOUR)).length,
          names: (await store.labelValues('t', 'host', [], -Infinity, Infinity)).length,
        });
        assert.deepEqual(await store.applyRetention(), { samplesDeleted: 0, rollupsDeleted: 0, seriesDeleted: 0 });

        clock.now = T0 + 15 * DAY + 11 * MIN;
        assert.deepEqual(await store.applyRetention(), { samplesDeleted: 2, rollupsDeleted: 0, seriesDeleted: 0 });
        assert.deepEqual(await count(), { raw: 0, m5: 1, h1: 1, names: 0 });

        clock.now = T0 + 90 * DAY + HOUR;
        assert.deepEqual(await store.applyRetention(), { samplesDeleted: 0, rollupsDeleted: 2, seriesDeleted: 0 });
        assert.deepEqual(await count(), { raw: 0, m5: 0, h1: 1, names: 0 });

        clock.now = T0 + DEFAULT_RETENTION.tiers[1].retentionMs + HOUR;
        assert.deepEqual(await store.applyRetention(), { samplesDeleted: 0, rollupsDeleted: 1, seriesDeleted: 1 });
        assert.deepEqual(await count(), { raw: 0, m5: 0, h1: 0, names: 0 });

        // The series can come back: the series cache was dropped with the row.
        await store.write('t', 'b2', [req('a', [[clock.now, 5]])]);
        assert.deepEqual((await store.select('t', [], -Infinity, Infinity)).map((s) => s.values), [[5]]);
      } finally {
        await store.close();
      }
    });

    it('answers a 30-day p95 from hourly sketches within the documented error of the exact answer', async () => {
      const { store, clock } = await openClocked();
      try {
        // One latency-like gauge every 30 s for 30 days, written a day at a time with the
        // compactor running after each day, as in production; the raw samples are kept
        // until the exact answer has been read from them.
        let seed = 12345;
        const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
        for (let day = 0; day < 30; day++) {
          const ts: number[] = [];
          const vs: number[] = [];
          for (let t = T0 + day * DAY; t < T0 + (day + 1) * DAY; t += 30_000) {
            ts.push(t);
            // Daily pattern plus exponential noise: a long right tail, as real latencies have.
            vs.push(0.05 + 0.03 * Math.sin((2 * Math.PI * (t % DAY)) / DAY) - Math.log(rand() || 1e-9) * 0.02);
          }
          clock.now = T0 + (day + 1) * DAY;
          await store.write('t', `day-${day}`, [{ labels: [{ name: '__name__', value: 'latency' }], timestampsMs: ts, values: vs }]);
          await store.compact();
        }
        const [raw] = await store.select('t', [], -Infinity, Infinity);
        const sorted = [...raw.values].sort((a, b) => a - b);
        assert.equal(sorted.length, 30 * 2880);

        const [hourly] = await store.selectRollup('t', [], T0, T0 + 30 * DAY, store.pickTier(DAY, 30 * DAY));
        assert.equal(hourly.windows.length, 30 * 24);
        const merged = new QuantileSketch();
        for (const w of hourly.windows) merged.merge(w.sketch);
        assert.equal(merged.count, sorted.length);

        for (const q of [0.5, 0.95, 0.99]) {
          const rank = q * (sorted.length - 1);
          const lower = sorted[Math.floor(rank)];
          // Prometheus' quantile_over_time interpolates between neighbouring ranks.
          const interpolated = lower + (sorted[Math.ceil(rank)] - lower) * (rank - Math.floor(rank));
          const est = merged.quantile(q);
          assert.ok(Math.abs(est - lower) <= merged.alpha * lower, `q=${q}: ${est} vs exact ${lower}`);
          assert.ok(Math.abs(est - interpolated) <= merged.alpha * interpolated * 1.01, `q=${q}: ${est} vs ${interpolated}`);
        }
        // The sum and count over 30 days are exact, not estimated.
        const sum = hourly.windows.reduce((s, w) => s + w.sum, 0);
        assert.ok(Math.abs(sum - raw.values.reduce((s, v) => s + v, 0)) < 1e-6);
      } finally {
        await store.close();
      }
    });
  });
}
