/**
 * Rules every adapter applies identically: input validation, label-set order, matcher
 * compilation, time-range normalisation and limit accounting. Keeping them in one place is
 * what lets the DuckDB adapter and the in-memory fake give byte-identical answers. Internal
 * to libs/store (not re-exported from index.ts).
 */
import { canonicalLabels, compileMatcher, METRIC_NAME_LABEL } from '../model/index.js';
import type { CompiledMatcher, Label, Labels, Matcher, SeriesSamples } from '../model/index.js';
import { StoreInputError, StoreLimitError } from './errors.js';
import type { SampleColumns, SelectLimits, SeriesColumns } from './port.js';

/**
 * Orders label sets as Prometheus does (`labels.Compare`): pairwise by name, then value;
 * a set that is a prefix of another sorts first. Plain code-unit comparison, matching
 * `canonicalLabels` in libs/model.
 */
export function compareLabels(a: Labels, b: Labels): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x.name !== y.name) return x.name < y.name ? -1 : 1;
    if (x.value !== y.value) return x.value < y.value ? -1 : 1;
  }
  return a.length - b.length;
}

/** Code-unit string order, the same order `compareLabels` uses. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Stored text form of a canonical label set: a JSON array of `[name, value]` pairs. JSON
 * because it parsed about twice as fast as a DuckDB MAP converted to JS (measured), and
 * pairs because they keep the canonical order explicit.
 */
export function encodeLabels(labels: Labels): string {
  return JSON.stringify(labels.map((l) => [l.name, l.value]));
}

/** Inverse of `encodeLabels`. */
export function decodeLabels(text: string): Label[] {
  const pairs = JSON.parse(text) as [string, string][];
  return pairs.map(([name, value]) => ({ name, value }));
}

/** The value of label `name`, or '' when absent (Prometheus semantics). */
export function labelValue(labels: Labels, name: string): string {
  for (const l of labels) if (l.name === name) return l.value;
  return '';
}

/** One series of a validated batch, canonical and merged by identity. */
export interface PreparedSeries {
  readonly labels: Label[];
  /** `encodeLabels(labels)`: the identity within a tenant, and the stored text. */
  readonly key: string;
  /** Value of `__name__`, or ''. */
  readonly metric: string;
  readonly timestampsMs: number[];
  readonly values: number[];
}

/** A validated batch. */
export interface PreparedBatch {
  readonly series: PreparedSeries[];
  readonly sampleCount: number;
  /** Oldest and newest timestamp of the batch (±Infinity when it has no samples). */
  readonly minTs: number;
  readonly maxTs: number;
}

/** Rejects an empty or non-string tenant: an unscoped call must never reach storage. */
export function checkTenant(tenant: string): void {
  if (typeof tenant !== 'string' || tenant === '') throw new StoreInputError('tenant', 'must be a non-empty string');
}

/** Canonical form and identity of one label set (what `prepareBatch` derives from it). */
export interface SeriesIdentity {
  readonly labels: Label[];
  readonly key: string;
  readonly metric: string;
}

/**
 * Identities of label sets the caller handed over frozen, by object. A frozen set cannot
 * change, so its canonical form, key and metric are computed once; a consumer that interns
 * label sets (the same frozen array for the same series, batch after batch) then pays one
 * lookup per series instead of a sort, a copy and a JSON encoding. Weak, so it never
 * outlives the caller's own table.
 */
const frozenIdentities = new WeakMap<Labels, SeriesIdentity>();

/** Frozen array of frozen labels: safe to remember by identity. */
function deeplyFrozen(labels: Labels): boolean {
  if (!Object.isFrozen(labels)) return false;
  for (let i = 0; i < labels.length; i++) if (!Object.isFrozen(labels[i])) return false;
  return true;
}

/**
 * Canonical form, key and metric of a label set; throws `StoreInputError` (naming `field`)
 * for a set that is empty or repeats a name. Remembered for deeply frozen sets.
 */
export function identityOf(labelsIn: Labels, field: string): SeriesIdentity {
  // Only deeply frozen sets are ever remembered, and freezing cannot be undone: a hit
  // needs no second check.
  const known = frozenIdentities.get(labelsIn);
  if (known !== undefined) return known;
  const frozen = deeplyFrozen(labelsIn);
  const labels = canonicalLabels(labelsIn);
  if (labels.length === 0) throw new StoreInputError(`${field}.labels`, 'must hold at least one non-empty label');
  for (let j = 1; j < labels.length; j++) {
    if (labels[j].name === labels[j - 1].name) {
      throw new StoreInputError(`${field}.labels`, `duplicate label name ${JSON.stringify(labels[j].name)}`);
    }
  }
  const id: SeriesIdentity = { labels, key: encodeLabels(labels), metric: labelValue(labels, METRIC_NAME_LABEL) };
  if (frozen) frozenIdentities.set(labelsIn, id);
  return id;
}

/** A copy the batch owns, unless the caller's array is frozen (then it cannot change under us). */
function owned(values: readonly number[]): number[] {
  return Object.isFrozen(values) ? (values as number[]) : values.slice();
}

/**
 * Validates a batch and puts it in canonical form. Series with the same label set are
 * merged (a batch may legitimately carry one series in several pieces); series without
 * samples are dropped because they could never be selected. Label sets passed frozen
 * are canonicalised once per set, not once per batch (see `frozenIdentities`).
 */
export function prepareBatch(tenant: string, batchId: string, series: readonly SeriesSamples[]): PreparedBatch {
  checkTenant(tenant);
  if (typeof batchId !== 'string' || batchId === '') throw new StoreInputError('batchId', 'must be a non-empty string');
  if (!Array.isArray(series)) throw new StoreInputError('series', 'must be an array');
  const byKey = new Map<string, { labels: Label[]; key: string; metric: string; timestampsMs: number[]; values: number[]; ownArrays: boolean }>();
  let sampleCount = 0;
  // Tracked while every timestamp is checked anyway, so writers need not walk them again.
  let minTs = Infinity;
  let maxTs = -Infinity;
  for (let i = 0; i < series.length; i++) {
    const s = series[i];
    const n = s.timestampsMs.length;
    if (s.values.length !== n) {
      throw new StoreInputError(`series[${i}].values`, `has ${s.values.length} values for ${n} timestamps`);
    }
    if (n === 0) continue;
    const id = identityOf(s.labels, `series[${i}]`);
    for (let j = 0; j < n; j++) {
      const t = s.timestampsMs[j];
      if (!Number.isSafeInteger(t)) {
        throw new StoreInputError(`series[${i}].timestampsMs[${j}]`, 'must be an integer number of milliseconds');
      }
      if (t < minTs) minTs = t;
      if (t > maxTs) maxTs = t;
      if (typeof s.values[j] !== 'number') throw new StoreInputError(`series[${i}].values[${j}]`, 'must be a number');
    }
    const prev = byKey.get(id.key);
    if (prev === undefined) {
      const timestampsMs = owned(s.timestampsMs);
      const values = owned(s.values);
      byKey.set(id.key, { labels: id.labels, key: id.key, metric: id.metric, timestampsMs, values, ownArrays: timestampsMs !== s.timestampsMs && values !== s.values });
    } else {
      if (!prev.ownArrays) {
        // The first piece may be the caller's frozen array: copy before appending.
        prev.timestampsMs = prev.timestampsMs.slice();
        prev.values = prev.values.slice();
        prev.ownArrays = true;
      }
      // A loop, not push(...spread): a spread of a very large series overflows the stack.
      for (let j = 0; j < n; j++) {
        prev.timestampsMs.push(s.timestampsMs[j]);
        prev.values.push(s.values[j]);
      }
    }
    sampleCount += n;
  }
  return { series: [...byKey.values()], sampleCount, minTs, maxTs };
}

/** A columnar batch, checked (see `MetricStore.writeColumns`). */
export interface CheckedColumns {
  /** Oldest and newest timestamp (±Infinity when there are no rows). */
  readonly minTs: number;
  readonly maxTs: number;
}

/**
 * Validates a columnar batch as `prepareBatch` validates series: the same errors for a
 * bad tenant, batch id or timestamp. Label sets are checked where they are resolved.
 */
export function checkColumns(tenant: string, batchId: string, columns: SampleColumns): CheckedColumns {
  checkTenant(tenant);
  if (typeof batchId !== 'string' || batchId === '') throw new StoreInputError('batchId', 'must be a non-empty string');
  const { rowCount: n, labels, timestampsMs, values } = columns;
  if (!Number.isSafeInteger(n) || n < 0) throw new StoreInputError('columns.rowCount', 'must be a non-negative integer');
  if (!Array.isArray(labels) || labels.length < n) throw new StoreInputError('columns.labels', `must hold a label set for each of ${n} rows`);
  if (!(timestampsMs instanceof Float64Array) || timestampsMs.length < n) throw new StoreInputError('columns.timestampsMs', `must be a Float64Array of at least ${n} rows`);
  if (!(values instanceof Float64Array) || values.length < n) throw new StoreInputError('columns.values', `must be a Float64Array of at least ${n} rows`);
  let minTs = Infinity;
  let maxTs = -Infinity;
  for (let i = 0; i < n; i++) {
    const t = timestampsMs[i]!;
    if (!Number.isSafeInteger(t)) throw new StoreInputError(`columns.timestampsMs[${i}]`, 'must be an integer number of milliseconds');
    if (t < minTs) minTs = t;
    if (t > maxTs) maxTs = t;
  }
  return { minTs, maxTs };
}

/** The rows of a columnar batch as series, one per row: what `write` stores identically. */
export function columnsToSeries(columns: SampleColumns): SeriesSamples[] {
  const out: SeriesSamples[] = new Array(columns.rowCount);
  for (let i = 0; i < columns.rowCount; i++) {
    out[i] = { labels: columns.labels[i]!, timestampsMs: [columns.timestampsMs[i]!], values: [columns.values[i]!] };
  }
  return out;
}

/**
 * Compiles matchers, turning an invalid regular expression into `StoreInputError` so it
 * reaches the caller as a bad request rather than an internal error.
 */
export function compileMatchers(matchers: readonly Matcher[]): CompiledMatcher[] {
  return matchers.map((m, i) => {
    try {
      return compileMatcher(m);
    } catch (err) {
      if (err instanceof SyntaxError) throw new StoreInputError(`matchers[${i}].value`, err.message);
      throw err;
    }
  });
}

/**
 * The `=` matcher on the metric name, if any: adapters push it down to storage because
 * almost every query has one and it cuts the candidate series the most.
 */
export function metricNameEquality(matchers: readonly Matcher[]): string | undefined {
  for (const m of matchers) if (m.op === '=' && m.name === METRIC_NAME_LABEL) return m.value;
  return undefined;
}

/** An inclusive integer time range, or `undefined` when no integer lies in it. */
export interface TimeRange {
  readonly startMs: number;
  readonly endMs: number;
}

/**
 * Normalises `[startMs, endMs]` to the integers it contains (stored timestamps are integers),
 * clamping infinities so "all time" can be asked as `-Infinity, Infinity`.
 */
export function normalizeRange(startMs: number, endMs: number): TimeRange | undefined {
  if (typeof startMs !== 'number' || Number.isNaN(startMs)) throw new StoreInputError('startMs', 'must be a number');
  if (typeof endMs !== 'number' || Number.isNaN(endMs)) throw new StoreInputError('endMs', 'must be a number');
  const start = Math.max(Math.ceil(startMs), Number.MIN_SAFE_INTEGER);
  const end = Math.min(Math.floor(endMs), Number.MAX_SAFE_INTEGER);
  return start <= end ? { startMs: start, endMs: end } : undefined;
}

/**
 * Counts series and samples as an answer is assembled and throws `StoreLimitError` the
 * moment one crosses its limit, so no adapter builds an oversized answer first.
 */
export class LimitTracker {
  private series = 0;
  private samples = 0;
  private readonly maxSeries: number;
  private readonly maxSamples: number;

  constructor(limits: SelectLimits | undefined) {
    this.maxSeries = checkLimit('maxSeries', limits?.maxSeries);
    this.maxSamples = checkLimit('maxSamples', limits?.maxSamples);
  }

  /** Accounts one more series in the answer. */
  addSeries(): void {
    if (++this.series > this.maxSeries) throw new StoreLimitError('maxSeries', this.maxSeries);
  }

  /** Accounts `n` more samples in the answer. */
  addSamples(n: number): void {
    this.samples += n;
    if (this.samples > this.maxSamples) throw new StoreLimitError('maxSamples', this.maxSamples);
  }
}

function checkLimit(name: keyof SelectLimits, value: number | undefined): number {
  if (value === undefined) return Infinity;
  if (!(Number.isInteger(value) && value >= 0)) throw new StoreInputError(`limits.${name}`, 'must be a non-negative integer');
  return value;
}

/** Sorted distinct label names of `series` (the body of every adapter's `labelNames`). */
export function sortedLabelNames(series: Iterable<{ readonly labels: Labels }>): string[] {
  const names = new Set<string>();
  for (const s of series) for (const l of s.labels) names.add(l.name);
  return [...names].sort(compareStrings);
}

/** Sorted distinct non-empty values of label `name` over `series` (every adapter's `labelValues`). */
export function sortedLabelValues(series: Iterable<{ readonly labels: Labels }>, name: string): string[] {
  const values = new Set<string>();
  for (const s of series) {
    const v = labelValue(s.labels, name);
    if (v !== '') values.add(v);
  }
  return [...values].sort(compareStrings);
}

/** `select`'s answer as `selectColumns` gives it, for adapters that read plain arrays. */
export function toColumns(found: readonly SeriesSamples[]): SeriesColumns[] {
  return found.map((s) => ({ labels: s.labels as Label[], timestampsMs: Float64Array.from(s.timestampsMs), values: Float64Array.from(s.values) }));
}

/** `selectColumns`' answer as `select` gives it, for adapters that read typed arrays. */
export function fromColumns(found: readonly SeriesColumns[]): SeriesSamples[] {
  return found.map((s) => ({ labels: s.labels, timestampsMs: Array.from(s.timestampsMs), values: Array.from(s.values) }));
}
