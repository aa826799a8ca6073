/**
 * The compact encoding of a run of one series' rollup windows of one tier ("sealed rollup
 * chunk"), used by the DuckDB store for windows old enough not to change: what chunk.ts is
 * to raw samples, this is to `RollupWindow`s.
 *
 * Why: a window stored as a table row takes about 30 bytes, as DuckDB compresses each
 * column on its own and so cannot use how a window's values relate, to each other and to
 * the previous window's: a counter's `last` is its `max` and its `min` is the previous
 * window's `last` plus one increment, a gauge's min, max and last stay within its noise of
 * one another, a sketch's first and last buckets are those of the window's min and max, and
 * its counts add up to the window's count. Predicting each value from those and bit-packing
 * what is left, measured on counters, two-decimal gauges and histogram bucket counters
 * scraped every 15 s (see the size test), takes about 6.7 bytes per 5-minute window and 12.4
 * per 1-hour window (version 1, which stored the sketches as varints: 10.1 and 17.7).
 * Values that are not short decimals (a CPU-seconds counter, a summary's quantiles) are
 * XOR-ed with predictions instead: 21.9 bytes per 5-minute window for such a counter and
 * 5.7 for a quantile that changes hourly, against 34.7 and 34.4 as float64s.
 *
 * Layout (version 2): version byte, resolution and window count (varints), then
 * - window starts: first `start / resolution` (zig-zag varint), then the gaps
 *   `(start_i − start_i−1) / resolution − 1` bit-packed (contiguous windows: width 0);
 * - count, then `lastMs − startMs`: frame-of-reference packed (`Writer.offsetPacked`);
 * - last, max, min, sum: each a value column. Mode byte; modes 1–5: the decimal exponent
 *   `k` (byte), for modes 3 and 4 the column predicted from (byte), the predictor's seeds
 *   (zig-zag varints) and the residuals `round(v·10^k) − prediction`, frame-of-reference
 *   packed. The predictors are listed at {@link DELTA}; the encoder tries each and keeps
 *   the one that takes the fewest bytes. A column is scaled only when every value
 *   round-trips exactly (`round(v·10^k)/10^k === v`), so NaN, ±Inf, −0 and values of more
 *   than 6 decimals are not; that is also why rollup.ts keeps decimal sums decimal. Such a
 *   column is float64s (mode 0), or each value's bits XOR-ed with a predicted value's
 *   (modes 6–8, see {@link XOR}): the length in bytes (varint) of chunk.ts's `encodeXor`
 *   bits, then the bits; whichever takes the fewest bytes.
 * - sketches: the section's length in bytes (varint), then a mode byte; mode 1: the shared α
 *   in millionths (varint); mode 2: each window's α as a float64 (mixed α, or one that
 *   millionths cannot hold exactly). Then columns, each frame-of-reference packed:
 *   - each window's shape, bits {@link HAS_ZEROS} to {@link ALL_STORED};
 *   - for negative and then for positive buckets, if any window has them, over the windows
 *     that do: the first and the last bucket index, less their predictions (see
 *     {@link predictFirst}; nearly always exact, so these are mostly width 0);
 *   - the bit width of each window's numbers, over the windows that have any.
 *   Then the numbers, one bit stream, each window's at its width: the zero count if any,
 *   then the negative and the positive buckets, each sign dense (a count for every index
 *   from the first to the last) or sparse (bucket count, first count, then (index gap − 1,
 *   count) pairs), whichever takes fewer bits; but for the last, a count, which is left out
 *   when the window's count is its sketch's total (all its values finite) and decoded as
 *   that count minus the others.
 * Version 1, which kept sketches as byte-aligned varints, was never released and is not
 * read. Decoding is exact in every mode.
 *
 * Reading: a month of hourly windows for `avg_over_time` reads hundreds of thousands of
 * windows and no sketch, so the numbers are decoded at once and the sketches only when one
 * is read (see `SketchRun`); the section's length lets decoding check the chunk's length
 * without looking inside it.
 */
import { decimalExponent, decodeXor, encodeXor, Writer, zigzag } from './chunk.js';
import type { RollupWindow } from './rollup.js';
import { QuantileSketch } from './sketch.js';

const VERSION = 2;
/** Largest magnitude a scaled value may have: residuals and zig-zag stay safe integers. */
const LIMIT = 2 ** 49;
const POW10 = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000];

/** Value column stored as float64s. */
const FLOAT = 0;
/** Predicted by the column's previous value (seed: the first value). */
const DELTA = 1;
/** Predicted by extrapolating the previous two (seeds: the first value and first delta). */
const DELTA_OF_DELTA = 2;
/** Predicted by an earlier column of the same window (a counter's max by its last). */
const SAME = 3;
/** Predicted by an earlier column of the previous window (a counter's min by the last). */
const PREVIOUS = 4;
/**
 * The sum, predicted by the window's count times the midpoint of its max and min,
 * `floor(count·(max + min)/2)`: a counter's sum is that, give or take how far its values
 * stray from a straight line, and a gauge's give or take its noise. Measured against the
 * predictors above: 0.31 bytes less per 5-minute window, 0.33 per 1-hour window.
 */
const MEAN = 5;
/**
 * Float columns (not decimals; see {@link FLOAT}), as chunk.ts's `encodeXor` writes a run of
 * floats: the first value's 64 bits, then per value its bits XOR its prediction's, which
 * costs a bit when they are equal and otherwise the bits between the XOR's leading and
 * trailing zeros. Predicted by the column's previous value: a quantile that rarely changes
 * then takes 0.6 bytes per window instead of 8, and a float counter's last 6.3 (measured).
 * Decoding costs more than float64s, about 70 ns a value (measured: a window of a float
 * series, its four columns XOR-ed, in 370 ns against 90).
 */
const XOR = 6;
/**
 * Predicted by the same window's last, when that is a float column too: a float counter's
 * max is its last, which takes its max from 6.3 bytes per window to 0.5 (measured; the
 * whole chunk, 5.8 bytes per 5-minute window less than with {@link XOR} alone, 6.2 per
 * 1-hour window). Predicting from max or min as well saved nothing more (measured).
 */
const XOR_SAME = 7;
/**
 * Predicted by the previous window's last (the first value by +0): a float counter's min is
 * the previous last plus one increment, nearer than the previous min (measured: 0.55 bytes
 * per 5-minute window less, 0.9 per 1-hour window).
 */
const XOR_PREVIOUS = 8;
/** The value column the XOR modes predict from: last. */
const LAST_COLUMN = 0;
/** The value columns MEAN reads: max and min. */
const MAX_COLUMN = 1;
const MIN_COLUMN = 2;

/** Rows of the decoder's scratch columns (see {@link decodeWindows}). */
const ROWS = 7;

const SHARED_ALPHA = 1;
const OWN_ALPHA = 2;

/** A decimal column: its exponent and its values scaled by `10^k`. */
interface Scaled {
  readonly k: number;
  readonly s: readonly number[];
}

/**
 * Encodes windows of one series and tier, oldest first, each starting at a multiple of
 * `resolutionMs`, into a chunk. Throws `RangeError` for windows out of order or off the
 * resolution, and for what the format cannot hold exactly (fractional counts or times).
 */
export function encodeWindows(windows: readonly RollupWindow[], resolutionMs: number): Uint8Array {
  if (!(Number.isSafeInteger(resolutionMs) && resolutionMs > 0)) {
    throw new RangeError(`rollup chunk resolution must be a positive integer, got ${resolutionMs}`);
  }
  const n = windows.length;
  const w = new Writer();
  w.byte(VERSION);
  w.varint(resolutionMs);
  w.varint(n);
  if (n === 0) return w.finish();

  const slots: number[] = [];
  const counts: number[] = [];
  const lastOffsets: number[] = [];
  for (const win of windows) {
    const slot = win.startMs / resolutionMs;
    if (!(Number.isSafeInteger(slot) && Math.abs(slot) < LIMIT)) {
      throw new RangeError(`window start ${win.startMs} is not a multiple of the resolution ${resolutionMs}`);
    }
    if (slots.length > 0 && slot <= slots[slots.length - 1]) throw new RangeError('windows must be in ascending start order');
    slots.push(slot);
    if (!(Number.isSafeInteger(win.count) && win.count >= 0)) {
      throw new RangeError(`window count must be a non-negative integer, got ${win.count}`);
    }
    counts.push(win.count);
    const offset = win.lastMs - win.startMs;
    if (!(Number.isSafeInteger(offset) && Math.abs(offset) < LIMIT)) {
      throw new RangeError(`window lastMs ${win.lastMs} is not an integer near its start ${win.startMs}`);
    }
    lastOffsets.push(offset);
  }
  w.varint(zigzag(slots[0]));
  w.packed(slots.slice(1).map((s, i) => s - slots[i] - 1));
  w.offsetPacked(counts);
  w.offsetPacked(lastOffsets);

  const values = [windows.map((x) => x.last), windows.map((x) => x.max), windows.map((x) => x.min), windows.map((x) => x.sum)];
  const columns: (Scaled | undefined)[] = [];
  for (const vs of values) columns.push(encodeColumn(w, vs, columns, values[LAST_COLUMN], counts));

  const sketches = new Writer();
  encodeSketches(sketches, windows);
  const section = sketches.finish();
  w.varint(section.length);
  for (const b of section) w.byte(b);
  return w.finish();
}

/**
 * The decoder's working columns, reused from call to call (decoding is synchronous): rows
 * of `n` values for the starts, counts, lastMs and the four value columns. Fresh arrays per
 * chunk would cost more than the decoding itself.
 */
let scratch = new Float64Array(ROWS * 64);

/**
 * Decodes a chunk written by {@link encodeWindows}; each window's sketch is decoded when it
 * is first read. Throws `RangeError` on malformed input, truncation anywhere included; a
 * sketch section malformed inside is found when a sketch is first read, which then throws
 * `RangeError`.
 */
export function decodeWindows(bytes: Uint8Array): RollupWindow[] {
  const cur = new Cursor(bytes);
  const version = cur.byte();
  if (version !== VERSION) throw new RangeError('unknown rollup chunk version');
  const res = cur.varint();
  const n = cur.varint();
  if (n === 0) {
    if (!cur.done) throw new RangeError('trailing bytes after rollup chunk');
    return [];
  }
  // A count no chunk of this size could hold would otherwise allocate before failing.
  if (n > bytes.length) throw new RangeError('truncated rollup chunk');
  if (scratch.length < ROWS * n) scratch = new Float64Array(ROWS * n);
  const t = scratch;
  // Row offsets in `t`; rows 3–6 are last, max, min and sum (see decodeColumn).
  const start = 0;
  const count = n;
  const lastMs = 2 * n;
  let slot = cur.signed();
  cur.packed(n - 1, t, start + 1, 1);
  t[start] = slot * res;
  for (let i = 1; i < n; i++) {
    slot += t[start + i];
    t[start + i] = slot * res;
  }
  cur.offsetPacked(n, t, count);
  cur.offsetPacked(n, t, lastMs);
  for (let i = 0; i < n; i++) t[lastMs + i] += t[start + i];
  // Scaled by 10^ks[c], or float64s where ks[c] is −1.
  const ks = [-1, -1, -1, -1];
  for (let c = 0; c < 4; c++) ks[c] = decodeColumn(cur, n, t, c, ks);
  const sketchBytes = cur.varint();
  if (cur.pos + sketchBytes !== bytes.length) throw new RangeError('rollup chunk length does not match its content');
  // The sketch run keeps its own list of the windows: callers may change the one returned.
  const own = new Array<RollupWindow>(n);
  const sketches = new SketchRun(bytes, cur.pos, own);

  const out = new Array<RollupWindow>(n);
  // Division, not multiplication by 1/10^k: only the division is correctly rounded, which
  // is what makes a decimal read back as exactly the value written.
  const [last, max, min, sum] = ks.map((k) => (k < 0 ? 1 : POW10[k]));
  for (let i = 0; i < n; i++) {
    out[i] = own[i] = new SealedWindow(
      t[start + i],
      t[5 * n + i] / min,
      t[4 * n + i] / max,
      t[6 * n + i] / sum,
      t[count + i],
      t[3 * n + i] / last,
      t[lastMs + i],
      sketches,
      i,
    );
  }
  return out;
}

/**
 * A decoded window. A class with the sketch getter on its prototype rather than an object
 * literal with its own getter: no closure per window, and one shape for all of them.
 */
class SealedWindow implements RollupWindow {
  private decoded: QuantileSketch | undefined = undefined;

  constructor(
    readonly startMs: number,
    readonly min: number,
    readonly max: number,
    readonly sum: number,
    readonly count: number,
    readonly last: number,
    readonly lastMs: number,
    private readonly sketches: Sketches,
    private readonly index: number,
  ) {}

  get sketch(): QuantileSketch {
    this.decoded ??= this.sketches.decode(this.index, this.count);
    return this.decoded;
  }
}


/** One way to write a column: the predictor and what it leaves to store. */
interface Candidate {
  readonly mode: number;
  /** Column predicted from, for {@link SAME} and {@link PREVIOUS}. */
  readonly ref: number;
  readonly k: number;
  readonly seeds: readonly number[];
  readonly residuals: readonly number[];
}

function varintBytes(n: number): number {
  let len = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 0x80)) len++;
  return len;
}

/** Bytes a candidate takes after its mode and exponent. */
function candidateBytes(c: Candidate): number {
  let min = c.residuals.length > 0 ? Infinity : 0;
  let max = c.residuals.length > 0 ? -Infinity : 0;
  for (const r of c.residuals) {
    if (r < min) min = r;
    if (r > max) max = r;
  }
  const width = bitWidth(max - min);
  let bytes = (c.mode === SAME || c.mode === PREVIOUS ? 1 : 0) + varintBytes(zigzag(min)) + 1;
  bytes += Math.ceil((c.residuals.length * width) / 8);
  for (const s of c.seeds) bytes += varintBytes(zigzag(s));
  return bytes;
}

/**
 * Writes one value column with its cheapest predictor; returns the scaled values as
 * written, for later columns to predict from (undefined for floats). `last` is the values
 * of the last column, the first written.
 */
function encodeColumn(
  w: Writer,
  vs: readonly number[],
  earlier: readonly (Scaled | undefined)[],
  last: readonly number[],
  counts: readonly number[],
): Scaled | undefined {
  const k = decimalExponent(vs);
  if (k === undefined) {
    // The decoder has last as floats only when it is not decimals.
    encodeFloats(w, vs, earlier.length > LAST_COLUMN && earlier[LAST_COLUMN] === undefined ? last : undefined);
    return undefined;
  }
  const s = vs.map((v) => Math.round(v * POW10[k]));
  const candidates: Candidate[] = [{ mode: DELTA, ref: 0, k, seeds: [s[0]], residuals: s.slice(1).map((x, i) => x - s[i]) }];
  if (s.length >= 2) {
    const residuals = s.slice(2).map((x, i) => x - 2 * s[i + 1] + s[i]);
    candidates.push({ mode: DELTA_OF_DELTA, ref: 0, k, seeds: [s[0], s[1] - s[0]], residuals });
  }
  earlier.forEach((col, ref) => {
    if (col === undefined) return;
    // Both at the finer exponent: a value exact at k is exact at every larger k too.
    const kk = Math.max(k, col.k);
    const own = s.map((x) => x * POW10[kk - k]);
    const other = col.s.map((x) => x * POW10[kk - col.k]);
    if (!own.concat(other).every((x) => Math.abs(x) < LIMIT)) return;
    candidates.push({ mode: SAME, ref, k: kk, seeds: [], residuals: own.map((x, i) => x - other[i]) });
    candidates.push({ mode: PREVIOUS, ref, k: kk, seeds: [own[0]], residuals: own.slice(1).map((x, i) => x - other[i]) });
  });
  const [max, min] = [earlier[MAX_COLUMN], earlier[MIN_COLUMN]];
  if (max !== undefined && min !== undefined) {
    const kk = Math.max(k, max.k, min.k);
    const twice = counts.map((c, i) => c * (max.s[i] * POW10[kk - max.k] + min.s[i] * POW10[kk - min.k]));
    const residuals = s.map((x, i) => x * POW10[kk - k] - Math.floor(twice[i] / 2));
    // Exact products only, and residuals as small as other columns' (zig-zag stays safe).
    if (twice.every((x) => Math.abs(x) <= Number.MAX_SAFE_INTEGER) && residuals.every((r) => Math.abs(r) < LIMIT)) {
      candidates.push({ mode: MEAN, ref: 0, k: kk, seeds: [], residuals });
    }
  }
  let best = candidates[0];
  let bestBytes = candidateBytes(best);
  for (const c of candidates.slice(1)) {
    const bytes = candidateBytes(c);
    if (bytes < bestBytes) {
      best = c;
      bestBytes = bytes;
    }
  }
  w.byte(best.mode);
  w.byte(best.k);
  if (best.mode === SAME || best.mode === PREVIOUS) w.byte(best.ref);
  for (const seed of best.seeds) w.varint(zigzag(seed));
  w.offsetPacked(best.residuals);
  // Later columns predict from the values as the decoder will have them: at the exponent written.
  return { k: best.k, s: best.k === k ? s : s.map((x) => x * POW10[best.k - k]) };
}

/** Bits of floats, the encoder's and the decoder's: a float64 as two 32-bit words. */
const FLOATS = new Float64Array(2);
const WORDS = new Uint32Array(FLOATS.buffer);

/**
 * Writes a column that is not decimals as float64s or XOR-ed bits (see {@link XOR}),
 * whichever takes the fewest bytes; `last`, the last column's floats, may predict it.
 */
function encodeFloats(w: Writer, vs: readonly number[], last: readonly number[] | undefined): void {
  let best = { mode: XOR, xor: encodeXor(vs) };
  if (last !== undefined) {
    for (const mode of [XOR_SAME, XOR_PREVIOUS]) {
      const chained = chainXor(vs, last, mode === XOR_SAME ? 0 : 1);
      if (chained === undefined) continue;
      const xor = encodeXor(chained);
      if (xor.length < best.xor.length) best = { mode, xor };
    }
  }
  if (varintBytes(best.xor.length) + best.xor.length >= 8 * vs.length) {
    w.byte(FLOAT);
    for (const v of vs) w.float64(v);
    return;
  }
  w.byte(best.mode);
  w.varint(best.xor.length);
  w.bytes(best.xor);
}

/**
 * What to give `encodeXor`, which XORs each value's bits with the previous one's, for it to
 * write instead each of `vs` XOR its prediction `ref[i − lag]` (+0 before the first): the
 * running XOR of those, as floats. Undefined when a prediction or one of these floats is a
 * NaN: the decoder would need its bits exactly, and V8 may keep one NaN for all in an array
 * of floats (chunk.ts's decodeXor returns one), so those bits may not come back.
 */
function chainXor(vs: readonly number[], ref: readonly number[], lag: number): number[] | undefined {
  const out: number[] = [];
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < vs.length; i++) {
    const prediction = i >= lag ? ref[i - lag] : 0;
    if (Number.isNaN(prediction)) return undefined;
    FLOATS[0] = vs[i];
    FLOATS[1] = prediction;
    lo ^= WORDS[0] ^ WORDS[2];
    hi ^= WORDS[1] ^ WORDS[3];
    WORDS[0] = lo;
    WORDS[1] = hi;
    if (Number.isNaN(FLOATS[0])) return undefined;
    out.push(FLOATS[0]);
  }
  return out;
}

/**
 * Inverse of {@link encodeColumn}, into row `3 + c` of `t`: the values scaled by 10^k, or as
 * floats. Returns k, or −1 for floats. `ks` holds the earlier columns' exponents; the
 * counts, which {@link MEAN} reads, are in row 1.
 */
function decodeColumn(cur: Cursor, n: number, t: Float64Array, c: number, ks: readonly number[]): number {
  const row = (3 + c) * n;
  const mode = cur.byte();
  if (mode === FLOAT) {
    for (let i = 0; i < n; i++) t[row + i] = cur.float64();
    return -1;
  }
  if (mode >= XOR) {
    decodeFloats(cur, n, t, c, ks, mode);
    return -1;
  }
  const k = cur.byte();
  if (k >= POW10.length) throw new RangeError(`bad decimal exponent ${k}`);
  if (mode === DELTA) {
    t[row] = cur.signed();
    cur.offsetPacked(n - 1, t, row + 1);
    for (let i = 1; i < n; i++) t[row + i] += t[row + i - 1];
  } else if (mode === DELTA_OF_DELTA) {
    if (n < 2) throw new RangeError('delta-of-delta column of a single window');
    t[row] = cur.signed();
    t[row + 1] = t[row] + cur.signed();
    cur.offsetPacked(n - 2, t, row + 2);
    for (let i = 2; i < n; i++) t[row + i] += 2 * t[row + i - 1] - t[row + i - 2];
  } else if (mode === SAME || mode === PREVIOUS) {
    const ref = cur.byte();
    if (!(ref < c && ks[ref] >= 0 && ks[ref] <= k)) throw new RangeError('bad reference column');
    const f = POW10[k - ks[ref]];
    const from = (3 + ref) * n;
    if (mode === SAME) {
      cur.offsetPacked(n, t, row);
      for (let i = 0; i < n; i++) t[row + i] += t[from + i] * f;
    } else {
      t[row] = cur.signed();
      cur.offsetPacked(n - 1, t, row + 1);
      for (let i = 1; i < n; i++) t[row + i] += t[from + i - 1] * f;
    }
  } else if (mode === MEAN) {
    const [kMax, kMin] = [ks[MAX_COLUMN], ks[MIN_COLUMN]];
    if (!(c > MIN_COLUMN && kMax >= 0 && kMax <= k && kMin >= 0 && kMin <= k)) throw new RangeError('bad mean column');
    const fMax = POW10[k - kMax];
    const fMin = POW10[k - kMin];
    const counts = n;
    const max = (3 + MAX_COLUMN) * n;
    const min = (3 + MIN_COLUMN) * n;
    cur.offsetPacked(n, t, row);
    for (let i = 0; i < n; i++) t[row + i] += Math.floor((t[counts + i] * (t[max + i] * fMax + t[min + i] * fMin)) / 2);
  } else {
    throw new RangeError(`unknown value column mode ${mode}`);
  }
  return k;
}

/** Inverse of {@link encodeFloats} for the XOR modes, into row `3 + c` of `t`. */
function decodeFloats(cur: Cursor, n: number, t: Float64Array, c: number, ks: readonly number[], mode: number): void {
  if (mode > XOR_PREVIOUS) throw new RangeError(`unknown value column mode ${mode}`);
  if (mode !== XOR && !(c > LAST_COLUMN && ks[LAST_COLUMN] < 0)) throw new RangeError('bad reference column');
  const length = cur.varint();
  if (cur.pos + length > cur.bytes.length) throw new RangeError('truncated rollup chunk');
  const vs = decodeXor(cur.bytes.subarray(cur.pos, cur.pos + length), n);
  cur.pos += length;
  const row = (3 + c) * n;
  for (let i = 0; i < n; i++) t[row + i] = vs[i];
  if (mode === XOR) return;
  // Undoing chainXor in place, last first: each value's bits XOR the previous one's (still
  // as decoded) and its prediction's. On words, so that NaN bits are kept.
  const words = new Uint32Array(t.buffer, t.byteOffset, 2 * t.length);
  const lag = mode === XOR_SAME ? 0 : 1;
  const from = (3 + LAST_COLUMN) * n - lag;
  for (let i = n - 1; i >= 0; i--) {
    const at = 2 * (row + i);
    if (i > 0) {
      words[at] ^= words[at - 2];
      words[at + 1] ^= words[at - 1];
    }
    if (i >= lag) {
      words[at] ^= words[2 * (from + i)];
      words[at + 1] ^= words[2 * (from + i) + 1];
    }
  }
}

type Pairs = readonly (readonly [number, number])[];

/** What a chunk's sketches give a window to decode its own. */
interface Sketches {
  decode(i: number, count: number): QuantileSketch;
}

/** Bits of a window's sketch shape (see the module comment). */
const HAS_ZEROS = 1;
const HAS_NEGATIVE = 2;
const HAS_POSITIVE = 4;
const NEGATIVE_SPARSE = 8;
const POSITIVE_SPARSE = 16;
/**
 * The window's count is not its sketch's total (it counted NaN or ±Inf), so every count is
 * stored; otherwise the last is left out and decoded as the window's count minus the rest.
 * Leaving it out saves 0.6 bytes per 5-minute window and 0.8 per 1-hour window (measured):
 * a 5-minute counter window mostly has one bucket, and then no number at all.
 */
const ALL_STORED = 32;
const SHAPES = 64;

/** Below this (and for ±Inf and NaN) a min or max predicts no bucket index. */
const PREDICTABLE = 1e-300;
const LN2 = 0.6931471805599453;
const bits64 = new DataView(new ArrayBuffer(8));

/**
 * ln(v) for `PREDICTABLE ≤ v < ∞`, to within 1e-12, from the float's exponent bits and an
 * atanh series in its mantissa. Not Math.log: the bucket index it predicts must come out the
 * same in the encoder and in every decoder, on every platform and after a Node upgrade, and
 * only + − × ÷ are specified to the last bit (Math.log is "implementation-approximated").
 */
function ln(v: number): number {
  bits64.setFloat64(0, v);
  let hi = bits64.getUint32(0);
  // v is positive and normal: the top bits are the biased exponent, the rest the mantissa,
  // here taken as m ∈ [√½, √2) so that the series below converges fast.
  let exponent = (hi >>> 20) - 1023;
  hi = (hi & 0xfffff) | 0x3ff00000;
  if (hi > 0x3ff6a09e) {
    hi -= 0x100000;
    exponent++;
  }
  bits64.setUint32(0, hi);
  const m = bits64.getFloat64(0);
  // ln m = 2·atanh(s) = 2(s + s³/3 + s⁵/5 + …), s = (m − 1)/(m + 1), |s| < 0.172: the terms
  // left out sum to under 5e-13.
  const s = (m - 1) / (m + 1);
  const s2 = s * s;
  const series = s * (2 + s2 * (2 / 3 + s2 * (2 / 5 + s2 * (2 / 7 + s2 * (2 / 9 + s2 * (2 / 11 + s2 * (2 / 13)))))));
  return exponent * LN2 + series;
}

/** ln γ for relative accuracy α, γ as sketch.ts defines it. */
function lnGamma(alpha: number): number {
  return ln((1 + alpha) / (1 - alpha));
}

/**
 * The bucket index sketch.ts gives the magnitude `v` (but for the rare `v` within 1e-12 of a
 * bucket boundary, where `ln` and Math.log may disagree), or NaN when `v` predicts none.
 */
function guessIndex(v: number, lnG: number): number {
  if (!(v >= PREDICTABLE && v < Infinity)) return NaN;
  const i = Math.ceil(ln(v) / lnG);
  return Math.abs(i) < LIMIT ? i : NaN;
}

/**
 * One sign's first bucket index, predicted from the window's value nearest zero on that
 * side (`near`: min for positives, −max for negatives): when that value is of this sign, it
 * lies in exactly that bucket. Otherwise from the previous window's first index of the sign.
 * Against predicting the first index from the previous window's alone and the last from the
 * first (so storing the span), this saves 1.3 bytes per 5-minute window and 1.5 per 1-hour
 * window (measured), and costs the sketch scan two `ln` per window, about 40 ns.
 */
function predictFirst(near: number, lnG: number, previous: number): number {
  const g = guessIndex(near, lnG);
  return Number.isNaN(g) ? previous : g;
}

/** Likewise the last, from the value farthest from zero (max, or −min), else the first. */
function predictLast(far: number, lnG: number, first: number): number {
  const g = guessIndex(far, lnG);
  return Number.isNaN(g) ? first : g;
}

/** Bits the non-negative integer `v` takes (0 for 0). */
function bitWidth(v: number): number {
  if (v < 2 ** 31) return 32 - Math.clz32(v);
  let width = 31;
  while (2 ** width <= v) width++;
  return width;
}

/** A bit stream, least significant bit first: the sketches' counts. */
class BitWriter {
  private readonly bytes: number[] = [];
  /** Bits not yet in `bytes`: fewer than 8 between writes. */
  private pending = 0;
  private count = 0;

  write(v: number, width: number): void {
    let rest = v;
    // 24 bits at a time, so that the pending bits and the new stay below 2^31.
    for (let left = width; left > 0; ) {
      const take = Math.min(24, left);
      const part = take < left ? rest % 2 ** 24 : rest;
      rest = (rest - part) / 2 ** 24;
      this.pending |= part << this.count;
      for (this.count += take; this.count >= 8; this.count -= 8) {
        this.bytes.push(this.pending & 0xff);
        this.pending >>>= 8;
      }
      left -= take;
    }
  }

  finish(): readonly number[] {
    if (this.count > 0) this.bytes.push(this.pending);
    this.pending = 0;
    this.count = 0;
    return this.bytes;
  }
}

/** `width` bits of `bytes` from bit `at`, as {@link BitWriter} wrote them. */
function readBits(bytes: Uint8Array, at: number, width: number): number {
  // Up to 24 bits, shifted by at most 7, with 4 bytes left: one word read.
  const p = at >>> 3;
  if (width <= 24 && p + 3 < bytes.length) {
    const word = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16) | (bytes[p + 3] << 24);
    return (word >>> (at & 7)) & ((1 << width) - 1);
  }
  let v = 0;
  let scale = 1;
  let bit = at;
  for (let left = width; left > 0; ) {
    const off = bit & 7;
    const take = Math.min(8 - off, left);
    v += ((bytes[bit >>> 3] >>> off) & ((1 << take) - 1)) * scale;
    scale *= 2 ** take;
    bit += take;
    left -= take;
  }
  return v;
}

/**
 * The ways to write one sign's buckets as numbers of the window's bit stream. Dense: a count
 * for every index from the first to the last (0 where empty). Sparse: the bucket count, the
 * first count, then (index gap − 1, count) per further bucket. Dense is tried only where it
 * could take fewer bits: `span` numbers of at least 1 bit against `2·buckets` of at most 53.
 */
function sideLayouts(pairs: Pairs): Part[] {
  if (pairs.length === 0) return [part(false, [])];
  const sparse = [pairs.length, pairs[0][1]];
  for (let j = 1; j < pairs.length; j++) sparse.push(pairs[j][0] - pairs[j - 1][0] - 1, pairs[j][1]);
  const layouts = [part(true, sparse)];
  const first = pairs[0][0];
  const span = pairs[pairs.length - 1][0] - first + 1;
  if (span < 2 * 53 * pairs.length) {
    const dense = new Array<number>(span).fill(0);
    for (const [index, count] of pairs) dense[index - first] = count;
    layouts.push(part(false, dense));
  }
  return layouts;
}

/** Numbers of a window's bit stream, with their largest with and without the last. */
interface Part {
  readonly sparse: boolean;
  readonly entries: readonly number[];
  readonly max: number;
  readonly maxButLast: number;
}

function part(sparse: boolean, entries: readonly number[]): Part {
  let maxButLast = 0;
  for (let j = 0; j < entries.length - 1; j++) if (entries[j] > maxButLast) maxButLast = entries[j];
  return { sparse, entries, max: Math.max(maxButLast, entries.length > 0 ? entries[entries.length - 1] : 0), maxButLast };
}

function checkPairs(pairs: Pairs): void {
  for (const [index, count] of pairs) {
    if (!(Number.isSafeInteger(count) && count > 0)) {
      throw new RangeError(`sketch bucket counts must be positive integers, got ${count}`);
    }
    if (!(Number.isSafeInteger(index) && Math.abs(index) < LIMIT)) throw new RangeError(`sketch bucket index ${index} out of range`);
  }
}

/**
 * Writes every window's sketch (see the module comment). Version 1 wrote each window's
 * header, first indices and counts as byte-aligned varints; shapes and indices as columns
 * and the counts as a bit stream at each window's own width took 1.3 bytes per 5-minute
 * window less (2.6 per 1-hour window, whose gauges' sketches count some 20 buckets of about
 * 5 bits each) even before the count left out and the index predictions (measured).
 */
function encodeSketches(w: Writer, windows: readonly RollupWindow[]): void {
  const alpha = windows[0].sketch.alpha;
  const millionths = Math.round(alpha * 1e6);
  // Millionths as sketch.ts writes α, and only when that reads back as the same α.
  const shared = millionths / 1e6 === alpha && windows.every((x) => x.sketch.alpha === alpha);
  if (shared) {
    w.byte(SHARED_ALPHA);
    w.varint(millionths);
  } else {
    w.byte(OWN_ALPHA);
    for (const win of windows) w.float64(win.sketch.alpha);
  }
  const sharedLnG = lnGamma(alpha);
  const shapes: number[] = [];
  // Per sign, negative then positive: the first and last index residuals.
  const sides = [0, 1].map(() => ({ first: [] as number[], last: [] as number[], previous: 0 }));
  const widths: number[] = [];
  const body = new BitWriter();
  for (const win of windows) {
    const sketch = win.sketch;
    const lnG = shared ? sharedLnG : lnGamma(sketch.alpha);
    const { zeros, positive, negative } = sketch.buckets();
    if (!(Number.isSafeInteger(zeros) && zeros >= 0)) throw new RangeError(`sketch zero count must be an integer, got ${zeros}`);
    checkPairs(negative);
    checkPairs(positive);
    const allStored = sketch.count !== win.count;
    const zeroPart = part(false, zeros > 0 ? [zeros] : []);
    let best: { parts: Part[]; width: number; numbers: number; shape: number } | undefined;
    for (const neg of sideLayouts(negative)) {
      for (const pos of sideLayouts(positive)) {
        const parts = [zeroPart, neg, pos];
        // The count left out is the last number, in the last part that has any.
        let final = parts.length - 1;
        while (final > 0 && parts[final].entries.length === 0) final--;
        let max = 0;
        let numbers = 0;
        parts.forEach((p, j) => {
          max = Math.max(max, allStored || j !== final ? p.max : p.maxButLast);
          numbers += p.entries.length;
        });
        if (!allStored && numbers > 0) numbers--;
        const width = bitWidth(max);
        if (best !== undefined && numbers * width >= best.numbers * best.width) continue;
        const shape =
          (zeros > 0 ? HAS_ZEROS : 0) |
          (negative.length > 0 ? HAS_NEGATIVE : 0) |
          (positive.length > 0 ? HAS_POSITIVE : 0) |
          (neg.sparse ? NEGATIVE_SPARSE : 0) |
          (pos.sparse ? POSITIVE_SPARSE : 0) |
          (allStored ? ALL_STORED : 0);
        best = { parts, width, numbers, shape };
      }
    }
    if (best === undefined) throw new Error('unreachable: every sign has a layout');
    shapes.push(best.shape);
    // Negative buckets are indexed by −v: the one nearest zero holds the largest value.
    const signs = [
      [negative, -win.max, -win.min],
      [positive, win.min, win.max],
    ] as const;
    signs.forEach(([pairs, near, far], s) => {
      if (pairs.length === 0) return;
      const side = sides[s];
      const first = pairs[0][0];
      side.first.push(first - predictFirst(near, lnG, side.previous));
      side.last.push(pairs[pairs.length - 1][0] - predictLast(far, lnG, first));
      side.previous = first;
    });
    if (best.numbers > 0) {
      widths.push(best.width);
      let left = best.numbers;
      for (const p of best.parts) for (let j = 0; j < p.entries.length && left > 0; j++, left--) body.write(p.entries[j], best.width);
    }
  }
  w.offsetPacked(shapes);
  for (const side of sides) {
    if (side.first.length === 0) continue;
    w.offsetPacked(side.first);
    w.offsetPacked(side.last);
  }
  w.offsetPacked(widths);
  for (const b of body.finish()) w.byte(b);
}

/** The sketch scan's columns, reused like the numbers' `scratch`. */
let sketchScratch = new Float64Array(6 * 64);

/**
 * Per window in {@link SketchRun}'s layout: bit offset and width of its numbers, how many,
 * its shape, then first and last index of its negative and of its positive buckets.
 */
const LAYOUT = 8;

/**
 * A chunk's sketches, shared by its windows. The first window to read its sketch has the
 * section's columns decoded once, for where each window's numbers are and which buckets
 * they count; a query that reads no sketch never pays for that.
 */
class SketchRun implements Sketches {
  /** The shared α, or NaN when each window has its own (`alphas`). */
  private alpha = NaN;
  private alphas: Float64Array | undefined = undefined;
  private layout: Float64Array | undefined = undefined;
  /** Bit offset of the windows' numbers in `bytes`. */
  private body = 0;

  constructor(
    private readonly bytes: Uint8Array,
    /** Where the section starts; it runs to the end of `bytes`. */
    private readonly at: number,
    /** The chunk's windows: their min and max predict the bucket indices. */
    private readonly windows: readonly RollupWindow[],
  ) {}

  decode(i: number, count: number): QuantileSketch {
    const layout = (this.layout ??= this.scan());
    const at = LAYOUT * i;
    const shape = layout[at + 3];
    const r = new BucketReader(this.bytes, this.body + layout[at], layout[at + 1], layout[at + 2], shape & ALL_STORED ? NaN : count);
    const zeros = shape & HAS_ZEROS ? r.count() : 0;
    const negative = shape & HAS_NEGATIVE ? r.side((shape & NEGATIVE_SPARSE) !== 0, layout[at + 4], layout[at + 5]) : [];
    const positive = shape & HAS_POSITIVE ? r.side((shape & POSITIVE_SPARSE) !== 0, layout[at + 6], layout[at + 7]) : [];
    r.finish();
    return QuantileSketch.fromBuckets(this.alphas === undefined ? this.alpha : this.alphas[i], { zeros, positive, negative });
  }

  /** Decodes the section's columns into each window's layout (see {@link LAYOUT}). */
  private scan(): Float64Array {
    const n = this.windows.length;
    const bytes = this.bytes;
    const cur = new Cursor(bytes);
    cur.pos = this.at;
    const mode = cur.byte();
    if (mode === SHARED_ALPHA) {
      this.alpha = cur.varint() / 1e6;
      checkAlpha(this.alpha);
    } else if (mode === OWN_ALPHA) {
      const alphas = (this.alphas = new Float64Array(n));
      for (let i = 0; i < n; i++) checkAlpha((alphas[i] = cur.float64()));
    } else {
      throw new RangeError(`unknown sketch mode ${mode}`);
    }
    // The columns, in `t`: shapes from 0, the first and the last index residuals of the
    // windows with negative buckets from n, likewise for positive from 3n, widths from 5n.
    if (sketchScratch.length < 6 * n) sketchScratch = new Float64Array(6 * n);
    const t = sketchScratch;
    cur.offsetPacked(n, t, 0);
    let negatives = 0;
    let positives = 0;
    for (let i = 0; i < n; i++) {
      const shape = t[i];
      const ok =
        shape >= 0 &&
        shape < SHAPES &&
        (shape & NEGATIVE_SPARSE ? shape & HAS_NEGATIVE : 1) &&
        (shape & POSITIVE_SPARSE ? shape & HAS_POSITIVE : 1);
      if (!ok) throw new RangeError(`bad sketch shape ${shape}`);
      if (shape & HAS_NEGATIVE) negatives++;
      if (shape & HAS_POSITIVE) positives++;
    }
    let neg = n;
    let pos = 3 * n;
    if (negatives > 0) {
      cur.offsetPacked(negatives, t, neg);
      cur.offsetPacked(negatives, t, neg + negatives);
    }
    if (positives > 0) {
      cur.offsetPacked(positives, t, pos);
      cur.offsetPacked(positives, t, pos + positives);
    }
    // The first and last indices, and how many numbers each window has but for its sparse
    // signs' bucket counts, which are in the bit stream.
    const layout = new Float64Array(LAYOUT * n);
    let withNumbers = 0;
    let negPrevious = 0;
    let posPrevious = 0;
    const sharedLnG = this.alphas === undefined ? lnGamma(this.alpha) : NaN;
    for (let i = 0; i < n; i++) {
      const at = LAYOUT * i;
      const shape = t[i];
      const { min, max } = this.windows[i];
      const lnG = this.alphas === undefined ? sharedLnG : lnGamma(this.alphas[i]);
      let numbers = shape & HAS_ZEROS ? 1 : 0;
      // A sparse sign has 2 numbers per bucket (how many buckets is read below), a dense
      // one a number per index.
      if (shape & HAS_NEGATIVE) {
        negPrevious = indices(layout, at + 4, t[neg], t[neg + negatives], -max, -min, lnG, negPrevious);
        neg++;
        numbers += shape & NEGATIVE_SPARSE ? 2 : layout[at + 5] - layout[at + 4] + 1;
      }
      if (shape & HAS_POSITIVE) {
        posPrevious = indices(layout, at + 6, t[pos], t[pos + positives], min, max, lnG, posPrevious);
        pos++;
        numbers += shape & POSITIVE_SPARSE ? 2 : layout[at + 7] - layout[at + 6] + 1;
      }
      if (numbers > 0 && !(shape & ALL_STORED)) numbers--;
      layout[at + 2] = numbers;
      layout[at + 3] = shape;
      if (numbers > 0) withNumbers++;
    }
    const widths = 5 * n;
    cur.offsetPacked(withNumbers, t, widths);
    this.body = 8 * cur.pos;
    const end = 8 * bytes.length;
    let bit = this.body;
    for (let i = 0, j = 0; i < n; i++) {
      const at = LAYOUT * i;
      if (layout[at + 2] === 0) continue;
      const width = t[widths + j++];
      // Every window with numbers has a nonzero one: a bucket count or the zero count.
      if (!(width >= 1 && width <= 53)) throw new RangeError(`bad sketch count width ${width}`);
      const shape = layout[at + 3];
      // Where each sparse sign's bucket count is, and how many numbers it makes.
      let numbers = layout[at + 2];
      let next = bit + (shape & HAS_ZEROS ? width : 0);
      for (let s = 0; s < 2; s++) {
        if (!(shape & (s === 0 ? HAS_NEGATIVE : HAS_POSITIVE))) continue;
        let signNumbers = layout[at + 5 + 2 * s] - layout[at + 4 + 2 * s] + 1;
        if (shape & (s === 0 ? NEGATIVE_SPARSE : POSITIVE_SPARSE)) {
          if (next + width > end) throw new RangeError('truncated rollup chunk');
          const buckets = readBits(bytes, next, width);
          if (buckets < 1) throw new RangeError('sparse sketch buckets without a bucket');
          signNumbers = 2 * buckets;
          numbers += signNumbers - 2;
        }
        next += signNumbers * width;
      }
      layout[at] = bit - this.body;
      layout[at + 1] = width;
      layout[at + 2] = numbers;
      bit += numbers * width;
      if (bit > end) throw new RangeError('truncated rollup chunk');
    }
    // The stream ends in the chunk's last byte, padded with zeros.
    if (Math.ceil(bit / 8) !== bytes.length || (bit % 8 > 0 && bytes[bytes.length - 1] >>> bit % 8 !== 0)) {
      throw new RangeError('rollup chunk sketch section length does not match its content');
    }
    return layout;
  }
}

/**
 * Sets one sign's first and last bucket index in `layout[at]` and `layout[at + 1]` from
 * their residuals and predictions; returns the first, the next window's `previous`.
 */
function indices(
  layout: Float64Array,
  at: number,
  firstResidual: number,
  lastResidual: number,
  near: number,
  far: number,
  lnG: number,
  previous: number,
): number {
  const first = firstResidual + predictFirst(near, lnG, previous);
  const last = lastResidual + predictLast(far, lnG, first);
  if (!(Number.isSafeInteger(first) && Number.isSafeInteger(last) && last >= first)) throw new RangeError('bad sketch bucket indices');
  layout[at] = first;
  layout[at + 1] = last;
  return first;
}

/**
 * Reads one window's numbers, counting the counts so that the one left out (the last, when
 * the window's count is its sketch's total) is that count minus the rest.
 */
class BucketReader {
  private total = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private bit: number,
    private readonly width: number,
    /** Numbers left to read from the stream. */
    private left: number,
    /** The window's count when the last count is left out, else NaN. */
    private readonly expected: number,
  ) {}

  /** A number that is not a count (a bucket count or a gap). */
  other(): number {
    if (this.left <= 0) throw new RangeError('sketch numbers run past their window');
    this.left--;
    const v = readBits(this.bytes, this.bit, this.width);
    this.bit += this.width;
    return v;
  }

  count(): number {
    let v: number;
    if (this.left === 0 && !Number.isNaN(this.expected)) {
      v = this.expected - this.total;
      if (!(Number.isSafeInteger(v) && v >= 1)) throw new RangeError('sketch counts exceed the window count');
    } else {
      v = this.other();
    }
    this.total += v;
    return v;
  }

  /** One sign's buckets, dense or sparse (see {@link sideLayouts}), from `first` to `last`. */
  side(sparse: boolean, first: number, last: number): [number, number][] {
    const out: [number, number][] = [];
    if (sparse) {
      const buckets = this.other();
      let index = first;
      out.push([index, this.count()]);
      for (let j = 1; j < buckets; j++) {
        index += this.other() + 1;
        out.push([index, this.count()]);
      }
      if (index !== last) throw new RangeError('sparse sketch buckets do not end at their last index');
    } else {
      for (let index = first; index <= last; index++) {
        const c = this.count();
        if (c > 0) out.push([index, c]);
      }
    }
    return out;
  }

  finish(): void {
    if (this.left !== 0 || (!Number.isNaN(this.expected) && this.total !== this.expected)) {
      throw new RangeError('sketch counts do not add up to the window count');
    }
  }
}

function checkAlpha(alpha: number): void {
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`bad sketch relative accuracy ${alpha}`);
}

/**
 * Reads what `Writer` wrote, like chunk.ts's `Reader`, but with its position exposed (the
 * sketch scan records offsets) and bit-unpacking that reads a value's bytes at once rather
 * than bit run by bit run: a month-long dashboard query decodes hundreds of thousands of
 * windows, and with `Reader` unpacking was about a third of that.
 */
class Cursor {
  pos = 0;
  private view: DataView | undefined;

  constructor(readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.pos === this.bytes.length;
  }

  byte(): number {
    if (this.pos >= this.bytes.length) throw new RangeError('truncated rollup chunk');
    return this.bytes[this.pos++];
  }

  varint(): number {
    const bytes = this.bytes;
    let p = this.pos;
    let result = 0;
    let scale = 1;
    for (;;) {
      if (p >= bytes.length) throw new RangeError('truncated rollup chunk');
      const b = bytes[p++];
      result += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 56) throw new RangeError('rollup chunk varint too long');
    }
    this.pos = p;
    return result;
  }

  /** A zig-zag varint (chunk.ts `unzigzag`, here so the hot loops call nothing imported). */
  signed(): number {
    const n = this.varint();
    const half = Math.floor(n / 2);
    return n === 2 * half ? half : -half - 1;
  }

  /** Skips `count` varints. */
  skip(count: number): void {
    const bytes = this.bytes;
    let p = this.pos;
    for (let left = count; left > 0; ) {
      if (p >= bytes.length) throw new RangeError('truncated rollup chunk');
      if (bytes[p++] < 0x80) left--;
    }
    this.pos = p;
  }

  float64(): number {
    if (this.pos + 8 > this.bytes.length) throw new RangeError('truncated rollup chunk');
    this.view ??= new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    const x = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return x;
  }

  /** Inverse of `Writer.offsetPacked`, into `out[at…at + count)`. */
  offsetPacked(count: number, out: Float64Array, at: number): void {
    this.packed(count, out, at, this.signed());
  }

  /** Inverse of `Writer.packed`, plus `add`, into `out[at…at + count)`. */
  packed(count: number, out: Float64Array, at: number, add: number): void {
    const width = this.byte();
    if (width > 53) throw new RangeError(`bad bit width ${width}`);
    const bytes = this.bytes;
    const start = this.pos;
    const end = start + Math.ceil((count * width) / 8);
    if (end > bytes.length) throw new RangeError('truncated rollup chunk');
    if (width === 0) {
      for (let i = 0; i < count; i++) out[at + i] = add;
      return;
    }
    // Values of up to 24 bits whose 4 bytes from the first lie inside the chunk are read a
    // word at a time (shifted by at most 7 bits); the rest, bit by bit.
    const fast = width > 24 ? 0 : Math.max(0, Math.min(count, Math.floor((8 * (bytes.length - 4 - start)) / width) + 1));
    const mask = (1 << width) - 1;
    let bit = 0;
    for (let i = 0; i < fast; i++, bit += width) {
      const p = start + (bit >>> 3);
      const word = bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16) | (bytes[p + 3] << 24);
      out[at + i] = ((word >>> (bit & 7)) & mask) + add;
    }
    for (let i = fast; i < count; i++, bit += width) {
      let v = 0;
      for (let b = 0; b < width; b++) {
        const q = bit + b;
        if ((bytes[start + Math.floor(q / 8)] >> (q & 7)) & 1) v += 2 ** b;
      }
      out[at + i] = v + add;
    }
    this.pos = end;
  }
}
