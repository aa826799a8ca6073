/**
 * PromQL function implementations, following Prometheus 2.42's promql/functions.go
 * (the version the differential tests compare against) to the floating-point operation
 * where it matters: extrapolatedRate, linearRegression with Kahan sums, the Kahan mean of
 * avg_over_time, histogram_quantile's bucket repair.
 */
import { LabelSet } from './labelset.js';
import { frexp, kahanSumInc, parseGoFloat, quantile } from './values.js';
import type { RangeSeries, Sample } from './values.js';

/** What a range function knows about the window it reads. */
export interface RangeContext {
  /** Window start and end (ms): the evaluation time minus offset, and that minus the range. */
  readonly rangeStartMs: number;
  readonly rangeEndMs: number;
  readonly rangeMs: number;
  /** Where predict_linear anchors its regression (the evaluation time, as Prometheus 2). */
  readonly interceptMs: number;
  /** The scalar parameter of predict_linear / quantile_over_time, the smoothing factor of holt_winters. */
  readonly param: number;
  /** holt_winters' trend factor. */
  readonly param2: number;
}

/** A function from one range-vector series window to one value, or undefined for no output. */
export type RangeFunction = (s: RangeSeries, ctx: RangeContext) => number | undefined;

function extrapolatedRate(s: RangeSeries, ctx: RangeContext, isCounter: boolean, isRate: boolean): number | undefined {
  const { ts, vs, from, to } = s;
  const n = to - from;
  if (n < 2) return undefined;
  const firstT = ts[from] ?? 0;
  const lastT = ts[to - 1] ?? 0;
  const firstV = vs[from] ?? 0;
  let result = (vs[to - 1] ?? 0) - firstV;
  // Without a reset in the window the scan below adds nothing: skip it when we know.
  const resets = s.resets;
  if (isCounter && (resets === undefined || (resets[to - 1] ?? 0) !== (resets[from] ?? 0))) {
    let last = 0;
    for (let i = from; i < to; i++) {
      const v = vs[i] ?? 0;
      if (v < last) result += last;
      last = v;
    }
  }
  let durationToStart = (firstT - ctx.rangeStartMs) / 1000;
  const durationToEnd = (ctx.rangeEndMs - lastT) / 1000;
  const sampledInterval = (lastT - firstT) / 1000;
  const averageDurationBetweenSamples = sampledInterval / (n - 1);
  if (isCounter && result > 0 && firstV >= 0) {
    // A counter cannot go below zero: do not extrapolate further back than its zero point.
    const durationToZero = sampledInterval * (firstV / result);
    if (durationToZero < durationToStart) durationToStart = durationToZero;
  }
  const threshold = averageDurationBetweenSamples * 1.1;
  let extrapolateToInterval = sampledInterval;
  extrapolateToInterval += durationToStart < threshold ? durationToStart : averageDurationBetweenSamples / 2;
  extrapolateToInterval += durationToEnd < threshold ? durationToEnd : averageDurationBetweenSamples / 2;
  // Same operation order as Prometheus, so results agree to the last bit.
  let factor = extrapolateToInterval / sampledInterval;
  if (isRate) factor /= ctx.rangeMs / 1000;
  return result * factor;
}

function instantValue(s: RangeSeries, isRate: boolean): number | undefined {
  const { ts, vs, to } = s;
  if (to - s.from < 2) return undefined;
  const lastV = vs[to - 1] ?? 0;
  const prevV = vs[to - 2] ?? 0;
  let result = isRate && lastV < prevV ? lastV : lastV - prevV;
  const interval = (ts[to - 1] ?? 0) - (ts[to - 2] ?? 0);
  if (interval === 0) return undefined;
  if (isRate) result /= interval / 1000;
  return result;
}

/** Least-squares fit with Kahan sums, as Prometheus' `linearRegression`. */
function linearRegression(s: RangeSeries, interceptMs: number): [slope: number, intercept: number] {
  const { ts, vs, from, to } = s;
  let n = 0;
  let sumX = 0;
  let cX = 0;
  let sumY = 0;
  let cY = 0;
  let sumXY = 0;
  let cXY = 0;
  let sumX2 = 0;
  let cX2 = 0;
  const initY = vs[from] ?? 0;
  let constY = true;
  for (let i = from; i < to; i++) {
    const v = vs[i] ?? 0;
    if (constY && i > from && v !== initY) constY = false;
    n += 1;
    const x = ((ts[i] ?? 0) - interceptMs) / 1e3;
    [sumX, cX] = kahanSumInc(x, sumX, cX);
    [sumY, cY] = kahanSumInc(v, sumY, cY);
    [sumXY, cXY] = kahanSumInc(x * v, sumXY, cXY);
    [sumX2, cX2] = kahanSumInc(x * x, sumX2, cX2);
  }
  if (constY) {
    if (!Number.isFinite(initY) && !Number.isNaN(initY)) return [NaN, NaN];
    return [0, initY];
  }
  sumX += cX;
  sumY += cY;
  sumXY += cXY;
  sumX2 += cX2;
  const covXY = sumXY - (sumX * sumY) / n;
  const varX = sumX2 - (sumX * sumX) / n;
  const slope = covXY / varX;
  const intercept = sumY / n - (slope * sumX) / n;
  return [slope, intercept];
}

function avgOverTime(s: RangeSeries): number {
  let mean = 0;
  let count = 0;
  let c = 0;
  for (let i = s.from; i < s.to; i++) {
    const v = s.vs[i] ?? 0;
    count++;
    if (!Number.isFinite(mean) && !Number.isNaN(mean)) {
      // An infinite mean stays as it is unless a NaN or an opposite infinity arrives;
      // the incremental formula would turn Inf - Inf into NaN.
      const vInf = !Number.isFinite(v) && !Number.isNaN(v);
      if (vInf && mean > 0 === v > 0) continue;
      if (!vInf && !Number.isNaN(v)) continue;
    }
    [mean, c] = kahanSumInc(v / count - mean / count, mean, c);
  }
  if (!Number.isFinite(mean) && !Number.isNaN(mean)) return mean;
  return mean + c;
}

function variance(s: RangeSeries): number {
  let count = 0;
  let mean = 0;
  let cMean = 0;
  let aux = 0;
  let cAux = 0;
  for (let i = s.from; i < s.to; i++) {
    const v = s.vs[i] ?? 0;
    count++;
    const delta = v - (mean + cMean);
    [mean, cMean] = kahanSumInc(delta / count, mean, cMean);
    [aux, cAux] = kahanSumInc(delta * (v - (mean + cMean)), aux, cAux);
  }
  return (aux + cAux) / count;
}

/** The range-vector functions, by name. */
export const RANGE_FUNCTIONS: ReadonlyMap<string, RangeFunction> = new Map<string, RangeFunction>([
  ['rate', (s, ctx) => extrapolatedRate(s, ctx, true, true)],
  ['increase', (s, ctx) => extrapolatedRate(s, ctx, true, false)],
  ['delta', (s, ctx) => extrapolatedRate(s, ctx, false, false)],
  ['irate', (s) => instantValue(s, true)],
  ['idelta', (s) => instantValue(s, false)],
  [
    'deriv',
    (s) => {
      if (s.to - s.from < 2) return undefined;
      return linearRegression(s, s.ts[s.from] ?? 0)[0];
    },
  ],
  [
    'predict_linear',
    (s, ctx) => {
      if (s.to - s.from < 2) return undefined;
      const [slope, intercept] = linearRegression(s, ctx.interceptMs);
      return slope * ctx.param + intercept;
    },
  ],
  [
    'resets',
    (s) => {
      let resets = 0;
      let prev = s.vs[s.from] ?? 0;
      for (let i = s.from + 1; i < s.to; i++) {
        const cur = s.vs[i] ?? 0;
        if (cur < prev) resets++;
        prev = cur;
      }
      return resets;
    },
  ],
  [
    'changes',
    (s) => {
      let changes = 0;
      let prev = s.vs[s.from] ?? 0;
      for (let i = s.from + 1; i < s.to; i++) {
        const cur = s.vs[i] ?? 0;
        if (!(cur === prev || (Number.isNaN(cur) && Number.isNaN(prev)))) changes++;
        prev = cur;
      }
      return changes;
    },
  ],
  ['avg_over_time', avgOverTime],
  [
    'min_over_time',
    (s) => {
      let min = s.vs[s.from] ?? 0;
      for (let i = s.from; i < s.to; i++) {
        const v = s.vs[i] ?? 0;
        if (v < min || Number.isNaN(min)) min = v;
      }
      return min;
    },
  ],
  [
    'max_over_time',
    (s) => {
      let max = s.vs[s.from] ?? 0;
      for (let i = s.from; i < s.to; i++) {
        const v = s.vs[i] ?? 0;
        if (v > max || Number.isNaN(max)) max = v;
      }
      return max;
    },
  ],
  [
    'sum_over_time',
    (s) => {
      let sum = 0;
      let c = 0;
      for (let i = s.from; i < s.to; i++) [sum, c] = kahanSumInc(s.vs[i] ?? 0, sum, c);
      return sum + c;
    },
  ],
  ['count_over_time', (s) => s.to - s.from],
  ['last_over_time', (s) => s.vs[s.to - 1] ?? 0],
  ['present_over_time', () => 1],
  ['stdvar_over_time', variance],
  ['stddev_over_time', (s) => Math.sqrt(variance(s))],
  [
    'quantile_over_time',
    (s, ctx) => {
      const values: number[] = [];
      for (let i = s.from; i < s.to; i++) values.push(s.vs[i] ?? 0);
      return quantile(ctx.param, values);
    },
  ],
  ['double_exponential_smoothing', holtWinters],
]);

/**
 * Go's `math.Log2`: exact for powers of two, else Log(frac)/Ln2 + exp. JavaScript's own
 * log2 rounds differently in the last bit for some inputs.
 */
function goLog2(v: number): number {
  const [frac, exp] = frexp(v);
  if (frac === 0.5) return exp - 1;
  return Math.log(frac) * Math.LOG2E + exp;
}

/** Prometheus 2's `holt_winters` (double exponential smoothing); factors are checked by the caller. */
function holtWinters(s: RangeSeries, ctx: RangeContext): number | undefined {
  const sf = ctx.param;
  const tf = ctx.param2;
  const l = s.to - s.from;
  if (l < 2) return undefined;
  let s0 = 0;
  let s1 = s.vs[s.from] ?? 0;
  let b = (s.vs[s.from + 1] ?? 0) - s1;
  for (let i = 1; i < l; i++) {
    const x = sf * (s.vs[s.from + i] ?? 0);
    // The trend at i-1: the initial slope first, then smoothed.
    if (i - 1 !== 0) b = tf * (s1 - s0) + (1 - tf) * b;
    const y = (1 - sf) * (s1 + b);
    s0 = s1;
    s1 = x + y;
  }
  return s1;
}

/** Go's `math.Signbit`-free sign: NaN stays NaN, ±0 becomes 0. */
function sgn(v: number): number {
  if (v > 0) return 1;
  if (v < 0) return -1;
  return v === 0 ? 0 : v;
}

/** Element-wise functions that map one value to one value and drop `__name__`. */
export const MATH_FUNCTIONS: ReadonlyMap<string, (v: number) => number> = new Map<string, (v: number) => number>([
  ['abs', Math.abs],
  ['ceil', Math.ceil],
  ['floor', Math.floor],
  ['sqrt', Math.sqrt],
  ['exp', Math.exp],
  ['ln', Math.log],
  ['log2', goLog2],
  // Go's math.Log10 is Log(x) * (1/Ln10).
  ['log10', (v) => Math.log(v) * Math.LOG10E],
  ['sgn', sgn],
  ['acos', Math.acos],
  ['acosh', Math.acosh],
  ['asin', Math.asin],
  ['asinh', Math.asinh],
  ['atan', Math.atan],
  ['atanh', Math.atanh],
  ['cos', Math.cos],
  ['cosh', Math.cosh],
  ['sin', Math.sin],
  ['sinh', Math.sinh],
  ['tan', Math.tan],
  ['tanh', Math.tanh],
  ['deg', (v) => (v * 180) / Math.PI],
  ['rad', (v) => (v * Math.PI) / 180],
]);

/** Date functions over a Unix time in seconds, in UTC as Prometheus. */
export const DATE_FUNCTIONS: ReadonlyMap<string, (d: Date) => number> = new Map<string, (d: Date) => number>([
  ['day_of_month', (d) => d.getUTCDate()],
  ['day_of_week', (d) => d.getUTCDay()],
  ['day_of_year', (d) => Math.floor((Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86_400_000) + 1],
  ['days_in_month', (d) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate()],
  ['hour', (d) => d.getUTCHours()],
  ['minute', (d) => d.getUTCMinutes()],
  ['month', (d) => d.getUTCMonth() + 1],
  ['year', (d) => d.getUTCFullYear()],
]);

/** Prometheus' `round`: half up to the nearest multiple of `toNearest`. */
export function roundTo(v: number, toNearest: number): number {
  const inverse = 1 / toNearest;
  return Math.floor(v * inverse + 0.5) / inverse;
}

interface Bucket {
  upperBound: number;
  count: number;
}

/** Prometheus' `bucketQuantile` over classic buckets (coalesced, made monotonic, interpolated). */
export function bucketQuantile(q: number, buckets: Bucket[]): number {
  if (Number.isNaN(q)) return NaN;
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  buckets.sort((a, b) => a.upperBound - b.upperBound);
  const top = buckets[buckets.length - 1];
  if (top === undefined || top.upperBound !== Infinity) return NaN;
  // Coalesce buckets with the same bound (e.g. `le="1"` and `le="1.0"`).
  const merged: Bucket[] = [];
  for (const b of buckets) {
    const last = merged[merged.length - 1];
    if (last !== undefined && last.upperBound === b.upperBound) last.count += b.count;
    else merged.push({ upperBound: b.upperBound, count: b.count });
  }
  // Counts must not decrease with the bound; scrape races can make them, so lift them.
  let max = -Infinity;
  for (const b of merged) {
    if (b.count > max) max = b.count;
    else if (b.count < max) b.count = max;
  }
  if (merged.length < 2) return NaN;
  const observations = merged[merged.length - 1]?.count ?? 0;
  if (observations === 0) return NaN;
  let rank = q * observations;
  let b = 0;
  while (b < merged.length - 1 && (merged[b]?.count ?? 0) < rank) b++;
  if (b === merged.length - 1) return merged[merged.length - 2]?.upperBound ?? NaN;
  const cur = merged[b] ?? { upperBound: NaN, count: NaN };
  if (b === 0 && cur.upperBound <= 0) return cur.upperBound;
  let bucketStart = 0;
  let count = cur.count;
  if (b > 0) {
    const prev = merged[b - 1] ?? { upperBound: NaN, count: NaN };
    bucketStart = prev.upperBound;
    count -= prev.count;
    rank -= prev.count;
  }
  return bucketStart + (cur.upperBound - bucketStart) * (rank / count);
}

/** `histogram_quantile(q, buckets)` for one evaluation step. */
export function histogramQuantile(q: number, samples: readonly Sample[], t: number): Sample[] {
  const groups = new Map<string, { ls: LabelSet; buckets: Bucket[] }>();
  for (const s of samples) {
    const upperBound = parseGoFloat(s.ls.get('le'));
    // No or a malformed `le` label: not a bucket, skipped as in Prometheus.
    if (upperBound === undefined) continue;
    const ls = s.ls.withoutName().with('le', '');
    let g = groups.get(ls.key);
    if (g === undefined) {
      g = { ls, buckets: [] };
      groups.set(ls.key, g);
    }
    g.buckets.push({ upperBound, count: s.v });
  }
  const out: Sample[] = [];
  for (const g of groups.values()) out.push({ ls: g.ls, v: bucketQuantile(q, g.buckets), t });
  return out;
}

/**
 * Expands a Go regexp replacement template (`$1`, `${1}`, `$name`, `${name}`, `$$`)
 * against a match, as `regexp.Expand` does: unknown groups expand to ''.
 */
export function expandTemplate(template: string, m: RegExpExecArray): string {
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c !== '$' || i === template.length - 1) {
      out += c;
      continue;
    }
    const next = template[i + 1];
    if (next === '$') {
      out += '$';
      i++;
      continue;
    }
    let name: string | undefined;
    let end = i + 1;
    if (next === '{') {
      const close = template.indexOf('}', i + 2);
      const inner = close === -1 ? '' : template.slice(i + 2, close);
      if (close !== -1 && /^[A-Za-z0-9_]+$/.test(inner)) {
        name = inner;
        end = close + 1;
      }
    } else {
      const mm = /^[A-Za-z0-9_]+/.exec(template.slice(i + 1));
      if (mm !== null) {
        name = mm[0];
        end = i + 1 + mm[0].length;
      }
    }
    if (name === undefined) {
      // Go keeps the `$` of a malformed reference as plain text.
      out += '$';
      continue;
    }
    if (/^\d+$/.test(name)) out += m[Number(name)] ?? '';
    else out += m.groups?.[name] ?? '';
    i = end - 1;
  }
  return out;
}

/** Labels `absent()` / `absent_over_time()` give their one sample: the selector's `=` matchers, each used once. */
export function absentLabels(matchers: readonly { op: string; name: string; value: string }[]): LabelSet {
  const values = new Map<string, string>();
  const dropped = new Set<string>();
  for (const m of matchers) {
    if (m.name === '__name__') continue;
    if (m.op === '=' && !values.has(m.name) && !dropped.has(m.name)) values.set(m.name, m.value);
    else {
      values.delete(m.name);
      dropped.add(m.name);
    }
  }
  return LabelSet.from([...values].map(([name, value]) => ({ name, value })));
}
