/**
 * The values the evaluator passes between nodes for one evaluation time, and the small
 * numeric helpers Prometheus' functions share. Shapes are chosen so a step allocates
 * little: range windows are index ranges into the fetched sample arrays.
 */
import type { LabelSet } from './labelset.js';

/** One instant-vector element. `t` is the sample's own time (only `timestamp()` reads it). */
export interface Sample {
  readonly ls: LabelSet;
  readonly v: number;
  readonly t: number;
}

/** One series of a range vector: the samples `from` (inclusive) to `to` (exclusive) of `ts`/`vs`. */
export interface RangeSeries {
  readonly ls: LabelSet;
  readonly ts: ArrayLike<number>;
  readonly vs: ArrayLike<number>;
  readonly from: number;
  readonly to: number;
  /**
   * Optional {@link counterResets} of the whole `vs`: lets counter functions skip their
   * per-sample reset scan for the (usual) windows without a reset.
   */
  readonly resets?: Int32Array;
}

/**
 * Prefix counts of counter resets: element i is how many j in [1, i] have
 * `vs[j] < vs[j - 1]`, so a window [from, to) holds `r[to - 1] - r[from]` resets.
 */
export function counterResets(vs: ArrayLike<number>): Int32Array {
  const r = new Int32Array(vs.length);
  let n = 0;
  for (let i = 1; i < vs.length; i++) {
    if ((vs[i] ?? 0) < (vs[i - 1] ?? 0)) n++;
    r[i] = n;
  }
  return r;
}

/** A value at one evaluation time. */
export type Value =
  | { readonly type: 'scalar'; readonly v: number }
  | { readonly type: 'string'; readonly s: string }
  | { readonly type: 'vector'; readonly samples: readonly Sample[] }
  | { readonly type: 'matrix'; readonly series: readonly RangeSeries[] };

/** Neumaier-compensated addition, exactly as Prometheus' `kahanSumInc`. */
export function kahanSumInc(inc: number, sum: number, c: number): [number, number] {
  const t = sum + inc;
  if (Math.abs(sum) >= Math.abs(inc)) c += sum - t + inc;
  else c += inc - t + sum;
  return [t, c];
}

const frexpView = new DataView(new ArrayBuffer(8));

/** Go's `math.Frexp`: `v = frac × 2^exp` with |frac| in [0.5, 1). */
export function frexp(v: number): [frac: number, exp: number] {
  if (v === 0 || !Number.isFinite(v)) return [v, 0];
  let x = v;
  let exp = 0;
  if (Math.abs(x) < 2.2250738585072014e-308) {
    x *= 2 ** 52;
    exp = -52;
  }
  frexpView.setFloat64(0, x);
  const hi = frexpView.getUint32(0);
  exp += ((hi >>> 20) & 0x7ff) - 1022;
  frexpView.setUint32(0, (hi & ~(0x7ff << 20)) | (1022 << 20));
  return [frexpView.getFloat64(0), exp];
}

/** Go's `math.Ldexp`: `frac × 2^exp`, scaled in steps so intermediate powers stay finite. */
function ldexp(frac: number, exp: number): number {
  let v = frac;
  let e = exp;
  while (e > 1023) {
    v *= 2 ** 1023;
    e -= 1023;
  }
  while (e < -1022) {
    v *= 2 ** -1022;
    e += 1022;
  }
  return v * 2 ** e;
}

function isOddInt(y: number): boolean {
  return Number.isInteger(y) && Math.abs(y) < 2 ** 53 && Math.abs(y % 2) === 1;
}

/**
 * Go's `math.Pow`, step for step (special cases, then exp(yf·ln x) times repeated
 * squaring), because `**` differs from it in special cases (1^NaN is 1 in Go) and in
 * the last bit for many inputs.
 */
export function goPow(x: number, y: number): number {
  if (y === 0 || x === 1) return 1;
  if (y === 1) return x;
  if (Number.isNaN(x) || Number.isNaN(y)) return NaN;
  if (x === 0) {
    const negZero = Object.is(x, -0);
    if (y < 0) return negZero && isOddInt(y) ? -Infinity : Infinity;
    return negZero && isOddInt(y) ? x : 0;
  }
  if (!Number.isFinite(y)) {
    if (x === -1) return 1;
    return Math.abs(x) < 1 === (y > 0) ? 0 : Infinity;
  }
  if (!Number.isFinite(x)) {
    if (x < 0) return goPow(1 / x, -y);
    return y < 0 ? 0 : Infinity;
  }
  if (y === 0.5) return Math.sqrt(x);
  if (y === -0.5) return 1 / Math.sqrt(x);
  const ay = Math.abs(y);
  let yi = Math.trunc(ay);
  let yf = ay - yi;
  if (yf !== 0 && x < 0) return NaN;
  if (yi >= 2 ** 63) {
    if (x === -1) return 1;
    return Math.abs(x) < 1 === y > 0 ? 0 : Infinity;
  }
  let a1 = 1;
  let ae = 0;
  if (yf !== 0) {
    if (yf > 0.5) {
      yf--;
      yi++;
    }
    a1 = Math.exp(yf * Math.log(x));
  }
  let [x1, xe] = frexp(x);
  for (let i = yi; i !== 0; i = Math.floor(i / 2)) {
    if (xe < -(1 << 12) || 1 << 12 < xe) {
      ae += xe;
      break;
    }
    if (i % 2 === 1) {
      a1 *= x1;
      ae += xe;
    }
    x1 *= x1;
    xe *= 2;
    if (x1 < 0.5) {
      x1 += x1;
      xe--;
    }
  }
  if (y < 0) {
    a1 = 1 / a1;
    ae = -ae;
  }
  return ldexp(a1, ae);
}

/** Go's `math.Mod`: `%` in JavaScript already has its semantics (result takes the dividend's sign). */
export function goMod(x: number, y: number): number {
  return x % y;
}

/**
 * Prometheus' `quantile` over sorted-in-place values: linear interpolation between the
 * closest ranks; -Inf below 0, +Inf above 1, NaN for no values.
 */
export function quantile(q: number, values: number[]): number {
  if (values.length === 0 || Number.isNaN(q)) return NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  values.sort((a, b) => a - b);
  const n = values.length;
  const rank = q * (n - 1);
  const lower = Math.max(0, Math.floor(rank));
  const upper = Math.min(n - 1, lower + 1);
  const weight = rank - Math.floor(rank);
  return (values[lower] ?? NaN) * (1 - weight) + (values[upper] ?? NaN) * weight;
}

/**
 * Go's `strconv.FormatFloat(v, 'f', -1, 64)`: the shortest digits that round-trip, never
 * in exponent form (count_values uses it for its label values).
 */
export function formatFloatF(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  const s = String(v);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (m === null) return s;
  const [, sign = '', int = '', frac = '', expText = '0'] = m;
  const digits = int + frac;
  const exp = Number(expText);
  const point = 1 + exp;
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return sign + digits + '0'.repeat(point - digits.length);
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** Go's `strconv.ParseFloat` for the forms bucket bounds use (`+Inf`, `1e3`, `0.5`; Go's hex floats are not accepted). */
export function parseGoFloat(s: string): number | undefined {
  const lower = s.toLowerCase();
  if (/^[+-]?(?:inf|infinity)$/.test(lower)) return lower.startsWith('-') ? -Infinity : Infinity;
  if (/^[+-]?nan$/.test(lower)) return NaN;
  if (/^[+-]?(?:\d[\d_]*\.?\d*|\.\d+)(?:e[+-]?\d+)?$/.test(lower) && !lower.includes('_')) return Number(lower);
  return undefined;
}

/** Index of the first element of sorted `a[lo, hi)` that is `>= x`. */
export function lowerBound(a: ArrayLike<number>, x: number, lo = 0, hi = a.length): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] ?? 0) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first element of sorted `a[lo, hi)` that is `> x`. */
export function upperBound(a: ArrayLike<number>, x: number, lo = 0, hi = a.length): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] ?? 0) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
