/**
 * The compact encoding of a run of one series' rollup windows of one tier ("sealed rollup
 * chunk"), used by the DuckDB store for windows old enough not to change: what chunk.ts is
 * to raw samples, this is to `RollupWindow`s.
 *
 * Why: a window stored as a table row takes about 30 bytes, as DuckDB compresses each
 * column on its own and so cannot use how a window's values relate, to each other and to
 * the previous window's: a counter's `last` is its `max` and its `min` is the previous
 * window's `last` plus one increment, a gauge's min, max and last stay within its noise of
 * one another, and a sketch's buckets move as slowly as the values. Predicting each value
 * from those and bit-packing what is left, measured on counters, two-decimal gauges and
 * histogram bucket counters scraped every 15 s (see the size test), takes about 10 bytes
 * per 5-minute window and 18 per 1-hour window.
 *
 * Layout: version byte, resolution and window count (varints), then
 * - window starts: first `start / resolution` (zig-zag varint), then the gaps
 *   `(start_i − start_i−1) / resolution − 1` bit-packed (contiguous windows: width 0);
 * - count, then `lastMs − startMs`: frame-of-reference packed (`Writer.offsetPacked`);
 * - last, max, min, sum: each a value column. Mode byte; mode 0: float64s; otherwise the
 *   decimal exponent `k` (byte), for modes 3 and 4 the column predicted from (byte), the
 *   predictor's seeds (zig-zag varints) and the residuals `round(v·10^k) − prediction`,
 *   frame-of-reference packed. The predictors are listed at {@link DELTA}; the encoder
 *   tries each and keeps the one that takes the fewest bytes. A column is scaled only when
 *   every value round-trips exactly (`round(v·10^k)/10^k === v`), so NaN, ±Inf and −0 force
 *   mode 0; that is also why rollup.ts keeps decimal sums decimal.
 * - sketches: the section's length in bytes (varint), then a mode byte; mode 1: the shared α
 *   in millionths (varint); mode 2: each sketch starts with its own α as a float64 (mixed
 *   α, or one that millionths cannot hold exactly).
 *   Per window, byte-aligned varints: a header `4·P + 2·dense + flag`, where `flag` says
 *   zeros or negative buckets follow; if set, the zero count and the negative header
 *   `2·N + dense`. Then each sign's buckets (positive, then negative, if any): the first
 *   index as a zig-zag delta from the previous window's first index of that sign; then,
 *   when dense, a count (0 when empty) for each of the `P` indices from the first on;
 *   otherwise `P` buckets: the first's count − 1, then (index gap − 1, count − 1) pairs.
 * Decoding is exact in every mode.
 *
 * Reading: a month of hourly windows for `avg_over_time` reads hundreds of thousands of
 * windows and no sketch, so the numbers are decoded at once and the sketches only when one
 * is read (see `SketchRun`); the section's length lets decoding check the chunk's length
 * without looking inside it.
 */
import { Writer, zigzag } from './chunk.js';
import type { RollupWindow } from './rollup.js';
import { QuantileSketch, type SketchBuckets } from './sketch.js';

const VERSION = 1;
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

  const columns: (Scaled | undefined)[] = [];
  columns.push(encodeColumn(w, windows.map((x) => x.last), columns));
  columns.push(encodeColumn(w, windows.map((x) => x.max), columns));
  columns.push(encodeColumn(w, windows.map((x) => x.min), columns));
  columns.push(encodeColumn(w, windows.map((x) => x.sum), columns));

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
  if (cur.byte() !== VERSION) throw new RangeError('unknown rollup chunk version');
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
  const sketches = new SketchRun(bytes, cur.pos, n);

  const out = new Array<RollupWindow>(n);
  // Division, not multiplication by 1/10^k: only the division is correctly rounded, which
  // is what makes a decimal read back as exactly the value written.
  const [last, max, min, sum] = ks.map((k) => (k < 0 ? 1 : POW10[k]));
  for (let i = 0; i < n; i++) {
    out[i] = new SealedWindow(
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
    private readonly sketches: SketchRun,
    private readonly index: number,
  ) {}

  get sketch(): QuantileSketch {
    this.decoded ??= this.sketches.decode(this.index);
    return this.decoded;
  }
}

/** The smallest decimal exponent (0–6) at which every value is an exact scaled integer. */
function decimalExponent(vs: readonly number[]): number | undefined {
  outer: for (let k = 0; k < POW10.length; k++) {
    const scale = POW10[k];
    for (const v of vs) {
      if (!Number.isFinite(v) || Object.is(v, -0)) return undefined;
      const s = Math.round(v * scale);
      if (!(Math.abs(s) < LIMIT) || s / scale !== v) continue outer;
    }
    return k;
  }
  return undefined;
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
  let width = 0;
  while (2 ** width <= max - min) width++;
  let bytes = (c.mode === SAME || c.mode === PREVIOUS ? 1 : 0) + varintBytes(zigzag(min)) + 1;
  bytes += Math.ceil((c.residuals.length * width) / 8);
  for (const s of c.seeds) bytes += varintBytes(zigzag(s));
  return bytes;
}

/**
 * Writes one value column with its cheapest predictor; returns the scaled values as
 * written, for later columns to predict from (undefined for float64s).
 */
function encodeColumn(w: Writer, vs: readonly number[], earlier: readonly (Scaled | undefined)[]): Scaled | undefined {
  const k = decimalExponent(vs);
  if (k === undefined) {
    w.byte(FLOAT);
    for (const v of vs) w.float64(v);
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

/**
 * Inverse of {@link encodeColumn}, into row `3 + c` of `t`: the values scaled by 10^k, or as
 * float64s. Returns k, or −1 for float64s. `ks` holds the earlier columns' exponents.
 */
function decodeColumn(cur: Cursor, n: number, t: Float64Array, c: number, ks: readonly number[]): number {
  const row = (3 + c) * n;
  const mode = cur.byte();
  if (mode === FLOAT) {
    for (let i = 0; i < n; i++) t[row + i] = cur.float64();
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
  } else {
    throw new RangeError(`unknown value column mode ${mode}`);
  }
  return k;
}

type Pairs = readonly (readonly [number, number])[];

/** Writes every window's sketch (see the module comment). */
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
  }
  let posBase = 0;
  let negBase = 0;
  for (const win of windows) {
    const sketch = win.sketch;
    if (!shared) w.float64(sketch.alpha);
    const { zeros, positive, negative } = sketch.buckets();
    if (!(Number.isSafeInteger(zeros) && zeros >= 0)) throw new RangeError(`sketch zero count must be an integer, got ${zeros}`);
    const flagged = zeros > 0 || negative.length > 0;
    const pos = planBuckets(positive);
    const neg = planBuckets(negative);
    w.varint(pos.length * 4 + (pos.dense ? 2 : 0) + (flagged ? 1 : 0));
    if (flagged) {
      w.varint(zeros);
      w.varint(neg.length * 2 + (neg.dense ? 1 : 0));
    }
    posBase = writeBuckets(w, positive, pos.dense, posBase);
    negBase = writeBuckets(w, negative, neg.dense, negBase);
  }
}

/**
 * Whether one sign's buckets take fewer bytes written densely (a count for every index from
 * the first to the last) than as (gap, count) pairs: a gauge fills a run of adjacent
 * buckets, where the gaps would be half the bytes; scattered values leave long runs of
 * empty indices, which pairs skip.
 * `length` is what the header announces: indices when dense, buckets otherwise.
 */
function planBuckets(pairs: Pairs): { dense: boolean; length: number } {
  if (pairs.length === 0) return { dense: false, length: 0 };
  let sparse = 0;
  let dense = 0;
  for (let j = 0; j < pairs.length; j++) {
    const count = pairs[j][1];
    if (!(Number.isSafeInteger(count) && count > 0)) {
      throw new RangeError(`sketch bucket counts must be positive integers, got ${count}`);
    }
    sparse += varintBytes(count - 1);
    dense += varintBytes(count);
    if (j > 0) {
      const gap = pairs[j][0] - pairs[j - 1][0];
      sparse += varintBytes(gap - 1);
      dense += gap - 1;
    }
  }
  const span = pairs[pairs.length - 1][0] - pairs[0][0] + 1;
  return dense < sparse ? { dense: true, length: span } : { dense: false, length: pairs.length };
}

/** Writes one sign's buckets, the first index against `base`; returns the next window's base. */
function writeBuckets(w: Writer, pairs: Pairs, dense: boolean, base: number): number {
  if (pairs.length === 0) return base;
  const first = pairs[0][0];
  w.varint(zigzag(first - base));
  let next = first;
  for (const [index, count] of pairs) {
    if (dense) {
      for (; next < index; next++) w.varint(0);
      w.varint(count);
    } else {
      // Indices ascend, so every gap after the first bucket is at least 1.
      if (index !== first) w.varint(index - next);
      w.varint(count - 1);
    }
    next = index + 1;
  }
  return first;
}

/**
 * A chunk's sketches, shared by its windows. The first window to read its sketch has the
 * section scanned once for where each sketch starts and the first indices it is relative
 * to; a query that reads no sketch never pays for the scan, which costs nearly as much as
 * decoding the numbers when the sketches are dense (an hourly gauge's).
 */
class SketchRun {
  /** The shared α, or NaN when each sketch starts with its own. */
  private alpha = NaN;
  /** Per window: byte offset, positive base index, negative base index. */
  private starts: Float64Array | undefined = undefined;

  constructor(
    private readonly bytes: Uint8Array,
    /** Where the section starts; it runs to the end of `bytes`. */
    private readonly at: number,
    private readonly n: number,
  ) {}

  decode(i: number): QuantileSketch {
    const starts = (this.starts ??= this.scan());
    const cur = new Cursor(this.bytes);
    cur.pos = starts[3 * i];
    const alpha = Number.isNaN(this.alpha) ? cur.float64() : this.alpha;
    const head = cur.varint();
    const flagged = head % 2 === 1;
    const zeros = flagged ? cur.varint() : 0;
    const negHead = flagged ? cur.varint() : 0;
    const buckets: SketchBuckets = {
      zeros,
      positive: readBuckets(cur, Math.floor(head / 4), head % 4 >= 2, starts[3 * i + 1]),
      negative: readBuckets(cur, Math.floor(negHead / 2), negHead % 2 === 1, starts[3 * i + 2]),
    };
    return QuantileSketch.fromBuckets(alpha, buckets);
  }

  /** Finds every sketch in one pass, following each sign's first index and skipping the rest. */
  private scan(): Float64Array {
    const cur = new Cursor(this.bytes);
    cur.pos = this.at;
    const mode = cur.byte();
    if (mode === SHARED_ALPHA) {
      this.alpha = cur.varint() / 1e6;
      checkAlpha(this.alpha);
    } else if (mode !== OWN_ALPHA) {
      throw new RangeError(`unknown sketch mode ${mode}`);
    }
    const starts = new Float64Array(3 * this.n);
    let posBase = 0;
    let negBase = 0;
    for (let i = 0; i < this.n; i++) {
      starts[3 * i] = cur.pos;
      starts[3 * i + 1] = posBase;
      starts[3 * i + 2] = negBase;
      if (mode === OWN_ALPHA) checkAlpha(cur.float64());
      const head = cur.varint();
      let negHead = 0;
      if (head % 2 === 1) {
        cur.varint();
        negHead = cur.varint();
      }
      // Past each sign's first index: a count per index when dense, else a gap and a
      // count per bucket but the first, which has no gap.
      const p = Math.floor(head / 4);
      if (p > 0) {
        posBase += cur.signed();
        cur.skip(head % 4 >= 2 ? p : 2 * p - 1);
      }
      const q = Math.floor(negHead / 2);
      if (q > 0) {
        negBase += cur.signed();
        cur.skip(negHead % 2 === 1 ? q : 2 * q - 1);
      }
    }
    if (!cur.done) throw new RangeError('trailing bytes after rollup chunk sketches');
    return starts;
  }
}

function readBuckets(cur: Cursor, length: number, dense: boolean, base: number): [number, number][] {
  const out: [number, number][] = [];
  if (length === 0) return out;
  let index = base + cur.signed();
  for (let j = 0; j < length; j++, index++) {
    if (dense) {
      const count = cur.varint();
      if (count > 0) out.push([index, count]);
    } else {
      if (j > 0) index += cur.varint();
      out.push([index, cur.varint() + 1]);
    }
  }
  return out;
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
