/**
 * Rollup tiers and retention: the policy (which tiers exist, how long each is kept), the
 * per-window aggregates every adapter stores, the pure functions that compute and merge
 * them, and `pickTier`, which tells the query engine which tier can answer a query.
 *
 * How the engine uses rollups (libs/promql/engine.ts `planRollups`/`rollupColumns`, fed
 * by the aggregation service's tenant view): for a range query with step `s` reaching back
 * to `from`, `pickTier(policy, s, now − from)` names the coarsest tier whose windows are no
 * wider than the step (so no step ever falls inside one window) and that still holds data
 * that far back. A tier of 0 means raw samples (`select`). When the range `R`, the step and
 * every step time `t` (less the offset) are multiples of the tier's resolution, the range
 * `[t − R, t]` is read as the windows starting in `[t − R, t)`:
 * - `min/max/count_over_time` are the min/max/sum-of-counts of the windows (exact);
 * - `sum_over_time` is Σsum and `avg_over_time` Σsum / Σcount (exact up to rounding);
 * - `last_over_time` is the `last` of the newest window; `present_over_time` is 1;
 * - `quantile_over_time(q, …)` merges the windows' sketches and asks `quantile(q)`, within
 *   the sketch's relative accuracy α (see sketch.ts) of the exact answer.
 * The one difference from raw evaluation is a sample stamped exactly `t`, which belongs
 * to the next window and is left out. `rate`/`increase` are not served from tiers: the
 * windows' `last` values miss resets inside a window, so they read raw samples.
 * Rollups lag real time: the compactor rolls a window up once it has ended, so steps whose
 * windows end after `rollupsCompleteBefore(tenant)` (the oldest window still marked dirty)
 * read raw samples instead.
 */
import type { Logger } from 'pino';
import type { Label, Matcher } from '../model/index.js';
import { StoreClosedError, StoreInputError } from './errors.js';
import type { MetricStore, SelectLimits } from './port.js';
import { DEFAULT_RELATIVE_ACCURACY, QuantileSketch } from './sketch.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** One rollup tier: windows of `resolutionMs`, kept for `retentionMs`. */
export interface RollupTier {
  /** Window width, ms. */
  readonly resolutionMs: number;
  /** How long a window is kept after it ends, ms. */
  readonly retentionMs: number;
}

/** How long raw samples are kept, and which rollup tiers exist (finest first). */
export interface RetentionPolicy {
  /** How long raw samples are kept, ms. */
  readonly rawRetentionMs: number;
  /** Rollup tiers, finest first. */
  readonly tiers: readonly RollupTier[];
}

/** The defaults a user would expect: raw for 15 days, 5-minute for 90 days, 1-hour for 2 years. */
export const DEFAULT_RETENTION: RetentionPolicy = {
  rawRetentionMs: 15 * DAY,
  tiers: [
    { resolutionMs: 5 * MINUTE, retentionMs: 90 * DAY },
    { resolutionMs: HOUR, retentionMs: 2 * 365 * DAY },
  ],
};

/** The tier spec string of {@link DEFAULT_RETENTION}, as the config accepts it. */
export const DEFAULT_TIER_SPEC = '5m:90d,1h:2y';

const UNITS: Record<string, number> = { ms: 1, s: SECOND, m: MINUTE, h: HOUR, d: DAY, w: 7 * DAY, y: 365 * DAY };

/** Parses a Prometheus-style duration (`15d`, `5m`, `1h30m`, `2y`) into milliseconds. */
export function parseDuration(text: string, field: string): number {
  const re = /(\d+)(ms|s|m|h|d|w|y)/y;
  let total = 0;
  let matched = 0;
  while (re.lastIndex < text.length) {
    const m = re.exec(text);
    if (m === null) break;
    total += Number(m[1]) * UNITS[m[2]];
    matched = re.lastIndex;
  }
  if (text === '' || matched !== text.length) {
    throw new StoreInputError(field, `${JSON.stringify(text)} is not a duration like 5m, 1h or 90d`);
  }
  return total;
}

/**
 * Parses a tier spec, `<resolution>:<retention>` pairs separated by commas
 * (`5m:90d,1h:2y`; empty for no rollups), and checks it with {@link validateRetention}.
 */
export function parseTierSpec(spec: string, rawRetentionMs: number, field = 'store.rollupTiers'): RetentionPolicy {
  const tiers = spec.trim() === ''
    ? []
    : spec.split(',').map((part, i) => {
        const [res, ret, ...rest] = part.trim().split(':');
        if (ret === undefined || rest.length > 0) {
          throw new StoreInputError(`${field}[${i}]`, `${JSON.stringify(part)} is not <resolution>:<retention>`);
        }
        return { resolutionMs: parseDuration(res, `${field}[${i}].resolution`), retentionMs: parseDuration(ret, `${field}[${i}].retention`) };
      });
  const policy = { rawRetentionMs, tiers };
  validateRetention(policy, field);
  return policy;
}

/**
 * Checks a policy: positive retentions; tiers strictly coarser one after another, each
 * resolution a whole multiple of the previous one (so a coarse window is exactly a run of
 * finer windows and can be merged from them), and each kept at least as long as the
 * previous one and longer than its own window.
 */
export function validateRetention(policy: RetentionPolicy, field = 'store.rollupTiers'): void {
  if (!(Number.isSafeInteger(policy.rawRetentionMs) && policy.rawRetentionMs > 0)) {
    throw new StoreInputError('store.rawRetentionMs', 'must be a positive integer');
  }
  let prev: RollupTier | undefined;
  policy.tiers.forEach((t, i) => {
    const f = `${field}[${i}]`;
    if (!(Number.isSafeInteger(t.resolutionMs) && t.resolutionMs >= SECOND)) {
      throw new StoreInputError(`${f}.resolution`, 'must be at least 1s');
    }
    if (!(t.retentionMs > t.resolutionMs)) throw new StoreInputError(`${f}.retention`, 'must be longer than the resolution');
    if (prev !== undefined) {
      if (t.resolutionMs <= prev.resolutionMs || t.resolutionMs % prev.resolutionMs !== 0) {
        throw new StoreInputError(`${f}.resolution`, `must be a larger multiple of the previous tier's ${prev.resolutionMs} ms`);
      }
      if (t.retentionMs < prev.retentionMs) {
        throw new StoreInputError(`${f}.retention`, `must be at least the previous tier's ${prev.retentionMs} ms`);
      }
    }
    prev = t;
  });
}

/**
 * The tier a query should read: the coarsest tier whose resolution is at most `stepMs`
 * and whose retention covers `rangeMs` (how far back from now the query reaches), so the
 * answer has every step and the fewest points. When no tier honouring the step covers the
 * range, the longest-kept such tier is chosen (it holds the most of it). Returns the
 * tier's resolution in ms, or 0 for raw samples.
 */
export function pickTier(policy: RetentionPolicy, stepMs: number, rangeMs: number): number {
  const honouring = [{ resolutionMs: 0, retentionMs: policy.rawRetentionMs }, ...policy.tiers].filter(
    (t) => t.resolutionMs <= stepMs,
  );
  const covering = honouring.filter((t) => t.retentionMs >= rangeMs);
  if (covering.length > 0) return covering[covering.length - 1].resolutionMs;
  let best = honouring[0];
  for (const t of honouring) if (t.retentionMs > best.retentionMs) best = t;
  return best.resolutionMs;
}

/** Rejects a `selectRollup` resolution that is not one of the policy's tiers. */
export function checkTier(retention: RetentionPolicy, resolutionMs: number): void {
  if (!retention.tiers.some((t) => t.resolutionMs === resolutionMs)) {
    const have = retention.tiers.map((t) => t.resolutionMs).join(', ') || 'none';
    throw new StoreInputError('resolutionMs', `no rollup tier of ${resolutionMs} ms (tiers: ${have})`);
  }
}

/**
 * Starts an adapter's periodic compaction and retention timers (an interval of 0 or less
 * disables its job); failures are logged, not thrown. The timers never keep a process alive.
 */
export function startRollupJobs(
  store: Pick<RollupStore, 'compact' | 'applyRetention'>,
  log: Logger,
  compactionIntervalMs: number,
  retentionIntervalMs: number,
): NodeJS.Timeout[] {
  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, name: string, job: () => Promise<unknown>) => {
    if (ms <= 0) return;
    const timer = setInterval(() => {
      job().catch((err: unknown) => {
        if (!(err instanceof StoreClosedError)) log.error({ err }, `${name} failed; retrying next interval`);
      });
    }, ms);
    // The store must never keep a process alive on its own.
    timer.unref();
    timers.push(timer);
  };
  every(compactionIntervalMs, 'rollup compaction', () => store.compact());
  every(retentionIntervalMs, 'retention', () => store.applyRetention());
  return timers;
}

/** Start of the window of width `resolutionMs` holding `ts` (floor, also for negative times). */
export function windowStart(ts: number, resolutionMs: number): number {
  return Math.floor(ts / resolutionMs) * resolutionMs;
}

/** Aggregates of one series over one window `[startMs, startMs + resolution)`. */
export interface RollupWindow {
  readonly startMs: number;
  /** Smallest non-NaN value (NaN when every value was NaN), as `min_over_time`. */
  readonly min: number;
  /** Largest non-NaN value (NaN when every value was NaN), as `max_over_time`. */
  readonly max: number;
  /**
   * Sum of the values (NaN if any was NaN, as `sum_over_time`); values with few decimals
   * sum to the exact decimal (see `DecimalSum`).
   */
  readonly sum: number;
  /** Number of samples, NaN and ±Inf included. */
  readonly count: number;
  /** Value of the newest sample (the last written among equal timestamps). */
  readonly last: number;
  /** Timestamp of the newest sample. */
  readonly lastMs: number;
  /** Quantile sketch of the finite values (see sketch.ts). */
  readonly sketch: QuantileSketch;
}

/** One series' windows of one tier, oldest first. */
export interface RollupSeries {
  readonly labels: Label[];
  readonly windows: RollupWindow[];
}

/**
 * Windows of `resolutionMs` over one series' samples, which must be in time order (ties in
 * write order). The raw-to-first-tier step of every adapter, so all agree exactly.
 */
export function aggregateWindows(
  timestampsMs: readonly number[],
  values: readonly number[],
  resolutionMs: number,
  alpha = DEFAULT_RELATIVE_ACCURACY,
): RollupWindow[] {
  const out: RollupWindow[] = [];
  let i = 0;
  while (i < timestampsMs.length) {
    const start = windowStart(timestampsMs[i], resolutionMs);
    const end = start + resolutionMs;
    let min = NaN;
    let max = NaN;
    const sum = new DecimalSum(0);
    let count = 0;
    let last = NaN;
    let lastMs = start;
    const sketch = new QuantileSketch(alpha);
    for (; i < timestampsMs.length && timestampsMs[i] < end; i++) {
      const v = values[i];
      if (!Number.isNaN(v)) {
        if (!(v >= min)) min = v;
        if (!(v <= max)) max = v;
      }
      sum.add(v);
      count++;
      last = v;
      lastMs = timestampsMs[i];
      sketch.add(v);
    }
    out.push({ startMs: start, min, max, sum: sum.value, count, last, lastMs, sketch });
  }
  return out;
}

/**
 * Merges finer windows (in time order) into windows of `resolutionMs`: min of mins, max of
 * maxes, sums of sums and counts, the newest `last`, and merged sketches. Exact, because
 * every aggregate here is mergeable.
 */
export function mergeWindows(windows: readonly RollupWindow[], resolutionMs: number): RollupWindow[] {
  const out: RollupWindow[] = [];
  let i = 0;
  while (i < windows.length) {
    const start = windowStart(windows[i].startMs, resolutionMs);
    const end = start + resolutionMs;
    const first = windows[i];
    let { min, max, count, last, lastMs } = first;
    // −0 is the identity of float addition, so a lone window keeps its sum bit for bit.
    const sum = new DecimalSum(-0);
    const sketch = new QuantileSketch(first.sketch.alpha);
    for (; i < windows.length && windows[i].startMs < end; i++) {
      const w = windows[i];
      if (!(w.min >= min)) min = Number.isNaN(w.min) ? min : w.min;
      if (!(w.max <= max)) max = Number.isNaN(w.max) ? max : w.max;
      sum.add(w.sum);
      if (w !== first) count += w.count;
      if (w.lastMs >= lastMs) {
        last = w.last;
        lastMs = w.lastMs;
      }
      sketch.merge(w.sketch);
    }
    out.push({ startMs: start, min, max, sum: sum.value, count, last, lastMs, sketch });
  }
  return out;
}

/** Powers of ten a decimal sum may be scaled by: values with up to 6 decimal digits. */
const POW10 = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000];
/** Largest magnitude of one scaled value, as chunk.ts allows for its decimal values. */
const SCALED_LIMIT = 2 ** 49;

/**
 * A window's sum. Summed in floating point, values with few decimals often do not add up to
 * a number with as few (0.1 + 0.2 is 0.30000000000000004; so are about half the 5-minute
 * sums of a two-decimal gauge scraped every 15 s), which costs accuracy and space: a sealed
 * run of windows stores a column as small scaled integers only when every value has few
 * decimals (rollup-chunk.ts), and as float64s otherwise. So while every addend is an exact
 * decimal of at most 6 digits (`round(v·10^k)/10^k === v`, finite, not −0) and the scaled
 * total stays a safe integer, the sum is kept as that integer total and the result is
 * `total / 10^k`: the correctly rounded decimal sum. Anything else falls back to the plain
 * float sum, so NaN and ±Inf behave as before. The exponent only grows, and the integer
 * total is rescaled when it does, so the common case costs one multiply, round and divide
 * per value.
 */
class DecimalSum {
  private k = 0;
  private scaled = 0;
  private exact = true;

  constructor(private float: number) {}

  add(v: number): void {
    this.float += v;
    if (!this.exact) return;
    // The common case: `v` exact at the current exponent. NaN fails the first test, ±Inf
    // the second; −0 would turn a lone −0 sum into 0.
    const scale = POW10[this.k];
    const s = Math.round(v * scale);
    if (s / scale === v && Math.abs(s) < SCALED_LIMIT && !(v === 0 && 1 / v < 0)) {
      this.scaled += s;
      this.exact = Math.abs(this.scaled) <= Number.MAX_SAFE_INTEGER;
    } else {
      this.exact = this.addFiner(v);
    }
  }

  /** Adds `v` at the smallest larger exponent it is exact at; false when there is none. */
  private addFiner(v: number): boolean {
    if (!Number.isFinite(v) || Object.is(v, -0)) return false;
    for (let k = this.k + 1; k < POW10.length; k++) {
      const s = Math.round(v * POW10[k]);
      if (s / POW10[k] !== v || !(Math.abs(s) < SCALED_LIMIT)) continue;
      const rescaled = this.scaled * POW10[k - this.k];
      this.scaled = rescaled + s;
      this.k = k;
      return Math.abs(rescaled) <= Number.MAX_SAFE_INTEGER && Math.abs(this.scaled) <= Number.MAX_SAFE_INTEGER;
    }
    return false;
  }

  get value(): number {
    return this.exact ? this.scaled / POW10[this.k] : this.float;
  }
}

/** What one compaction run did. */
export interface CompactionResult {
  /** Windows recomputed, summed over tiers. */
  readonly windows: number;
  /** Rollup rows written (one per series and window). */
  readonly rows: number;
}

/** What one retention run removed. */
export interface RetentionResult {
  /** Raw samples older than raw retention. */
  readonly samplesDeleted: number;
  /** Rollup windows past their tier's retention, summed over tiers. */
  readonly rollupsDeleted: number;
  /** Series left with no samples and no rollup windows. */
  readonly seriesDeleted: number;
}

/**
 * A `MetricStore` that also keeps rollup tiers and applies retention. The periodic jobs
 * (`compact`, `applyRetention`) run on timers the adapter owns; tests call them directly.
 */
export interface RollupStore extends MetricStore {
  /** The policy this store applies. */
  readonly retention: RetentionPolicy;
  /** `pickTier(this.retention, stepMs, rangeMs)`. */
  pickTier(stepMs: number, rangeMs: number): number;
  /**
   * Per-window aggregates of tier `resolutionMs` for the matching series, windows whose
   * start lies in `[startMs, endMs]`. Series sorted by label set, windows by time; limits
   * count series and windows (as samples). Rejects with `StoreInputError` when no tier has
   * that resolution.
   */
  selectRollup(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
    resolutionMs: number,
    limits?: SelectLimits,
  ): Promise<RollupSeries[]>;
  /**
   * Time up to which the tenant's rollups are complete: every window (of any tier) that
   * ends at or before it reflects every sample stored so far, so a query may read it
   * instead of raw samples. Windows after it still await the compactor (written to since
   * its last run, or still filling). +Infinity when nothing awaits it.
   */
  rollupsCompleteBefore(tenant: string): Promise<number>;
  /**
   * Recomputes every window touched by writes since the last run (late samples included)
   * that has ended by now; windows still filling wait for a later run.
   */
  compact(): Promise<CompactionResult>;
  /** Deletes raw samples and rollup windows older than their retention. */
  applyRetention(): Promise<RetentionResult>;
}
