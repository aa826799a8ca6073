import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StoreInputError } from './errors.js';
import {
  aggregateWindows,
  DEFAULT_RETENTION,
  DEFAULT_TIER_SPEC,
  mergeWindows,
  parseDuration,
  parseTierSpec,
  pickTier,
  windowStart,
} from './rollup.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

describe('retention policy', () => {
  it('parses durations and tier specs; the default spec is the default policy', () => {
    assert.equal(parseDuration('90d', 'x'), 90 * DAY);
    assert.equal(parseDuration('1h30m', 'x'), 90 * MIN);
    assert.equal(parseDuration('2y', 'x'), 730 * DAY);
    assert.deepEqual(parseTierSpec(DEFAULT_TIER_SPEC, 15 * DAY), DEFAULT_RETENTION);
    assert.deepEqual(parseTierSpec('', DAY).tiers, []);
  });

  it('rejects bad specs naming the field and the rule', () => {
    const bad: [string, RegExp][] = [
      ['5m', /store\.rollupTiers\[0\]: "5m" is not <resolution>:<retention>/],
      ['5x:1d', /store\.rollupTiers\[0\]\.resolution: "5x" is not a duration/],
      ['5m:1d,7m:2d', /\[1\]\.resolution: must be a larger multiple of the previous tier's 300000 ms/],
      ['1h:1d,5m:2d', /\[1\]\.resolution: must be a larger multiple/],
      ['5m:90d,1h:30d', /\[1\]\.retention: must be at least the previous tier's/],
      ['1h:30m', /\[0\]\.retention: must be longer than the resolution/],
      ['100ms:1d', /\[0\]\.resolution: must be at least 1s/],
    ];
    for (const [spec, message] of bad) {
      assert.throws(() => parseTierSpec(spec, DAY), (err: unknown) => err instanceof StoreInputError && message.test(err.message), spec);
    }
  });

  it('picks the coarsest tier that honours the step and covers the range', () => {
    const p = DEFAULT_RETENTION;
    // A 1-hour dashboard at 15 s steps: only raw samples are fine enough.
    assert.equal(pickTier(p, 15_000, HOUR), 0);
    // A 7-day panel at 10-minute steps: 5-minute windows, 2 per step.
    assert.equal(pickTier(p, 10 * MIN, 7 * DAY), 5 * MIN);
    // 30 days at 1-hour steps: hourly windows.
    assert.equal(pickTier(p, HOUR, 30 * DAY), HOUR);
    assert.equal(pickTier(p, DAY, 30 * DAY), HOUR);
    // Step finer than 5 minutes but reaching past raw retention: raw is the only tier
    // honouring the step, so it answers with what it still holds.
    assert.equal(pickTier(p, MIN, 30 * DAY), 0);
    // 1 year at 10-minute steps: 5-minute windows are gone after 90 days; hourly windows do
    // not honour the step, so 5-minute (the longest-kept tier honouring it) is chosen.
    assert.equal(pickTier(p, 10 * MIN, 365 * DAY), 5 * MIN);
    assert.equal(pickTier({ rawRetentionMs: DAY, tiers: [] }, HOUR, 30 * DAY), 0);
  });
});

describe('window aggregates', () => {
  it('computes min, max, sum, count, last and a sketch per window', () => {
    const ts = [0, 1000, 299_999, 300_000, 300_000, 900_000];
    const vs = [3, NaN, 1, 7, 5, -2];
    const w = aggregateWindows(ts, vs, 5 * MIN);
    assert.deepEqual(
      w.map(({ startMs, min, max, sum, count, last, lastMs }) => ({ startMs, min, max, sum, count, last, lastMs })),
      [
        { startMs: 0, min: 1, max: 3, sum: NaN, count: 3, last: 1, lastMs: 299_999 },
        // Two samples at one timestamp: the later-written one is `last`.
        { startMs: 300_000, min: 5, max: 7, sum: 12, count: 2, last: 5, lastMs: 300_000 },
        { startMs: 900_000, min: -2, max: -2, sum: -2, count: 1, last: -2, lastMs: 900_000 },
      ],
    );
    assert.equal(w[0].sketch.count, 2, 'NaN is counted but not sketched');
    assert.equal(windowStart(-1, 1000), -1000);
  });

  it('merging fine windows equals aggregating the raw samples coarsely', () => {
    const ts: number[] = [];
    const vs: number[] = [];
    for (let t = 0; t < 3 * HOUR; t += 15_000) {
      ts.push(t);
      vs.push(Math.sin(t / 1e6) * 100 + (t % 7));
    }
    const merged = mergeWindows(aggregateWindows(ts, vs, 5 * MIN), HOUR);
    const direct = aggregateWindows(ts, vs, HOUR);
    assert.equal(merged.length, 3);
    merged.forEach((m, i) => {
      const d = direct[i];
      assert.deepEqual([m.startMs, m.min, m.max, m.count, m.last, m.lastMs], [d.startMs, d.min, d.max, d.count, d.last, d.lastMs]);
      assert.ok(Math.abs(m.sum - d.sum) < 1e-9 * Math.abs(d.sum));
      assert.deepEqual(m.sketch.encode(), d.sketch.encode());
    });
  });
});

describe('window sums of decimal values', () => {
  const sumOf = (vs: number[]) => aggregateWindows(vs.map((_, i) => i * 1000), vs, 5 * MIN)[0].sum;
  const window = (startMs: number, sum: number) => aggregateWindows([startMs], [sum], 5 * MIN)[0];

  it('is the correctly rounded decimal sum when every value has at most 6 decimals', () => {
    // Summed in floating point these are 0.30000000000000004, 0.7999999999999999 and
    // 6.6530000000000005, which a sealed chunk could only store as float64s.
    assert.equal(sumOf([0.1, 0.2]), 0.3);
    assert.equal(sumOf([0.1, 0.7]), 0.8);
    assert.equal(sumOf([1.1, 2.22, 3.333]), 6.653);
    assert.equal(sumOf([-0.1, 0.1]), 0);
    assert.equal(sumOf([0.000001, 2]), 2.000001);
    const merged = mergeWindows([window(0, 0.1), window(5 * MIN, 0.2), window(10 * MIN, 1.25)], HOUR);
    assert.equal(merged.length, 1);
    assert.equal(merged[0].sum, 1.55);
  });

  it('falls back to the float sum otherwise, with NaN and ±Inf as before', () => {
    assert.equal(sumOf([1 / 3, 0.1]), 1 / 3 + 0.1);
    assert.equal(sumOf([0.1, 1e-7]), 0.1 + 1e-7);
    assert.ok(Number.isNaN(sumOf([0.1, NaN, 0.2])));
    assert.equal(sumOf([0.1, Infinity]), Infinity);
    assert.equal(sumOf([-Infinity, 0.1]), -Infinity);
    assert.ok(Number.isNaN(sumOf([Infinity, -Infinity])));
    // A scaled total past 2^53 is no longer exact: the float sum stands.
    assert.equal(sumOf(Array.from({ length: 200 }, () => 9e13)), 9e13 * 200);
    assert.equal(sumOf([2 ** 52, 0.5]), 2 ** 52 + 0.5);
    assert.ok(Object.is(sumOf([-0]), 0), 'as before: the sum starts at 0');
    const nan = mergeWindows([window(0, 0.1), window(5 * MIN, NaN)], HOUR)[0];
    assert.ok(Number.isNaN(nan.sum));
    assert.equal(mergeWindows([window(0, 0.1), window(5 * MIN, -Infinity)], HOUR)[0].sum, -Infinity);
    assert.ok(Object.is(mergeWindows([{ ...window(0, 1), sum: -0 }], HOUR)[0].sum, -0), 'a lone window keeps its sum');
  });
});
