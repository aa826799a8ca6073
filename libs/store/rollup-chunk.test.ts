import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seededRandom } from '../../test/random.js';
import { decodeWindows, encodeWindows } from './rollup-chunk.js';
import { aggregateWindows, mergeWindows, type RollupWindow } from './rollup.js';
import { QuantileSketch } from './sketch.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/** A day boundary, so windows of both tiers line up with it. */
const T0 = 19_700 * DAY;
const QS = [0, 0.01, 0.25, 0.5, 0.75, 0.99, 1];

function sketchOf(values: number[], alpha?: number): QuantileSketch {
  const s = new QuantileSketch(alpha);
  for (const v of values) s.add(v);
  return s;
}

function win(startMs: number, fields: Partial<RollupWindow> = {}): RollupWindow {
  return { startMs, min: 1, max: 3, sum: 6, count: 3, last: 2, lastMs: startMs + 1, sketch: sketchOf([1, 2, 3]), ...fields };
}

/** Encodes and decodes, asserting every field comes back bit for bit; returns the bytes. */
function roundTrip(windows: RollupWindow[], resolutionMs: number, sketches = true): Uint8Array {
  const bytes = encodeWindows(windows, resolutionMs);
  const back = decodeWindows(bytes);
  assert.equal(back.length, windows.length);
  back.forEach((b, i) => {
    const w = windows[i];
    for (const f of ['startMs', 'min', 'max', 'sum', 'count', 'last', 'lastMs'] as const) {
      // Object.is: deepEqual would let -0 pass for 0.
      assert.ok(Object.is(b[f], w[f]), `window ${i} ${f}: ${b[f]} vs ${w[f]}`);
    }
    if (!sketches) return;
    assert.equal(b.sketch.alpha, w.sketch.alpha, `window ${i} alpha`);
    assert.deepEqual(b.sketch.buckets(), w.sketch.buckets(), `window ${i} buckets`);
    assert.equal(b.sketch.count, w.sketch.count);
    for (const q of QS) assert.ok(Object.is(b.sketch.quantile(q), w.sketch.quantile(q)), `window ${i} q=${q}`);
  });
  if (sketches) assert.deepEqual(encodeWindows(back, resolutionMs), bytes, 're-encoding the decoded windows');
  return bytes;
}

describe('sealed rollup chunk encoding', () => {
  it('round-trips an empty run, one window, and runs with gaps, before and after 1970', () => {
    assert.deepEqual(decodeWindows(roundTrip([], 5 * MIN)), []);
    roundTrip([win(T0)], 5 * MIN);
    roundTrip([win(T0), win(T0 + 5 * MIN), win(T0 + 25 * MIN), win(T0 + 30 * MIN), win(T0 + DAY)], 5 * MIN);
    roundTrip([win(-2 * HOUR, { lastMs: -HOUR - 1 }), win(-HOUR, { lastMs: -HOUR }), win(0, { lastMs: HOUR - 1 })], HOUR);
    roundTrip([win(T0, { count: 0 }), win(T0 + HOUR, { count: 1_000_000 })], HOUR);
  });

  it('round-trips NaN, ±Inf, -0 and huge or very precise values in every value column', () => {
    // All of a window's values NaN: min and max are NaN too, and the sketch is empty.
    const [allNaN] = aggregateWindows([T0, T0 + 1], [NaN, NaN], 5 * MIN);
    assert.ok(Number.isNaN(allNaN.min) && Number.isNaN(allNaN.max));
    const specials = [NaN, Infinity, -Infinity, -0, 0, Number.MAX_VALUE, -Number.MIN_VALUE, 2 ** 60, 1e-7, 0.1 + 0.2];
    const at = (i: number) => specials[i % specials.length];
    const windows = specials.map((_, i) => win(T0 + i * 5 * MIN, { min: at(i), max: at(i + 1), sum: at(i + 2), last: at(i + 3) }));
    roundTrip([allNaN, ...windows.map((w) => ({ ...w, startMs: w.startMs + 5 * MIN }))], 5 * MIN);
    // Decimal columns at different exponents predicted from one another (max from last,
    // min from max), and residuals too wide to read a word at a time.
    const decimals: [number, number, number, number][] = [
      [1.5, 1.55, 1, 10],
      [2.5, 2.55, 2, 20.001],
      [3.5, 3.55, 3, 30],
      [4.5, 4.55, 4, 40.5],
      [1e9, 1e9 + 0.05, -1e13, 2.5e9],
      [0.5, 0.55, 0, 0.25],
    ];
    roundTrip(decimals.map(([last, max, min, sum], i) => win(T0 + i * 5 * MIN, { last, max, min, sum })), 5 * MIN);
  });

  it('round-trips sketches with zeros, negative buckets, none at all, and mixed α', () => {
    const r = seededRandom(5);
    const draw = (n: number, f: () => number) => Array.from({ length: n }, f);
    const windows = [
      sketchOf([0, 0, 0]),
      sketchOf(draw(50, () => (r() - 0.5) * 1e6)),
      sketchOf([]),
      sketchOf(draw(50, () => -r() * 10)),
      sketchOf([1e-300, 1e300, -1e300, 0]),
      sketchOf(draw(200, () => 50 + r() * 2)),
    ].map((sketch, i) => win(T0 + i * HOUR, { sketch }));
    roundTrip(windows, HOUR);
    // α must be shared to be written once; otherwise each sketch carries its own, which
    // also holds an α that millionths cannot.
    roundTrip(windows.map((w, i) => ({ ...w, sketch: sketchOf([-1, 0, 1, 2, i], i % 2 === 0 ? 0.01 : 0.05) })), HOUR);
    roundTrip(windows.map((w) => ({ ...w, sketch: sketchOf([1, 2, 3], 1 / 3) })), HOUR);
  });

  it('decodes a sketch only when read, once', () => {
    const [w] = decodeWindows(encodeWindows([win(T0)], HOUR));
    const own = Object.getOwnPropertyDescriptor(w, 'sketch');
    assert.equal(own, undefined, 'the sketch is a getter on the prototype, not a decoded field');
    assert.equal(w.sketch, w.sketch);
  });

  it('rejects windows it cannot store exactly, and malformed chunks', () => {
    assert.throws(() => encodeWindows([win(T0 + 1)], 5 * MIN), RangeError);
    assert.throws(() => encodeWindows([win(T0 + 5 * MIN), win(T0)], 5 * MIN), RangeError);
    assert.throws(() => encodeWindows([win(T0), win(T0)], 5 * MIN), RangeError);
    assert.throws(() => encodeWindows([win(T0, { count: 1.5 })], 5 * MIN), RangeError);
    assert.throws(() => encodeWindows([win(T0, { lastMs: T0 + 0.5 })], 5 * MIN), RangeError);
    assert.throws(() => encodeWindows([win(T0)], 0), RangeError);
    const fractional = new QuantileSketch();
    fractional.add(1, 0.5);
    assert.throws(() => encodeWindows([win(T0, { sketch: fractional })], 5 * MIN), RangeError);

    const bytes = encodeWindows([win(T0), win(T0 + 5 * MIN, { min: NaN }), win(T0 + 15 * MIN, { sketch: sketchOf([-1, 0, 5]) })], 5 * MIN);
    for (let len = 0; len < bytes.length; len++) {
      assert.throws(() => decodeWindows(bytes.subarray(0, len)), RangeError, `truncated to ${len} bytes`);
    }
    assert.throws(() => decodeWindows(Uint8Array.from([...bytes, 0])), RangeError);
    assert.throws(() => decodeWindows(Uint8Array.from([2, ...bytes.subarray(1)])), RangeError);
    // The sketches are only looked into when one is read: a varint running past the end of
    // the last one surfaces then.
    const corrupt = Uint8Array.from(bytes);
    corrupt[corrupt.length - 1] |= 0x80;
    const ws = decodeWindows(corrupt);
    assert.equal(ws[0].count, 3);
    assert.throws(() => ws[0].sketch, RangeError);
  });

  // Measured with this data: 5-minute windows 10.1 bytes each (counters 9.3, gauges 12.3,
  // histogram buckets 7.4); 1-hour windows 17.7 (counters 12.3, gauges 27.0, histogram
  // buckets 9.7), against about 30 bytes per window as a table row. A 1-hour gauge window
  // is mostly its sketch: some 20 adjacent buckets at α = 1%.
  it('takes about 10 bytes per 5-minute and 18 per 1-hour window for realistic series', () => {
    const r = seededRandom(11);
    const kinds = {
      counter: { series: 400, next: (v: number) => v + Math.floor(r() * 100) },
      gauge: { series: 400, next: (_v: number, i: number) => Math.round((50 + 10 * Math.sin(i / 100) + r() * 2) * 100) / 100 },
      histogram: { series: 200, next: (v: number) => v + Math.floor(r() * 5) },
    };
    const bounds = {
      '5m': { counter: 9.5, gauge: 12.5, histogram: 7.6, all: 10.3 },
      '1h': { counter: 12.6, gauge: 27.5, histogram: 9.9, all: 18 },
    };
    for (const [tier, hours] of [['5m', 2], ['1h', 24]] as const) {
      let allBytes = 0;
      let allWindows = 0;
      for (const [kind, { series, next }] of Object.entries(kinds)) {
        let bytes = 0;
        let windows = 0;
        for (let s = 0; s < series; s++) {
          const ts: number[] = [];
          const vs: number[] = [];
          let v = Math.floor(r() * 1e6);
          for (let i = 0; i < hours * 240; i++) {
            ts.push(T0 + i * 15_000 + Math.floor(r() * 3));
            v = next(v, i);
            vs.push(v);
          }
          const fine = aggregateWindows(ts, vs, 5 * MIN);
          const ws = tier === '5m' ? fine : mergeWindows(fine, HOUR);
          assert.equal(ws.length, 24);
          // Every chunk's numbers round-trip; a few also check their sketches.
          bytes += roundTrip(ws, tier === '5m' ? 5 * MIN : HOUR, s % 50 === 0).length;
          windows += ws.length;
        }
        const perWindow = bytes / windows;
        assert.ok(perWindow < bounds[tier][kind as keyof typeof kinds], `${tier} ${kind}: ${perWindow.toFixed(2)} bytes/window`);
        allBytes += bytes;
        allWindows += windows;
      }
      assert.ok(allBytes / allWindows < bounds[tier].all, `${tier}: ${(allBytes / allWindows).toFixed(2)} bytes/window`);
    }
  });
});
