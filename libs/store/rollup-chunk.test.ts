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

/**
 * The version 2 chunk of the float windows of the byte-for-byte test: last as float64s,
 * then max, min and sum XOR-ed, each with its previous value.
 */
const FLOAT_V2 =
  '0280dddb0102c0db390000020202160000809fbb0d00343333333333d33f48afbc9af2d77a3e060b7ff0000000000000c43f88060c7ff8000000' +
  '000000c0640040060c8000000000000000c067ffc01b029a9999999999a93f555555555555d53f00030400000e00020001';

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

  it('keeps NaN, ±Inf and −0 exact in XOR-ed columns, and predicts from no NaN', () => {
    const r = seededRandom(17);
    // A float counter whose first windows end on a NaN scrape: their last predicts neither
    // their max nor the next window's min, which must then be XOR-ed otherwise.
    const ts: number[] = [];
    const vs: number[] = [];
    let cpu = 1000;
    for (let i = 0; i < 24 * 20; i++) {
      ts.push(T0 + i * 15_000);
      cpu += 15 * r();
      vs.push(i % 20 === 19 && i < 200 ? NaN : cpu);
    }
    const windows = aggregateWindows(ts, vs, 5 * MIN);
    assert.ok(Number.isNaN(windows[0].last) && !Number.isNaN(windows[0].max));
    const bytes = roundTrip(windows, 5 * MIN);
    // ±Inf, −0 and NaN among the values of each column in turn.
    const specials = [Infinity, -0, NaN, -Infinity, 0];
    for (const f of ['last', 'max', 'min', 'sum'] as const) {
      roundTrip(windows.map((w, i) => (i % 5 === 2 ? { ...w, [f]: specials[(i / 5) % specials.length | 0] } : w)), 5 * MIN);
    }
    // 855 with every value column as float64s, 601 XOR-ed (measured).
    assert.ok(bytes.length < 610, `${bytes.length} bytes`);
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
    // Counts and index gaps of more than 24 bits (α = 10⁻⁶ puts 1e300 near index 3.5·10⁸),
    // with the last count left out and not.
    const wide = new QuantileSketch(1e-6);
    for (const [v, times] of [[0, 7], [-5, 2 ** 33], [1, 2 ** 40], [2, 2 ** 45 + 1], [1e300, 3]]) wide.add(v, times);
    roundTrip([win(T0, { sketch: wide, count: wide.count }), win(T0 + HOUR, { sketch: wide, count: wide.count + 1 })], HOUR);
  });

  it('leaves out a count only where the window counted no NaN or ±Inf, with signs, zeros and gaps', () => {
    const r = seededRandom(7);
    const specials = [NaN, Infinity, -Infinity];
    // A gauge swinging through zero (the first positive bucket is not min's), with zeros,
    // now and then a non-finite sample, and one window with its values far apart.
    const ts: number[] = [];
    const vs: number[] = [];
    for (let i = 0; i < 24 * 20; i++) {
      ts.push(T0 + i * 15_000);
      const v = Math.round((Math.sin(i / 30) * 5 + (r() - 0.5)) * 100) / 100;
      vs.push(i % 37 === 0 ? specials[i % 3] : i % 11 === 0 ? 0 : i >= 400 && i < 420 ? v * 10 ** ((i % 9) - 4) : v);
    }
    const windows = aggregateWindows(ts, vs, 5 * MIN);
    assert.ok(windows.some((w) => w.count > w.sketch.count && w.sketch.count > 0));
    assert.ok(windows.some((w) => w.sketch.buckets().negative.length > 0 && w.sketch.buckets().positive.length > 0));
    roundTrip(windows, 5 * MIN);
    roundTrip(mergeWindows(windows, HOUR), HOUR);
  });

  // Measured with this data, bytes per window with float columns as float64s → XOR-ed:
  // 5-minute windows: counter 34.7 → 21.9, quantile 34.4 → 5.7, noise 60.0 → 57.1;
  // 1-hour windows: counter 37.8 → 26.2, quantile 36.6 → 11.1, noise 174.0 → 170.8.
  it('XORs float columns with their predictions, exactly and in fewer bytes than float64s', () => {
    const r = seededRandom(13);
    const kinds = {
      // CPU seconds: full-precision increments, so max is last and min near the previous last.
      counter: (v: number) => v + 15 * r(),
      // A summary quantile that changes once an hour, at a different time in each series.
      quantile: (_v: number, i: number, phase: number) => (Math.floor((i + phase) / 240) % 2 === 0 ? 1 / 3 : 2 / 3),
      // Nothing to predict: the XOR modes must not cost more than float64s.
      noise: () => r() * 1e-3,
    };
    const bounds = {
      '5m': { counter: 22.2, quantile: 5.85, noise: 57.4 },
      '1h': { counter: 26.5, quantile: 11.3, noise: 171 },
    };
    for (const [tier, hours] of [['5m', 2], ['1h', 24]] as const) {
      for (const [kind, next] of Object.entries(kinds)) {
        let bytes = 0;
        let windows = 0;
        for (let s = 0; s < 40; s++) {
          const ts: number[] = [];
          const vs: number[] = [];
          let v = r() * 1e4;
          const phase = Math.floor(r() * 240);
          for (let i = 0; i < hours * 240; i++) {
            ts.push(T0 + i * 15_000 + Math.floor(r() * 3));
            v = next(v, i, phase);
            vs.push(v);
          }
          const fine = aggregateWindows(ts, vs, 5 * MIN);
          const ws = tier === '5m' ? fine : mergeWindows(fine, HOUR);
          assert.equal(ws.length, 24);
          bytes += roundTrip(ws, tier === '5m' ? 5 * MIN : HOUR).length;
          windows += ws.length;
        }
        const perWindow = bytes / windows;
        assert.ok(perWindow < bounds[tier][kind as keyof typeof kinds], `${tier} ${kind}: ${perWindow.toFixed(2)} bytes/window`);
      }
    }
  });

  it('reads and writes version 2 byte for byte as it was first written', () => {
    const dense = Array.from({ length: 40 }, (_, i) => 50 + i / 20);
    const decimal = [
      win(T0, { min: 100, max: 110, sum: 315, count: 3, last: 110, lastMs: T0 + 14_000, sketch: sketchOf([100, 105, 110]) }),
      win(T0 + 5 * MIN, { min: 112.5, max: 130, sum: 363.5, count: 3, last: 121, lastMs: T0 + 5 * MIN + 29_000, sketch: sketchOf([112.5, 130, 121]) }),
      win(T0 + 20 * MIN, { min: -2, max: 7.25, sum: 5.25, count: 4, last: 0, lastMs: T0 + 20 * MIN + 3, sketch: sketchOf([-2, 7.25, 0, 0]) }),
      win(T0 + 25 * MIN, { min: 50, max: 51.95, sum: 2039, count: 40, last: 51.95, lastMs: T0 + 30 * MIN - 1, sketch: sketchOf(dense) }),
    ];
    const float = [
      win(T0, { min: NaN, max: Infinity, sum: -0, count: 2, last: 0.1 + 0.2, sketch: sketchOf([1, 2], 0.05) }),
      win(T0 + HOUR, { min: -Infinity, max: 2 ** 60, sum: NaN, count: 0, last: 1e-7, lastMs: T0 + 2 * HOUR - 1, sketch: sketchOf([], 1 / 3) }),
    ];
    // A float counter: max XOR-ed with its last, min with the previous last, sum with its
    // previous value.
    const lasts = [1 / 3, 1 / 3 + 2 ** -40, 1 / 3 + 2 ** -39];
    const mins = [1 / 3 - 2 ** -30, 1 / 3 + 2 ** -44, 1 / 3 + 2 ** -40 + 2 ** -44];
    const sums = [1, 1 + 2 ** -38, 1 + 2 ** -37];
    const counter = lasts.map((last, i) => {
      const startMs = T0 + i * 5 * MIN;
      const min = mins[i];
      return win(startMs, { min, max: last, sum: sums[i], count: 3, last, lastMs: startMs + 29_000, sketch: sketchOf([min, last, last]) });
    });
    const cases = [
      {
        windows: decimal,
        resolution: 5 * MIN,
        v2:
          '02e0a7120480cab405020806060010940613ad36288a030000b827090102f0ab0187bd010f903300c0e310030200000a00105e2d00030200cf0f0a' +
          '00580272c9050299080a0dd20740831b01904e080230460000009102088989008900000203400825618902',
      },
      {
        windows: float,
        resolution: HOUR,
        v2: FLOAT_V2,
      },
      {
        windows: counter,
        resolution: 5 * MIN,
        v2:
          '02e0a7120380cab40500060090c50300060f3fd5555555555555fe900003800008070900000000000000000006103fd5555554555555feb004' +
          '0038000180060f3ff0000000000000fe9000018000180b01904e0800000000000000',
      },
    ];
    for (const { windows, resolution, v2 } of cases) {
      const back = decodeWindows(Buffer.from(v2, 'hex'));
      assert.equal(back.length, windows.length);
      back.forEach((b, i) => {
        for (const f of ['startMs', 'min', 'max', 'sum', 'count', 'last', 'lastMs'] as const) {
          assert.ok(Object.is(b[f], windows[i][f]), `window ${i} ${f}: ${b[f]} vs ${windows[i][f]}`);
        }
        assert.equal(b.sketch.alpha, windows[i].sketch.alpha);
        assert.deepEqual(b.sketch.buckets(), windows[i].sketch.buckets());
      });
      // Chunks already stored must stay readable: a change to the layout needs a new version.
      assert.equal(Buffer.from(roundTrip(windows, resolution)).toString('hex'), v2);
    }
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
    assert.throws(() => decodeWindows(Uint8Array.from([3, ...bytes.subarray(1)])), RangeError);
    // XOR-ed columns predicted from last (max rewritten so, which alone decodes) where last
    // is decimals (rewritten as 1, 1, which alone decodes too) or is the column itself, and
    // a mode past the last.
    const edit = (...edits: [string, string][]) => {
      let hex = FLOAT_V2;
      for (const [from, to] of edits) {
        assert.ok(hex.includes(from), from);
        hex = hex.replace(from, to);
      }
      return () => decodeWindows(Buffer.from(hex, 'hex'));
    };
    const decimalLast: [string, string] = ['00343333333333d33f48afbc9af2d77a3e', '0100020000'];
    const maxFromLast: [string, string] = ['060b7ff0', '070b7ff0'];
    assert.deepEqual(edit(decimalLast)().map((w) => w.last), [1, 1]);
    assert.equal(edit(maxFromLast)().length, 2);
    assert.throws(edit(decimalLast, maxFromLast), /bad reference column/);
    assert.throws(edit(['0034333333', '0734333333']), /bad reference column/);
    assert.throws(edit(['060b7ff0', '090b7ff0']), /unknown value column mode 9/);
    // The sketches are only looked into when one is read: a bit set past the end of the
    // last one's counts surfaces then.
    const corrupt = Uint8Array.from(bytes);
    corrupt[corrupt.length - 1] |= 0x80;
    const ws = decodeWindows(corrupt);
    assert.equal(ws[0].count, 3);
    assert.throws(() => ws[0].sketch, RangeError);
  });

  // Measured with this data: 5-minute windows 6.7 bytes each (counters 6.2, gauges 8.3,
  // histogram buckets 4.4); 1-hour windows 12.4 (counters 8.6, gauges 19.7, histogram
  // buckets 5.6), against about 30 bytes per window as a table row (version 1: 10.1 and
  // 17.7). A 1-hour gauge window is mostly its sketch: some 20 adjacent buckets at α = 1%,
  // about 5 bits a count.
  it('takes about 6.7 bytes per 5-minute and 12.4 per 1-hour window for realistic series', () => {
    const r = seededRandom(11);
    const kinds = {
      counter: { series: 400, next: (v: number) => v + Math.floor(r() * 100) },
      gauge: { series: 400, next: (_v: number, i: number) => Math.round((50 + 10 * Math.sin(i / 100) + r() * 2) * 100) / 100 },
      histogram: { series: 200, next: (v: number) => v + Math.floor(r() * 5) },
    };
    const bounds = {
      '5m': { counter: 6.35, gauge: 8.5, histogram: 4.5, all: 6.85 },
      '1h': { counter: 8.8, gauge: 20.2, histogram: 5.75, all: 12.75 },
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
