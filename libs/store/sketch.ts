/**
 * A mergeable quantile sketch in the style of DDSketch (Masson, Rim, Lee: "DDSketch: a fast
 * and fully-mergeable quantile sketch with relative-error guarantees", VLDB 2019), written
 * here for the rollup tiers.
 *
 * How it works: a value `v > 0` goes to bucket `i = ceil(log_γ(v))` with
 * `γ = (1 + α) / (1 − α)`; the bucket covers `(γ^(i−1), γ^i]` and is represented by
 * `2γ^i / (γ + 1)`, which is within relative error α of every value in it. Negative values
 * use a mirrored set of buckets on `−v`; values with `|v|` below {@link MIN_INDEXABLE} are
 * counted as zero. Merging two sketches adds their bucket counts, so a 30-day quantile from
 * hourly sketches is exactly the sketch of all 30 days of samples.
 *
 * Guarantee (the documented error): for `q ∈ [0, 1]` and `n` values, `quantile(q)` returns
 * `x̂` with `|x̂ − x| ≤ α·|x|`, where `x` is the value of rank `⌊q·(n − 1)⌋` (0-based) in the
 * sorted values. Prometheus' `quantile_over_time` interpolates between ranks `⌊q(n−1)⌋`
 * and `⌈q(n−1)⌉`, so against it the estimate is within α of the lower neighbour; on dense
 * data (thousands of samples per answer) the two neighbours are nearly equal.
 * Non-finite values (NaN, ±Inf) are not sketched: they have no bucket; the rollup's
 * count still counts them, so callers can tell.
 *
 * The default α is 1% ({@link DEFAULT_RELATIVE_ACCURACY}), which keeps the bucket count
 * near 2,800 for values spanning 1e-9…1e9, and far fewer for real series.
 */

/** Relative accuracy α used by the rollup tiers: quantiles within 1% of the exact value. */
export const DEFAULT_RELATIVE_ACCURACY = 0.01;

/** Values whose magnitude is below this are counted in the zero bucket. */
export const MIN_INDEXABLE = 1e-300;

/** Encoding version written as the first byte of every encoded sketch. */
const FORMAT_VERSION = 1;

/** A sketch's counts, as {@link QuantileSketch.buckets} gives them. */
export interface SketchBuckets {
  /** Values counted as zero. */
  readonly zeros: number;
  /** (bucket index, count) of positive values, ascending by index. */
  readonly positive: readonly (readonly [number, number])[];
  /** (bucket index of `−v`, count) of negative values, ascending by index. */
  readonly negative: readonly (readonly [number, number])[];
}

/** A DDSketch-style quantile sketch with relative accuracy α. */
export class QuantileSketch {
  /** γ = (1 + α) / (1 − α). */
  private readonly gamma: number;
  private readonly logGamma: number;
  /** Bucket index → count, for positive values. */
  private readonly positive = new Map<number, number>();
  /** Bucket index of `−v` → count, for negative values. */
  private readonly negative = new Map<number, number>();
  private zeros = 0;
  private total = 0;

  constructor(
    /** Relative accuracy α, in (0, 1). */
    readonly alpha: number = DEFAULT_RELATIVE_ACCURACY,
  ) {
    if (!(alpha > 0 && alpha < 1)) throw new RangeError(`sketch relative accuracy must be in (0, 1), got ${alpha}`);
    this.gamma = (1 + alpha) / (1 - alpha);
    this.logGamma = Math.log(this.gamma);
  }

  /** Number of values sketched (non-finite values are not counted). */
  get count(): number {
    return this.total;
  }

  /** Adds `value` `times` times; NaN and ±Inf are ignored (see the module comment). */
  add(value: number, times = 1): void {
    if (!Number.isFinite(value) || times <= 0) return;
    if (Math.abs(value) < MIN_INDEXABLE) this.zeros += times;
    else if (value > 0) bump(this.positive, this.index(value), times);
    else bump(this.negative, this.index(-value), times);
    this.total += times;
  }

  /** Adds every bucket of `other` into this sketch. Both must use the same α. */
  merge(other: QuantileSketch): void {
    if (other.alpha !== this.alpha) {
      throw new RangeError(`cannot merge sketches with relative accuracy ${other.alpha} and ${this.alpha}`);
    }
    for (const [i, c] of other.positive) bump(this.positive, i, c);
    for (const [i, c] of other.negative) bump(this.negative, i, c);
    this.zeros += other.zeros;
    this.total += other.total;
  }

  /**
   * The estimated `q`-quantile (see the module comment for the error bound), or NaN when
   * the sketch is empty or `q` lies outside [0, 1].
   */
  quantile(q: number): number {
    if (this.total === 0 || !(q >= 0 && q <= 1)) return NaN;
    const rank = Math.floor(q * (this.total - 1));
    let seen = 0;
    // Most negative first: larger indices of −v are more negative values.
    for (const i of [...this.negative.keys()].sort((a, b) => b - a)) {
      seen += this.negative.get(i) ?? 0;
      if (seen > rank) return -this.representative(i);
    }
    seen += this.zeros;
    if (seen > rank) return 0;
    for (const i of [...this.positive.keys()].sort((a, b) => a - b)) {
      seen += this.positive.get(i) ?? 0;
      if (seen > rank) return this.representative(i);
    }
    // Unreachable while counts are consistent; the largest bucket is the safe answer.
    return this.representative(Math.max(...this.positive.keys()));
  }

  /**
   * The zero count and each sign's buckets as (index, count) pairs in ascending index
   * order (for negatives, the index of `−v`): what a codec that stores many sketches
   * together needs to write them in its own, denser layout (rollup-chunk.ts).
   */
  buckets(): SketchBuckets {
    return { zeros: this.zeros, positive: sortedPairs(this.positive), negative: sortedPairs(this.negative) };
  }

  /**
   * The sketch with relative accuracy `alpha` holding exactly `buckets` (as
   * {@link QuantileSketch.buckets} returns them). Throws `RangeError` unless the zero count
   * is a non-negative integer, every count a positive integer and each sign's indices
   * integers in strictly ascending order: a sketch built any other way could not have
   * come from `add` and `merge`.
   */
  static fromBuckets(alpha: number, buckets: SketchBuckets): QuantileSketch {
    const sketch = new QuantileSketch(alpha);
    if (!(Number.isSafeInteger(buckets.zeros) && buckets.zeros >= 0)) {
      throw new RangeError(`sketch zero count must be a non-negative integer, got ${buckets.zeros}`);
    }
    sketch.zeros = buckets.zeros;
    sketch.total = buckets.zeros + fill(sketch.positive, buckets.positive) + fill(sketch.negative, buckets.negative);
    return sketch;
  }

  /**
   * Compact binary form: version byte, α in millionths, zero count, then the positive and
   * the negative buckets, each as a bucket count followed by (index delta, count) pairs in
   * ascending index order. Every integer is a LEB128 varint (indices zig-zag encoded), so
   * a typical 5-minute window of a noisy gauge takes a few dozen bytes.
   */
  encode(): Uint8Array {
    const out: number[] = [FORMAT_VERSION];
    writeVarint(out, Math.round(this.alpha * 1e6));
    writeVarint(out, this.zeros);
    for (const buckets of [this.positive, this.negative]) {
      const keys = [...buckets.keys()].sort((a, b) => a - b);
      writeVarint(out, keys.length);
      let prev = 0;
      for (const k of keys) {
        writeVarint(out, zigzag(k - prev));
        writeVarint(out, buckets.get(k) ?? 0);
        prev = k;
      }
    }
    return Uint8Array.from(out);
  }

  /** Inverse of {@link QuantileSketch.encode}. Throws `RangeError` on malformed input. */
  static decode(bytes: Uint8Array): QuantileSketch {
    const r = { bytes, pos: 0 };
    const version = bytes[0];
    if (version !== FORMAT_VERSION) throw new RangeError(`unknown sketch format version ${String(version)}`);
    r.pos = 1;
    const sketch = new QuantileSketch(readVarint(r) / 1e6);
    sketch.zeros = readVarint(r);
    sketch.total = sketch.zeros;
    for (const buckets of [sketch.positive, sketch.negative]) {
      const n = readVarint(r);
      let prev = 0;
      for (let j = 0; j < n; j++) {
        prev += unzigzag(readVarint(r));
        const c = readVarint(r);
        buckets.set(prev, c);
        sketch.total += c;
      }
    }
    if (r.pos !== bytes.length) throw new RangeError('trailing bytes after sketch');
    return sketch;
  }

  private index(magnitude: number): number {
    return Math.ceil(Math.log(magnitude) / this.logGamma);
  }

  /** The value standing for bucket `i`: within α of everything the bucket holds. */
  private representative(i: number): number {
    return (2 * Math.pow(this.gamma, i)) / (this.gamma + 1);
  }
}

/** Fills `into` from pairs checked as {@link QuantileSketch.fromBuckets} says; returns their total. */
function fill(into: Map<number, number>, pairs: readonly (readonly [number, number])[]): number {
  let total = 0;
  let prev = -Infinity;
  for (const [i, c] of pairs) {
    if (!(Number.isSafeInteger(i) && i > prev)) {
      throw new RangeError(`sketch bucket indices must be ascending integers, got ${i} after ${prev}`);
    }
    if (!(Number.isSafeInteger(c) && c > 0)) throw new RangeError(`sketch bucket counts must be positive integers, got ${c}`);
    into.set(i, c);
    total += c;
    prev = i;
  }
  return total;
}

function sortedPairs(m: Map<number, number>): [number, number][] {
  return [...m].sort((a, b) => a[0] - b[0]);
}

function bump(m: Map<number, number>, key: number, by: number): void {
  m.set(key, (m.get(key) ?? 0) + by);
}

function zigzag(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

function unzigzag(n: number): number {
  return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
}

/** Unsigned LEB128 for non-negative safe integers (arithmetic, so values past 2^31 work). */
function writeVarint(out: number[], n: number): void {
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

function readVarint(r: { bytes: Uint8Array; pos: number }): number {
  let result = 0;
  let scale = 1;
  for (;;) {
    if (r.pos >= r.bytes.length) throw new RangeError('truncated sketch');
    const b = r.bytes[r.pos++];
    result += (b & 0x7f) * scale;
    if (b < 0x80) return result;
    scale *= 0x80;
    if (scale > 2 ** 56) throw new RangeError('sketch varint too long');
  }
}
