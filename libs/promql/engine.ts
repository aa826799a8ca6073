/**
 * The PromQL evaluation engine: instant and range queries over any {@link Queryable}
 * (the aggregation service passes a tenant-scoped store).
 *
 * How it works, and why:
 * - The query is parsed with Prometheus' own grammar (parse.ts) into a type-checked tree
 *   (ast.ts), so syntax and type errors carry Prometheus' wording.
 * - Before evaluating, every selector's time span over the whole query is worked out
 *   (step range, `offset`, `@`, range, lookback, enclosing subqueries) and each selector
 *   is fetched ONCE. Steps are then evaluated in memory: an instant selector is a binary
 *   search per series, a range selector an index window into the fetched arrays.
 * - Range functions over selectors, and the numeric aggregations and topk/bottomk above
 *   them, are evaluated for all steps at once, series by series (`columnsOf`): same arithmetic in
 *   the same order, without per-step cursors and allocations.
 * - Range queries may read rollup tiers instead of raw samples for the `*_over_time`
 *   functions a tier can answer (`planRollups`, `rollupColumns`: when, and the error bound).
 * - Semantics follow Prometheus 2.42 (the version the differential tests run): closed
 *   lookback and range windows `[t - d, t]`, staleness markers ending a series, `@` and
 *   step-invariant subtrees computed once, subquery steps aligned to multiples of the
 *   step, `__name__` dropped by functions and arithmetic.
 */
import type { Label, Matcher, SeriesSamples } from '../model/index.js';
import { addToGroup, aggregate, groupOf, groupValue, newGroup, NUMERIC_AGGREGATIONS, rankCompare } from './aggregations.js';
import type { Group, GroupCache } from './aggregations.js';
import { goRegExp, parseQuery, typeOf } from './ast.js';
import type { AggregateNode, BinaryNode, CallNode, Expr, MatrixNode, SelectorNode, SubqueryNode } from './ast.js';
import { scalarScalar, setOperation, vectorScalar, vectorVector } from './binary.js';
import { PromqlExecutionError, QueryLimitError, QueryTimeoutError } from './engine-errors.js';
import { PromqlSyntaxError } from './errors.js';
import type { RangeFunction } from './functions.js';
import { DATE_FUNCTIONS, MATH_FUNCTIONS, RANGE_FUNCTIONS, absentLabels, expandTemplate, histogramQuantile, roundTo } from './functions.js';
import { LabelSet } from './labelset.js';
import { counterResets, lowerBound, upperBound } from './values.js';
import type { RangeSeries, Sample, Value } from './values.js';

export { PromqlExecutionError, QueryLimitError, QueryTimeoutError } from './engine-errors.js';

/**
 * One selected series: `SeriesSamples`, or the same with the samples in `Float64Array`s,
 * which the engine keeps as they are (no copy) when already in time order.
 */
export interface SelectedSeries {
  readonly labels: SeriesSamples['labels'];
  readonly timestampsMs: ArrayLike<number>;
  readonly values: ArrayLike<number>;
}

/** What the engine reads samples from (the aggregation service passes the tenant-scoped store). */
export interface Queryable {
  /**
   * Series matching all matchers with their samples in `[startMs, endMs]` (inclusive). Typed
   * arrays handed over become the engine's: the caller must not change them afterwards.
   */
  select(matchers: readonly Matcher[], startMs: number, endMs: number): Promise<readonly SelectedSeries[]>;
  /** Rollup tiers range queries may read instead of raw samples; absent: raw only. */
  readonly rollups?: RollupSource;
}

/**
 * Per-window aggregates of one series in one rollup tier (the store's rollup windows have
 * this shape): min, max, sum and count of the samples in `[startMs, startMs + resolution)`,
 * the newest sample's value, and a mergeable quantile sketch.
 */
export interface RollupWindowData<S = unknown> {
  readonly startMs: number;
  readonly min: number;
  readonly max: number;
  readonly sum: number;
  readonly count: number;
  readonly last: number;
  readonly sketch: S;
}

/** One series' windows of a tier, oldest first. */
export interface RollupSeriesData<S = unknown> {
  readonly labels: readonly Label[];
  readonly windows: readonly RollupWindowData<S>[];
}

/** Which tier a range query should read, and up to when it is complete. */
export interface RollupPlan {
  /** Window width of the tier, ms. */
  readonly resolutionMs: number;
  /** Windows ending at or before this time hold every stored sample (later ones may still change). */
  readonly completeBeforeMs: number;
}

/** Rollup tiers as the engine reads them (see `rollupColumns` for which queries use them). */
export interface RollupSource<S = unknown> {
  /**
   * The tier for a range query of step `stepMs` reading back to `fromMs`: the coarsest
   * whose windows are no wider than the step and that still holds that time; undefined
   * for raw samples.
   */
  plan(stepMs: number, fromMs: number): Promise<RollupPlan | undefined>;
  /** Windows of tier `resolutionMs` of the matching series whose start lies in `[startMs, endMs]`. */
  select(matchers: readonly Matcher[], startMs: number, endMs: number, resolutionMs: number): Promise<RollupSeriesData<S>[]>;
  /** The q-quantile (0 ≤ q ≤ 1) of the merged sketches; NaN when they hold no value. */
  quantile(sketches: readonly S[], q: number): number;
}

/**
 * Range functions a rollup tier answers, and how: per step, over the tier's windows that
 * start in `[t − range, t)`. See `rollupColumns` for when and the error bound.
 */
const ROLLUP_FUNCTIONS: ReadonlySet<string> = new Set([
  'min_over_time',
  'max_over_time',
  'sum_over_time',
  'count_over_time',
  'avg_over_time',
  'last_over_time',
  'present_over_time',
  'quantile_over_time',
]);

/** Per-query settings. */
export interface EngineOptions {
  /** How far back an instant selector looks for a sample; default 300 000 (5m), as Prometheus. */
  lookbackDeltaMs?: number;
  /**
   * Samples loaded plus produced: every sample fetched from the store, every inner
   * subquery result and every point of the final result count (cumulatively, unlike
   * Prometheus' peak-in-memory count). Crossing it throws QueryLimitError('query.maxSamples', value).
   */
  maxSamples?: number;
  /** Series selected; crossing it throws QueryLimitError('query.maxSeries', value). */
  maxSeries?: number;
  /** Wall-clock budget; crossing it throws QueryTimeoutError. */
  timeoutMs?: number;
  /** Aborts the query (its reason is thrown). */
  signal?: AbortSignal;
  /** Told each time a range function is answered from a rollup tier (for stats and tests). */
  onRollup?: (use: { function: string; resolutionMs: number; steps: number; rawSteps: number }) => void;
}

/** A query result in Prometheus' four shapes. Times are Unix milliseconds. */
export type PromValue =
  | { type: 'scalar'; value: [timestampMs: number, value: number] }
  | { type: 'string'; value: [timestampMs: number, value: string] }
  | { type: 'vector'; value: Array<{ labels: Label[]; timestampMs: number; value: number }> }
  | { type: 'matrix'; value: Array<{ labels: Label[]; points: Array<[timestampMs: number, value: number]> }> };

const DEFAULT_LOOKBACK_MS = 300_000;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Subquery step when none is written: Prometheus' default evaluation interval. */
const DEFAULT_SUBQUERY_STEP_MS = 60_000;
/** Prometheus refuses range queries with more points per series than this. */
const MAX_POINTS_PER_SERIES = 11_000;

/**
 * Staleness markers are the NaN with bits 0x7ff0000000000002. V8 quiets a signalling NaN
 * when it is stored in a plain number array (the store hands us number[]), which sets
 * bit 51 and gives 0x7ff8000000000002, so both patterns count as stale.
 */
const bitsView = new DataView(new ArrayBuffer(8));
/** True when `v` is a Prometheus staleness marker. */
export function isStaleNaN(v: number): boolean {
  if (!Number.isNaN(v)) return false;
  bitsView.setFloat64(0, v);
  const hi = bitsView.getUint32(0);
  const lo = bitsView.getUint32(4);
  return lo === 2 && (hi === 0x7ff00000 || hi === 0x7ff80000);
}

/** The staleness marker as a number, for writers and tests. */
export const STALE_NAN: number = (() => {
  const view = new DataView(new ArrayBuffer(8));
  view.setUint32(0, 0x7ff00000);
  view.setUint32(4, 2);
  return view.getFloat64(0);
})();

/** One fetched series, sorted by time, one sample per timestamp. */
interface FetchedSeries {
  readonly ls: LabelSet;
  readonly ts: Float64Array;
  readonly vs: Float64Array;
}

/** Evaluates one parsed query; one instance per query. */
class Evaluator {
  private readonly data: FetchedSeries[][] = [];
  /** Per selector: true when its series stay distinct without `__name__` (usual: one metric name). */
  private readonly uniqueWithoutName: boolean[] = [];
  private readonly invariantCache = new Map<Expr, Value>();
  /** Inner evaluation span of each subquery (aligned to its step), from collectSpans. */
  private readonly subquerySpans = new Map<number, { from: number; to: number }>();
  private readonly subqueryData = new Map<number, FetchedSeries[]>();
  private readonly groupCaches = new Map<AggregateNode, GroupCache>();
  private readonly regexCache = new Map<string, RegExp>();
  private readonly cursors = new Map<SelectorNode | MatrixNode | SubqueryNode, Cursors>();
  /** Nodes outside subqueries that may be evaluated for all steps at once (see `columnsOf`). */
  private readonly columnar = new Set<Expr>();
  private readonly columns = new Map<Expr, Columns | undefined>();
  /** Range function calls answered (for their first `steps` steps) from a rollup tier. */
  private readonly rollupInputs = new Map<CallNode, { source: RollupSource; steps: number; series: RollupSeriesData[] }>();
  /** Evaluation times of the query, ascending (one for an instant query). */
  grid: Float64Array = new Float64Array(0);
  /** Index into `grid` of the step being evaluated; -1 outside the step loop. */
  stepIndex = -1;
  private readonly deadline: number;
  private samples = 0;
  private checks = 0;

  constructor(
    private readonly queryStart: number,
    private readonly queryEnd: number,
    private readonly lookback: number,
    private readonly opts: EngineOptions,
  ) {
    this.deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
  }

  /** Throws when the query is aborted or out of time; cheap enough to call per step. */
  check(): void {
    this.opts.signal?.throwIfAborted();
    if (this.deadline !== Infinity && Date.now() > this.deadline) {
      throw new QueryTimeoutError(`query timed out: it ran longer than ${this.opts.timeoutMs ?? 0} ms (query.timeoutMs)`);
    }
  }

  /** Counts samples against `maxSamples`. */
  addSamples(n: number): void {
    this.samples += n;
    const max = this.opts.maxSamples;
    if (max !== undefined && this.samples > max) {
      throw new QueryLimitError('query.maxSamples', max, `query loaded or produced more than ${max} samples (query.maxSamples); narrow the selectors or the time range`);
    }
  }

  private resolveAt(at: number | 'start' | 'end' | undefined): number | undefined {
    if (at === 'start') return this.queryStart;
    if (at === 'end') return this.queryEnd;
    return at;
  }

  /** Works out each selector's fetch span for evaluations at times in [start, end]. */
  collectSpans(e: Expr, start: number, end: number, spans: Map<SelectorNode, { from: number; to: number; matrix: boolean }>, inSubquery = false): void {
    switch (e.kind) {
      case 'selector':
      case 'matrix': {
        const sel = e.kind === 'selector' ? e : e.selector;
        const at = this.resolveAt(sel.at);
        const refStart = (at ?? start) - sel.offsetMs;
        const refEnd = (at ?? end) - sel.offsetMs;
        const back = e.kind === 'matrix' ? e.rangeMs : this.lookback;
        spans.set(sel, { from: refStart - back, to: refEnd, matrix: e.kind === 'matrix' });
        return;
      }
      case 'subquery': {
        const at = this.resolveAt(e.at);
        const step = e.stepMs ?? DEFAULT_SUBQUERY_STEP_MS;
        const innerStart = Math.ceil(((at ?? start) - e.offsetMs - e.rangeMs) / step) * step;
        const innerEnd = (at ?? end) - e.offsetMs;
        this.subquerySpans.set(e.id, { from: innerStart, to: innerEnd });
        this.collectSpans(e.expr, innerStart, innerEnd, spans, true);
        return;
      }
      case 'call':
        if (!inSubquery) this.columnar.add(e);
        for (const a of e.args) this.collectSpans(a, start, end, spans, inSubquery);
        return;
      case 'aggregate':
        if (!inSubquery) this.columnar.add(e);
        if (e.param !== undefined) this.collectSpans(e.param, start, end, spans, inSubquery);
        this.collectSpans(e.expr, start, end, spans, inSubquery);
        return;
      case 'binary':
        this.collectSpans(e.lhs, start, end, spans, inSubquery);
        this.collectSpans(e.rhs, start, end, spans, inSubquery);
        return;
      case 'unary':
      case 'paren':
        this.collectSpans(e.expr, start, end, spans, inSubquery);
        return;
      default:
        return;
    }
  }

  /** Fetches every selector once, in parallel, and checks the series and sample limits. */
  async fetch(q: Queryable, root: Expr, start: number, end: number, stepMs?: number): Promise<void> {
    const spans = new Map<SelectorNode, { from: number; to: number; matrix: boolean }>();
    this.collectSpans(root, start, end, spans);
    let series = 0;
    if (q.rollups !== undefined && stepMs !== undefined) series += await this.planRollups(q.rollups, stepMs, spans);
    const entries = [...spans];
    const results = await Promise.all(
      entries.map(([sel, span]) => (span.from > span.to ? Promise.resolve([]) : q.select(sel.matchers, span.from, span.to))),
    );
    this.check();
    entries.forEach(([sel, span], i) => {
      const got = results[i] ?? [];
      series += got.length;
      const max = this.opts.maxSeries;
      if (max !== undefined && series > max) {
        throw new QueryLimitError('query.maxSeries', max, `query selected more than ${max} series (query.maxSeries); narrow the selectors`);
      }
      const prepared: FetchedSeries[] = [];
      for (const s of got) {
        const f = prepareSeries(s, span.matrix);
        this.addSamples(f.ts.length);
        if (f.ts.length > 0) prepared.push(f);
      }
      this.data[sel.id] = prepared;
      const keys = new Set(prepared.map((f) => f.ls.withoutName().key));
      this.uniqueWithoutName[sel.id] = keys.size === prepared.length;
    });
  }

  /**
   * Decides which range function calls a rollup tier answers, reads their windows, and
   * narrows those selectors' raw spans to the steps the tier cannot answer (an empty span
   * when it answers all). Returns the number of rollup series read.
   *
   * A call qualifies when it is one of {@link ROLLUP_FUNCTIONS} over a plain range
   * selector (no `@`), outside subqueries, other arguments literals, in a range query
   * whose step is a multiple of the tier's resolution (so no step falls inside a window),
   * with the range and every step time (less the offset) on window boundaries: then the
   * range `[t − R, t]` is exactly the windows starting in `[t − R, t)` plus the instant
   * `t`. Steps read the tier while their range ends before `completeBeforeMs` (the
   * compactor has not caught up with later windows); later steps read raw samples.
   */
  private async planRollups(source: RollupSource, stepMs: number, spans: Map<SelectorNode, { from: number; to: number; matrix: boolean }>): Promise<number> {
    const grid = this.grid;
    const n = grid.length;
    let seriesRead = 0;
    for (const e of this.columnar) {
      if (e.kind !== 'call' || !ROLLUP_FUNCTIONS.has(e.name)) continue;
      const arg = e.args[e.name === 'quantile_over_time' ? 1 : 0];
      if (arg?.kind !== 'matrix' || arg.invariant || arg.selector.at !== undefined) continue;
      if (!e.args.every((a) => a === arg || a.kind === 'number')) continue;
      const sel = arg.selector;
      const span = spans.get(sel);
      if (span === undefined || n === 0) continue;
      const ref0 = (grid[0] as number) - sel.offsetMs;
      const plan = await source.plan(stepMs, ref0 - arg.rangeMs);
      if (plan === undefined) continue;
      const res = plan.resolutionMs;
      if (!(res > 0) || stepMs % res !== 0 || arg.rangeMs % res !== 0 || ref0 % res !== 0) continue;
      let steps = 0;
      while (steps < n && (grid[steps] as number) - sel.offsetMs <= plan.completeBeforeMs) steps++;
      if (steps === 0) continue;
      const lastRef = (grid[steps - 1] as number) - sel.offsetMs;
      const got = await source.select(sel.matchers, ref0 - arg.rangeMs, lastRef - 1, res);
      this.check();
      // Functions other than last_over_time drop __name__: series differing only in it
      // would collide, which Prometheus reports per step from raw data. Leave those to raw.
      if (e.name !== 'last_over_time') {
        const keys = new Set(got.map((r) => LabelSet.from(r.labels).withoutName().key));
        if (keys.size !== got.length) continue;
      }
      seriesRead += got.length;
      const max = this.opts.maxSeries;
      if (max !== undefined && seriesRead > max) {
        throw new QueryLimitError('query.maxSeries', max, `query selected more than ${max} series (query.maxSeries); narrow the selectors`);
      }
      for (const r of got) this.addSamples(r.windows.length);
      this.rollupInputs.set(e, { source, steps, series: got });
      // Raw samples only for the steps after the tier's complete windows.
      span.from = steps < n ? (grid[steps] as number) - sel.offsetMs - arg.rangeMs : Infinity;
      this.opts.onRollup?.({ function: e.name, resolutionMs: res, steps, rawSteps: n - steps });
    }
    return seriesRead;
  }

  /** Evaluates `e` at time `t` (ms). */
  eval(e: Expr, t: number): Value {
    if ((e.kind === 'call' || e.kind === 'aggregate') && !e.invariant && this.stepIndex >= 0 && this.grid[this.stepIndex] === t) {
      const c = this.columnsOf(e);
      if (c !== undefined) return { type: 'vector', samples: c.vectorAt(this.stepIndex, t) };
    }
    if (e.invariant && e.kind !== 'number' && e.kind !== 'string') {
      const hit = this.invariantCache.get(e);
      if (hit !== undefined) return hit;
      const v = this.evalNode(e, t);
      this.invariantCache.set(e, v);
      return v;
    }
    return this.evalNode(e, t);
  }

  private evalNode(e: Expr, t: number): Value {
    switch (e.kind) {
      case 'number':
        return { type: 'scalar', v: e.value };
      case 'string':
        return { type: 'string', s: e.value };
      case 'selector':
        return { type: 'vector', samples: this.instantSelector(e, t) };
      case 'matrix':
        return { type: 'matrix', series: this.rangeSelector(e, t) };
      case 'subquery':
        return { type: 'matrix', series: this.subquery(e, t) };
      case 'paren':
        return this.eval(e.expr, t);
      case 'unary': {
        const v = this.eval(e.expr, t);
        if (e.op === '+') return v;
        if (v.type === 'scalar') return { type: 'scalar', v: -v.v };
        return { type: 'vector', samples: this.vectorOf(v).map((s) => ({ ls: s.ls.withoutName(), v: -s.v, t })) };
      }
      case 'binary':
        return this.binary(e, t);
      case 'aggregate':
        return { type: 'vector', samples: this.aggregate(e, t) };
      case 'call':
        return this.call(e, t);
    }
  }

  private vectorOf(v: Value): readonly Sample[] {
    if (v.type !== 'vector') throw new PromqlExecutionError(`expected an instant vector, got ${v.type}`);
    return v.samples;
  }

  private scalarOf(v: Value): number {
    if (v.type !== 'scalar') throw new PromqlExecutionError(`expected a scalar, got ${v.type}`);
    return v.v;
  }

  private cursorsFor(key: SelectorNode | MatrixNode | SubqueryNode, n: number): Cursors {
    let c = this.cursors.get(key);
    if (c === undefined) {
      c = new Cursors(n);
      this.cursors.set(key, c);
    }
    return c;
  }

  private instantSelector(sel: SelectorNode, t: number): Sample[] {
    const ref = (this.resolveAt(sel.at) ?? t) - sel.offsetMs;
    const min = ref - this.lookback;
    const out: Sample[] = [];
    const data = this.data[sel.id] ?? [];
    const cur = this.cursorsFor(sel, data.length);
    cur.begin(ref, ref);
    for (let k = 0; k < data.length; k++) {
      const s = data[k];
      if (s === undefined) continue;
      const i = cur.end(k, s.ts, ref) - 1;
      if (i < 0) continue;
      const st = s.ts[i] ?? 0;
      if (st < min) continue;
      const v = s.vs[i] ?? 0;
      if (isStaleNaN(v)) continue;
      out.push({ ls: s.ls, v, t: st });
    }
    return out;
  }

  /**
   * Calls `visit` with each series' window of a range selector at `t` (series with an
   * empty window are skipped). The window object is reused: visitors must not keep it.
   */
  private eachWindow(m: MatrixNode, t: number, visit: (w: RangeSeries) => void): void {
    const sel = m.selector;
    const ref = (this.resolveAt(sel.at) ?? t) - sel.offsetMs;
    const lo = ref - m.rangeMs;
    const data = this.data[sel.id] ?? [];
    const cur = this.cursorsFor(m, data.length);
    cur.begin(lo, ref);
    const w: { ls: LabelSet; ts: ArrayLike<number>; vs: ArrayLike<number>; from: number; to: number } = { ls: LabelSet.EMPTY, ts: EMPTY_ARRAY, vs: EMPTY_ARRAY, from: 0, to: 0 };
    for (let k = 0; k < data.length; k++) {
      const s = data[k];
      if (s === undefined) continue;
      const from = cur.start(k, s.ts, lo);
      const to = cur.end(k, s.ts, ref);
      if (to <= from) continue;
      w.ls = s.ls;
      w.ts = s.ts;
      w.vs = s.vs;
      w.from = from;
      w.to = to;
      visit(w);
    }
  }

  private rangeSelector(m: MatrixNode, t: number): RangeSeries[] {
    const out: RangeSeries[] = [];
    this.eachWindow(m, t, (w) => out.push({ ...w }));
    return out;
  }

  private subquery(e: SubqueryNode, t: number): RangeSeries[] {
    const ref = (this.resolveAt(e.at) ?? t) - e.offsetMs;
    const all = this.materialize(e);
    const lo = ref - e.rangeMs;
    const cur = this.cursorsFor(e, all.length);
    cur.begin(lo, ref);
    const out: RangeSeries[] = [];
    for (let k = 0; k < all.length; k++) {
      const s = all[k];
      if (s === undefined) continue;
      const from = cur.start(k, s.ts, lo);
      const to = cur.end(k, s.ts, ref);
      if (to > from) out.push({ ls: s.ls, ts: s.ts, vs: s.vs, from, to });
    }
    return out;
  }

  /**
   * Evaluates a subquery's inner expression once at every aligned inner step the whole
   * query needs (the span worked out before fetching), like a range query, so each
   * outer step only cuts a window out of it.
   */
  private materialize(e: SubqueryNode): FetchedSeries[] {
    const done = this.subqueryData.get(e.id);
    if (done !== undefined) return done;
    const span = this.subquerySpans.get(e.id);
    const step = e.stepMs ?? DEFAULT_SUBQUERY_STEP_MS;
    const series = new Map<string, { ls: LabelSet; ts: number[]; vs: number[] }>();
    if (span !== undefined) {
      for (let it = span.from; it <= span.to; it += step) {
        if ((++this.checks & 255) === 0) this.check();
        const samples = this.vectorOf(this.eval(e.expr, it));
        this.addSamples(samples.length);
        for (const smp of samples) {
          let ser = series.get(smp.ls.key);
          if (ser === undefined) {
            ser = { ls: smp.ls, ts: [], vs: [] };
            series.set(smp.ls.key, ser);
          }
          ser.ts.push(it);
          ser.vs.push(smp.v);
        }
      }
    }
    const out = [...series.values()].map((x) => ({ ls: x.ls, ts: Float64Array.from(x.ts), vs: Float64Array.from(x.vs) }));
    this.subqueryData.set(e.id, out);
    return out;
  }

  private binary(e: BinaryNode, t: number): Value {
    const l = this.eval(e.lhs, t);
    const r = this.eval(e.rhs, t);
    if (l.type === 'scalar' && r.type === 'scalar') return { type: 'scalar', v: scalarScalar(e.op, l.v, r.v, e.returnBool) };
    let out: Sample[];
    if (l.type === 'vector' && r.type === 'vector') {
      const m = e.matching ?? { card: 'one-to-one', on: false, labels: [], include: [] };
      if (m.card === 'many-to-many') return { type: 'vector', samples: setOperation(e.op, l.samples, r.samples, m, t) };
      out = vectorVector(e.op, l.samples, r.samples, m, e.returnBool, t);
    } else if (l.type === 'vector') {
      out = vectorScalar(e.op, l.samples, this.scalarOf(r), false, e.returnBool, t);
    } else {
      out = vectorScalar(e.op, this.vectorOf(r), this.scalarOf(l), true, e.returnBool, t);
    }
    // A selector (distinct without __name__) against a scalar cannot produce duplicates.
    const vecSide = l.type === 'vector' ? e.lhs : e.rhs;
    if (r.type === 'scalar' || l.type === 'scalar') {
      if (vecSide.kind === 'selector' && this.uniqueWithoutName[vecSide.id] === true) return { type: 'vector', samples: out };
    }
    return { type: 'vector', samples: checkUnique(out) };
  }

  private aggregate(e: AggregateNode, t: number): Sample[] {
    const input = this.vectorOf(this.eval(e.expr, t));
    let param: number | string | undefined;
    if (e.param !== undefined) {
      const p = this.eval(e.param, t);
      param = p.type === 'string' ? p.s : this.scalarOf(p);
    }
    if (e.op === 'count_values' && !LABEL_NAME.test(String(param))) {
      throw new PromqlExecutionError(`invalid label name ${JSON.stringify(String(param))}`);
    }
    let cache = this.groupCaches.get(e);
    if (cache === undefined) {
      cache = new Map();
      this.groupCaches.set(e, cache);
    }
    return aggregate(e, input, param, t, cache);
  }

  /**
   * Drops the duplicate-labelset check for a function applied straight to a selector
   * whose series are known to stay distinct without `__name__`: it cannot fail, and it
   * costs a set of keys per step.
   */
  private uniqueOutput(e: CallNode, samples: Sample[]): Sample[] {
    const arg = e.args.find((a) => a.kind === 'selector' || a.kind === 'matrix');
    const sel = arg?.kind === 'selector' ? arg : arg?.kind === 'matrix' ? arg.selector : undefined;
    if (sel !== undefined && e.args.every((a) => a === arg || a.kind === 'number' || a.kind === 'string') && this.uniqueWithoutName[sel.id] === true) return samples;
    return checkUnique(samples);
  }

  private call(e: CallNode, t: number): Value {
    const name = e.name;
    const unique = (samples: Sample[]): Sample[] => this.uniqueOutput(e, samples);
    const rangeFn = RANGE_FUNCTIONS.get(name);
    if (rangeFn !== undefined) return { type: 'vector', samples: unique(this.rangeCall(e, rangeFn, t)) };
    const mathFn = MATH_FUNCTIONS.get(name);
    if (mathFn !== undefined) {
      return { type: 'vector', samples: unique(this.vectorArg(e, 0, t).map((s) => ({ ls: s.ls.withoutName(), v: mathFn(s.v), t }))) };
    }
    const dateFn = DATE_FUNCTIONS.get(name);
    if (dateFn !== undefined) {
      const input: readonly Sample[] = e.args.length === 0 ? [{ ls: LabelSet.EMPTY, v: t / 1000, t }] : this.vectorArg(e, 0, t);
      return { type: 'vector', samples: unique(input.map((s) => ({ ls: s.ls.withoutName(), v: dateFn(new Date(s.v * 1000)), t }))) };
    }
    switch (name) {
      case 'time':
        return { type: 'scalar', v: t / 1000 };
      case 'pi':
        return { type: 'scalar', v: Math.PI };
      case 'vector':
        return { type: 'vector', samples: [{ ls: LabelSet.EMPTY, v: this.scalarArg(e, 0, t), t }] };
      case 'scalar': {
        const v = this.vectorArg(e, 0, t);
        return { type: 'scalar', v: v.length === 1 ? (v[0]?.v ?? NaN) : NaN };
      }
      case 'round': {
        const to = e.args.length > 1 ? this.scalarArg(e, 1, t) : 1;
        return { type: 'vector', samples: unique(this.vectorArg(e, 0, t).map((s) => ({ ls: s.ls.withoutName(), v: roundTo(s.v, to), t }))) };
      }
      case 'clamp':
      case 'clamp_min':
      case 'clamp_max': {
        const vec = this.vectorArg(e, 0, t);
        const lo = name === 'clamp_max' ? -Infinity : this.scalarArg(e, 1, t);
        const hi = name === 'clamp' ? this.scalarArg(e, 2, t) : name === 'clamp_max' ? this.scalarArg(e, 1, t) : Infinity;
        if (name === 'clamp' && hi < lo) return { type: 'vector', samples: [] };
        const clampV = (v: number): number => {
          if (name === 'clamp_min') return Number.isNaN(lo) ? NaN : Math.max(lo, v);
          if (name === 'clamp_max') return Number.isNaN(hi) ? NaN : Math.min(hi, v);
          return Math.max(lo, Math.min(hi, v));
        };
        return { type: 'vector', samples: unique(vec.map((s) => ({ ls: s.ls.withoutName(), v: clampV(s.v), t }))) };
      }
      case 'timestamp': {
        // Straight on a selector, the sample's own time; otherwise the evaluation time
        // (Prometheus 2 looks through parentheses for this).
        let arg = e.args[0];
        while (arg?.kind === 'paren') arg = arg.expr;
        const own = arg?.kind === 'selector';
        return { type: 'vector', samples: unique(this.vectorArg(e, 0, t).map((s) => ({ ls: s.ls.withoutName(), v: (own ? s.t : t) / 1000, t }))) };
      }
      case 'absent': {
        if (this.vectorArg(e, 0, t).length > 0) return { type: 'vector', samples: [] };
        const arg = e.args[0];
        const ls = arg?.kind === 'selector' ? absentLabels(arg.matchers) : LabelSet.EMPTY;
        return { type: 'vector', samples: [{ ls, v: 1, t }] };
      }
      case 'absent_over_time': {
        const v = this.eval(e.args[0] ?? { kind: 'number', value: 0, invariant: true }, t);
        if (v.type === 'matrix' && v.series.length > 0) return { type: 'vector', samples: [] };
        const arg = e.args[0];
        const ls = arg?.kind === 'matrix' ? absentLabels(arg.selector.matchers) : LabelSet.EMPTY;
        return { type: 'vector', samples: [{ ls, v: 1, t }] };
      }
      case 'sort':
      case 'sort_desc': {
        const desc = name === 'sort_desc';
        // Prometheus sorts NaN first in both directions.
        const sorted = this.vectorArg(e, 0, t)
          .map((s) => ({ ls: s.ls, v: s.v, t }))
          .sort((a, b) => {
            if (Number.isNaN(a.v)) return Number.isNaN(b.v) ? 0 : -1;
            if (Number.isNaN(b.v)) return 1;
            return desc ? b.v - a.v : a.v - b.v;
          });
        return { type: 'vector', samples: sorted };
      }
      case 'histogram_count':
      case 'histogram_sum':
      case 'histogram_fraction':
        // Only native histograms have counts/sums/fractions; float samples give nothing.
        this.vectorArg(e, e.name === 'histogram_fraction' ? 2 : 0, t);
        return { type: 'vector', samples: [] };
      case 'histogram_quantile':
        return { type: 'vector', samples: histogramQuantile(this.scalarArg(e, 0, t), this.vectorArg(e, 1, t), t) };
      case 'label_replace':
        return { type: 'vector', samples: checkUnique(this.labelReplace(e, t)) };
      case 'label_join':
        return { type: 'vector', samples: checkUnique(this.labelJoin(e, t)) };
      default:
        throw new PromqlExecutionError(`function ${JSON.stringify(name)} is not implemented`);
    }
  }

  private vectorArg(e: CallNode, i: number, t: number): readonly Sample[] {
    const arg = e.args[i];
    if (arg === undefined) throw new PromqlExecutionError(`missing argument ${i + 1} of ${e.name}()`);
    return this.vectorOf(this.eval(arg, t));
  }

  private scalarArg(e: CallNode, i: number, t: number): number {
    const arg = e.args[i];
    if (arg === undefined) throw new PromqlExecutionError(`missing argument ${i + 1} of ${e.name}()`);
    return this.scalarOf(this.eval(arg, t));
  }

  private stringArg(e: CallNode, i: number, t: number): string {
    const arg = e.args[i];
    const v = arg === undefined ? undefined : this.eval(arg, t);
    if (v?.type !== 'string') throw new PromqlExecutionError(`argument ${i + 1} of ${e.name}() must be a string`);
    return v.s;
  }

  private rangeCall(e: CallNode, fn: RangeFunction, t: number): Sample[] {
    const matrixIndex = e.name === 'quantile_over_time' ? 1 : 0;
    const arg = e.args[matrixIndex];
    if (arg === undefined) throw new PromqlExecutionError(`missing range argument of ${e.name}()`);
    const { param, param2 } = this.rangeParams(e, t);
    let rangeMs: number;
    let offsetMs: number;
    let at: number | undefined;
    if (arg.kind === 'matrix') {
      rangeMs = arg.rangeMs;
      offsetMs = arg.selector.offsetMs;
      at = this.resolveAt(arg.selector.at);
    } else if (arg.kind === 'subquery') {
      rangeMs = arg.rangeMs;
      offsetMs = arg.offsetMs;
      at = this.resolveAt(arg.at);
    } else {
      throw new PromqlExecutionError(`${e.name}() needs a range vector selector or a subquery`);
    }
    const rangeEndMs = (at ?? t) - offsetMs;
    // Prometheus 2 rewrites `@` into an offset from the query start and anchors
    // predict_linear at the step time, i.e. the query start for an `@` selector.
    const ctx = { rangeStartMs: rangeEndMs - rangeMs, rangeEndMs, rangeMs, interceptMs: at === undefined ? t : this.queryStart, param, param2 };
    const keepName = e.name === 'last_over_time';
    const out: Sample[] = [];
    const visit = (s: RangeSeries): void => {
      const v = fn(s, ctx);
      if (v !== undefined) out.push({ ls: keepName ? s.ls : s.ls.withoutName(), v, t });
    };
    // A range selector is read in place, without building its windows first.
    if (arg.kind === 'matrix' && !arg.invariant) {
      this.eachWindow(arg, t, visit);
    } else {
      const windows = this.eval(arg, t);
      if (windows.type !== 'matrix') throw new PromqlExecutionError(`${e.name}() needs a range vector`);
      windows.series.forEach(visit);
    }
    return out;
  }

  /** The scalar parameters of a range function at `t`, checked as Prometheus checks them. */
  private rangeParams(e: CallNode, t: number): { param: number; param2: number } {
    let param = NaN;
    let param2 = NaN;
    if (e.name === 'predict_linear') param = this.scalarArg(e, 1, t);
    if (e.name === 'quantile_over_time') param = this.scalarArg(e, 0, t);
    if (e.name === 'double_exponential_smoothing') {
      param = this.scalarArg(e, 1, t);
      param2 = this.scalarArg(e, 2, t);
      if (!(param > 0 && param < 1)) throw new PromqlExecutionError(`invalid smoothing factor. Expected: 0 < sf < 1, got: ${param.toFixed(6)}`);
      if (!(param2 > 0 && param2 < 1)) throw new PromqlExecutionError(`invalid trend factor. Expected: 0 < tf < 1, got: ${param2.toFixed(6)}`);
    }
    return { param, param2 };
  }

  /**
   * The values of `e` at every step of the query, computed series by series rather than
   * step by step, or undefined when `e` does not qualify. Qualifying, outside subqueries:
   * - a range function over a plain range selector (no `@`), other arguments literals,
   *   whose output cannot hold duplicate label sets: each series' window slides forward
   *   with two indexes over its samples, and counters carry a reset prefix so `rate`
   *   does not rescan windows without a reset;
   * - `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar` over a qualifying
   *   node: group indexes are worked out once per series, not per step;
   * - `topk`/`bottomk` with the same k at every step, over a qualifying node.
   * Every value comes from the same arithmetic, in the same order, as step-by-step
   * evaluation, so results are identical; it saves the per-step cursor work, closures
   * and one sample object per series and step.
   */
  columnsOf(e: Expr): Columns | undefined {
    if (!this.columnar.has(e) || e.invariant) return undefined;
    if (this.columns.has(e)) return this.columns.get(e);
    let c: Columns | undefined;
    if (e.kind === 'call') c = this.rangeColumns(e);
    else if (e.kind === 'aggregate') c = this.aggregateColumns(e);
    this.columns.set(e, c);
    return c;
  }

  private rangeColumns(e: CallNode): Columns | undefined {
    const fn = RANGE_FUNCTIONS.get(e.name);
    if (fn === undefined) return undefined;
    const matrixIndex = e.name === 'quantile_over_time' ? 1 : 0;
    const arg = e.args[matrixIndex];
    if (arg?.kind !== 'matrix' || arg.invariant || arg.selector.at !== undefined) return undefined;
    if (!e.args.every((a) => a === arg || a.kind === 'number' || a.kind === 'string')) return undefined;
    const keepName = e.name === 'last_over_time';
    const sel = arg.selector;
    const rollup = this.rollupInputs.get(e);
    if (rollup !== undefined) return this.rollupColumns(e, arg, rollup);
    if (!keepName && this.uniqueWithoutName[sel.id] !== true) return undefined;
    const grid = this.grid;
    const n = grid.length;
    const { param, param2 } = this.rangeParams(e, grid[0] ?? 0);
    const data = this.data[sel.id] ?? [];
    const rows = data.map((s) => (keepName ? s.ls : s.ls.withoutName()));
    const vals = new Float64Array(data.length * n);
    const present = new Uint8Array(data.length * n);
    this.rawColumns(fn, e.name, arg, data, 0, { param, param2 }, vals, present);
    return new Columns(rows, n, vals, present);
  }

  /**
   * Fills `vals`/`present` (rows of `data`, in order) with `fn` over each series'
   * range windows at steps `fromStep`… of the grid.
   */
  private rawColumns(
    fn: RangeFunction,
    name: string,
    arg: MatrixNode,
    data: ReadonlyArray<FetchedSeries | undefined>,
    fromStep: number,
    params: { param: number; param2: number },
    vals: Float64Array,
    present: Uint8Array,
  ): void {
    const grid = this.grid;
    const n = grid.length;
    const { param, param2 } = params;
    const sel = arg.selector;
    const isCounter = name === 'rate' || name === 'increase';
    const rangeMs = arg.rangeMs;
    const offsetMs = sel.offsetMs;
    const ctx = { rangeStartMs: 0, rangeEndMs: 0, rangeMs, interceptMs: 0, param, param2 };
    for (let k = 0; k < data.length; k++) {
      const s = data[k];
      if (s === undefined) continue;
      this.check();
      const ts = s.ts;
      const len = ts.length;
      const w = { ls: s.ls, ts, vs: s.vs, from: 0, to: 0, resets: isCounter ? counterResets(s.vs) : undefined };
      let from = 0;
      let to = 0;
      const base = k * n;
      for (let j = fromStep; j < n; j++) {
        const t = grid[j] as number;
        const ref = t - offsetMs;
        const lo = ref - rangeMs;
        // Steps ascend, so both window edges only move forward.
        while (from < len && (ts[from] as number) < lo) from++;
        if (to < from) to = from;
        while (to < len && (ts[to] as number) <= ref) to++;
        if (to <= from) continue;
        w.from = from;
        w.to = to;
        ctx.rangeStartMs = lo;
        ctx.rangeEndMs = ref;
        ctx.interceptMs = t;
        const v = fn(w, ctx);
        if (v === undefined) continue;
        vals[base + j] = v;
        present[base + j] = 1;
      }
    }
  }

  /**
   * A rollup-served range function (see `planRollups` for when): steps before
   * `input.steps` from the tier's windows starting in `[t − R, t)`, later ones from raw
   * samples; rows are the union of both, in label order.
   *
   * Error bound against raw evaluation: the tier's windows cover `[t − R, t)`, so a
   * sample stamped exactly `t` is left out (at most one per series and step). Otherwise
   * `min`, `max`, `count`, `last` and `present_over_time` are exact; `sum` and `avg` are
   * exact up to floating-point rounding (partial sums are added in another order);
   * `quantile_over_time` is within the sketch's relative accuracy (1% by default, see the
   * store's sketch.ts) of a neighbouring rank of the exact answer, and leaves out NaN and
   * ±Inf samples.
   */
  private rollupColumns(e: CallNode, arg: MatrixNode, input: { source: RollupSource; steps: number; series: RollupSeriesData[] }): Columns {
    const keepName = e.name === 'last_over_time';
    const sel = arg.selector;
    const grid = this.grid;
    const n = grid.length;
    const q = e.name === 'quantile_over_time' ? this.scalarArg(e, 0, grid[0] ?? 0) : NaN;
    // Union of rollup and raw series by label set, in label order.
    const byKey = new Map<string, { ls: LabelSet; roll?: RollupSeriesData; raw?: FetchedSeries }>();
    for (const r of input.series) {
      const ls = LabelSet.from(r.labels);
      byKey.set(ls.key, { ls, roll: r });
    }
    for (const f of this.data[sel.id] ?? []) {
      const hit = byKey.get(f.ls.key);
      if (hit !== undefined) hit.raw = f;
      else byKey.set(f.ls.key, { ls: f.ls, raw: f });
    }
    const all = [...byKey.values()].sort((a, b) => compareLabelSets(a.ls, b.ls));
    const rows = all.map((x) => (keepName ? x.ls : x.ls.withoutName()));
    if (!keepName && new Set(rows.map((ls) => ls.key)).size !== rows.length) {
      throw new PromqlExecutionError('vector cannot contain metrics with the same labelset');
    }
    const vals = new Float64Array(rows.length * n);
    const present = new Uint8Array(rows.length * n);
    const rangeMs = arg.rangeMs;
    all.forEach((x, k) => {
      const ws = x.roll?.windows;
      if (ws === undefined) return;
      let a = 0;
      let b = 0;
      for (let j = 0; j < input.steps; j++) {
        const ref = (grid[j] as number) - sel.offsetMs;
        while (a < ws.length && (ws[a] as RollupWindowData).startMs < ref - rangeMs) a++;
        if (b < a) b = a;
        while (b < ws.length && (ws[b] as RollupWindowData).startMs < ref) b++;
        if (b <= a) continue;
        vals[k * n + j] = rollupValue(e.name, ws, a, b, q, input.source);
        present[k * n + j] = 1;
      }
    });
    if (input.steps < n) {
      const fn = RANGE_FUNCTIONS.get(e.name) as RangeFunction;
      const params = this.rangeParams(e, grid[0] ?? 0);
      this.rawColumns(fn, e.name, arg, all.map((x) => x.raw), input.steps, params, vals, present);
    }
    return new Columns(rows, n, vals, present);
  }

  private aggregateColumns(e: AggregateNode): Columns | undefined {
    const ranked = e.op === 'topk' || e.op === 'bottomk';
    if (!ranked && (e.param !== undefined || !NUMERIC_AGGREGATIONS.has(e.op))) return undefined;
    // k must be the same at every step (a literal, or an expression of literals).
    let k = 0;
    if (ranked) {
      if (e.param === undefined || !e.param.invariant) return undefined;
      const p = this.eval(e.param, this.grid[0] ?? 0);
      if (p.type !== 'scalar') return undefined;
      k = Math.trunc(p.v);
    }
    let inner = e.expr;
    while (inner.kind === 'paren') inner = inner.expr;
    const input = this.columnsOf(inner);
    if (input === undefined) return undefined;
    let cache = this.groupCaches.get(e);
    if (cache === undefined) {
      cache = new Map();
      this.groupCaches.set(e, cache);
    }
    if (ranked) return this.rankedColumns(e, input, k, cache);
    const index = new Map<string, number>();
    const rows: LabelSet[] = [];
    const groupOfRow = new Int32Array(input.rows.length);
    input.rows.forEach((ls, r) => {
      const gi = groupOf(e, ls, cache);
      let g = index.get(gi.key);
      if (g === undefined) {
        g = rows.length;
        index.set(gi.key, g);
        rows.push(gi.ls);
      }
      groupOfRow[r] = g;
    });
    const n = this.grid.length;
    const vals = new Float64Array(rows.length * n);
    const present = new Uint8Array(rows.length * n);
    const first = new Int32Array(rows.length * n);
    if (input.first === undefined && SIMPLE_AGGREGATIONS.has(e.op)) {
      this.simpleAggregate(e.op, input, groupOfRow, vals, present, first);
      return new Columns(rows, n, vals, present, first);
    }
    const states: Array<Group | undefined> = new Array<Group | undefined>(rows.length);
    // Numeric aggregations read only `v` of a sample: one scratch object serves them all.
    const scratch: { ls: LabelSet; v: number; t: number } = { ls: LabelSet.EMPTY, v: 0, t: 0 };
    const op = e.op;
    for (let j = 0; j < n; j++) {
      if ((++this.checks & 31) === 0) this.check();
      states.fill(undefined);
      const order = input.order(j);
      for (let p = 0; p < order.length; p++) {
        const r = order[p] as number;
        const g = groupOfRow[r] as number;
        scratch.v = input.vals[r * n + j] as number;
        const st = states[g];
        if (st === undefined) {
          states[g] = newGroup(op, rows[g] as LabelSet, scratch);
          first[g * n + j] = p;
        } else {
          addToGroup(op, st, scratch);
        }
      }
      for (let g = 0; g < rows.length; g++) {
        const st = states[g];
        if (st === undefined) continue;
        vals[g * n + j] = groupValue(op, st);
        present[g * n + j] = 1;
      }
    }
    return new Columns(rows, n, vals, present, first);
  }

  /**
   * `sum`, `count`, `min`, `max` and `group` over input whose steps list rows in row
   * order: one pass over the input row by row, each group's value per step kept in place.
   * Rows are still added to a group in the order step-by-step evaluation adds them (row
   * order within every step), so the arithmetic is the same as `addToGroup`'s; it skips
   * building each step's row list and a group state per step.
   */
  private simpleAggregate(op: string, input: Columns, groupOfRow: Int32Array, vals: Float64Array, present: Uint8Array, first: Int32Array): void {
    const n = input.steps;
    const inVals = input.vals;
    const inPresent = input.present;
    // Rows present so far at each step: a row's position in that step's vector.
    const seen = new Int32Array(n);
    for (let r = 0; r < input.rows.length; r++) {
      if ((++this.checks & 255) === 0) this.check();
      const base = r * n;
      const gb = (groupOfRow[r] as number) * n;
      for (let j = 0; j < n; j++) {
        if (inPresent[base + j] !== 1) continue;
        const v = inVals[base + j] as number;
        const p = (seen[j] as number) + 1;
        seen[j] = p;
        const at = gb + j;
        if (present[at] === 0) {
          present[at] = 1;
          first[at] = p - 1;
          vals[at] = op === 'count' || op === 'group' ? 1 : v;
          continue;
        }
        const cur = vals[at] as number;
        switch (op) {
          case 'sum':
            vals[at] = cur + v;
            break;
          case 'count':
            vals[at] = cur + 1;
            break;
          case 'max':
            if (cur < v || Number.isNaN(cur)) vals[at] = v;
            break;
          case 'min':
            if (cur > v || Number.isNaN(cur)) vals[at] = v;
            break;
          default:
            break;
        }
      }
    }
  }

  /**
   * `topk`/`bottomk` over all steps: rows are the input's (whole label sets are kept), each
   * present at the steps where it ranks among its group's best `k`. Per step, members
   * are offered in the input's order and kept by insertion, exactly as `aggregate` does,
   * and `first` records the step-by-step output order (groups by first appearance, each
   * best first) for any enclosing aggregation.
   */
  private rankedColumns(e: AggregateNode, input: Columns, k: number, cache: GroupCache): Columns {
    const rows = input.rows;
    const n = this.grid.length;
    const vals = new Float64Array(rows.length * n);
    const present = new Uint8Array(rows.length * n);
    const first = new Int32Array(rows.length * n);
    if (!(k >= 1)) return new Columns(rows, n, vals, present, first);
    const index = new Map<string, number>();
    const groupOfRow = new Int32Array(rows.length);
    rows.forEach((ls, r) => {
      const key = groupOf(e, ls, cache).key;
      let g = index.get(key);
      if (g === undefined) {
        g = index.size;
        index.set(key, g);
      }
      groupOfRow[r] = g;
    });
    const top = e.op === 'topk';
    // Per group, its best rows so far at this step, best first (as `aggregate` keeps them).
    const chosen: number[][] = Array.from({ length: index.size }, () => []);
    const seen = new Uint8Array(index.size);
    const groupOrder: number[] = [];
    const inVals = input.vals;
    for (let j = 0; j < n; j++) {
      if ((++this.checks & 31) === 0) this.check();
      groupOrder.length = 0;
      seen.fill(0);
      const order = input.order(j);
      for (let p = 0; p < order.length; p++) {
        const r = order[p] as number;
        const g = groupOfRow[r] as number;
        const list = chosen[g] as number[];
        if (seen[g] === 0) {
          seen[g] = 1;
          groupOrder.push(g);
          list.length = 0;
        }
        const v = inVals[r * n + j] as number;
        if (list.length === k) {
          if (rankCompare(top, v, inVals[(list[k - 1] as number) * n + j] as number) >= 0) continue;
          list.pop();
        }
        let i = list.length;
        while (i > 0 && rankCompare(top, v, inVals[(list[i - 1] as number) * n + j] as number) < 0) i--;
        list.splice(i, 0, r);
      }
      let pos = 0;
      for (const g of groupOrder) {
        for (const r of chosen[g] as number[]) {
          vals[r * n + j] = inVals[r * n + j] as number;
          present[r * n + j] = 1;
          first[r * n + j] = pos++;
        }
      }
    }
    return new Columns(rows, n, vals, present, first);
  }

  private labelReplace(e: CallNode, t: number): Sample[] {
    const vec = this.vectorArg(e, 0, t);
    const dst = this.stringArg(e, 1, t);
    const repl = this.stringArg(e, 2, t);
    const src = this.stringArg(e, 3, t);
    const pattern = this.stringArg(e, 4, t);
    if (!LABEL_NAME.test(dst)) throw new PromqlExecutionError(`invalid destination label name in label_replace(): ${dst}`);
    let re = this.regexCache.get(pattern);
    if (re === undefined) {
      try {
        re = goRegExp(pattern);
      } catch (err) {
        throw new PromqlExecutionError(`invalid regular expression in label_replace(): ${pattern}`, [], { cause: err });
      }
      this.regexCache.set(pattern, re);
    }
    const out: Sample[] = [];
    for (const s of vec) {
      const m = re.exec(s.ls.get(src));
      if (m === null) {
        out.push({ ls: s.ls, v: s.v, t });
        continue;
      }
      out.push({ ls: s.ls.with(dst, expandTemplate(repl, m)), v: s.v, t });
    }
    return out;
  }

  private labelJoin(e: CallNode, t: number): Sample[] {
    const vec = this.vectorArg(e, 0, t);
    const dst = this.stringArg(e, 1, t);
    const sep = this.stringArg(e, 2, t);
    if (!LABEL_NAME.test(dst)) throw new PromqlExecutionError(`invalid destination label name in label_join(): ${dst}`);
    const srcs: string[] = [];
    for (let i = 3; i < e.args.length; i++) {
      const src = this.stringArg(e, i, t);
      if (!LABEL_NAME.test(src)) throw new PromqlExecutionError(`invalid source label name in label_join(): ${src}`);
      srcs.push(src);
    }
    return vec.map((s) => ({ ls: s.ls.with(dst, srcs.map((n) => s.ls.get(n)).join(sep)), v: s.v, t }));
  }
}

const EMPTY_ARRAY = new Float64Array(0);

/** Aggregations whose per-step value is one number updated in place (see `simpleAggregate`). */
const SIMPLE_AGGREGATIONS: ReadonlySet<string> = new Set(['sum', 'count', 'min', 'max', 'group']);

/** One of {@link ROLLUP_FUNCTIONS} over rollup windows `[a, b)` (at least one). */
function rollupValue(name: string, ws: readonly RollupWindowData[], a: number, b: number, q: number, source: RollupSource): number {
  switch (name) {
    case 'count_over_time': {
      let c = 0;
      for (let i = a; i < b; i++) c += (ws[i] as RollupWindowData).count;
      return c;
    }
    case 'sum_over_time':
    case 'avg_over_time': {
      let sum = 0;
      let c = 0;
      for (let i = a; i < b; i++) {
        sum += (ws[i] as RollupWindowData).sum;
        c += (ws[i] as RollupWindowData).count;
      }
      return name === 'sum_over_time' ? sum : sum / c;
    }
    case 'min_over_time':
    case 'max_over_time': {
      // NaN only when every sample was NaN, as Prometheus.
      const isMin = name === 'min_over_time';
      let m = NaN;
      for (let i = a; i < b; i++) {
        const w = ws[i] as RollupWindowData;
        const v = isMin ? w.min : w.max;
        if (Number.isNaN(m) || (isMin ? v < m : v > m)) m = v;
      }
      return m;
    }
    case 'last_over_time':
      return (ws[b - 1] as RollupWindowData).last;
    case 'present_over_time':
      return 1;
    case 'quantile_over_time': {
      if (Number.isNaN(q)) return NaN;
      if (q < 0) return -Infinity;
      if (q > 1) return Infinity;
      const sketches: unknown[] = [];
      for (let i = a; i < b; i++) sketches.push((ws[i] as RollupWindowData).sketch);
      return source.quantile(sketches, q);
    }
    default:
      throw new PromqlExecutionError(`${name}() cannot be answered from rollups`);
  }
}

/**
 * A node's value at every step: `rows` label sets, and per row and step (row-major,
 * `r * steps + j`) a value and whether it is present. `first`, for aggregations, holds
 * the position of each group's first member in the step's input: step-by-step
 * evaluation lists groups in that order, and callers above (another aggregation's
 * float sums) must see the same order.
 */
class Columns {
  constructor(
    readonly rows: readonly LabelSet[],
    readonly steps: number,
    readonly vals: Float64Array,
    readonly present: Uint8Array,
    /** Per row and step, the position in the step's vector; absent: rows in row order. */
    readonly first?: Int32Array,
  ) {}

  /** Rows present at step j, in the order step-by-step evaluation lists them. */
  order(j: number): number[] {
    const out: number[] = [];
    const n = this.steps;
    for (let r = 0; r < this.rows.length; r++) if (this.present[r * n + j] === 1) out.push(r);
    const first = this.first;
    if (first !== undefined) {
      for (let i = 1; i < out.length; i++) {
        if ((first[(out[i] as number) * n + j] as number) < (first[(out[i - 1] as number) * n + j] as number)) {
          out.sort((a, b) => (first[a * n + j] as number) - (first[b * n + j] as number));
          break;
        }
      }
    }
    return out;
  }

  /** The step's instant vector. */
  vectorAt(j: number, t: number): Sample[] {
    const out: Sample[] = [];
    for (const r of this.order(j)) out.push({ ls: this.rows[r] as LabelSet, v: this.vals[r * this.steps + j] as number, t });
    return out;
  }
}

/**
 * Per selector and series, where the window ended at the previous evaluation. Range
 * query steps move forward, so each series' window usually moves by a few samples:
 * scanning on from the last position beats a fresh binary search. When the window moves
 * back (an `@` or a subquery re-evaluating earlier times), it falls back to binary search.
 */
class Cursors {
  private readonly from: Int32Array;
  private readonly to: Int32Array;
  private lastLo = -Infinity;
  private lastHi = -Infinity;
  private forward = false;

  constructor(n: number) {
    this.from = new Int32Array(n);
    this.to = new Int32Array(n);
  }

  /** Starts an evaluation of the window [lo, hi]. */
  begin(lo: number, hi: number): void {
    this.forward = lo >= this.lastLo && hi >= this.lastHi;
    this.lastLo = lo;
    this.lastHi = hi;
  }

  /** Index of series k's first sample at or after `lo`. */
  start(k: number, ts: ArrayLike<number>, lo: number): number {
    let i = this.forward ? (this.from[k] ?? 0) : lowerBound(ts, lo);
    if (this.forward) {
      let steps = 0;
      while (i < ts.length && (ts[i] ?? 0) < lo && steps++ < 8) i++;
      if (i < ts.length && (ts[i] ?? 0) < lo) i = lowerBound(ts, lo, i);
    }
    this.from[k] = i;
    return i;
  }

  /** Index after series k's last sample at or before `hi`. */
  end(k: number, ts: ArrayLike<number>, hi: number): number {
    let i = this.forward ? (this.to[k] ?? 0) : upperBound(ts, hi);
    if (this.forward) {
      let steps = 0;
      while (i < ts.length && (ts[i] ?? 0) <= hi && steps++ < 8) i++;
      if (i < ts.length && (ts[i] ?? 0) <= hi) i = upperBound(ts, hi, i);
    }
    this.to[k] = i;
    return i;
  }
}

/** Prometheus refuses a step whose vector has two elements with the same labels. */
function checkUnique(samples: Sample[]): Sample[] {
  if (samples.length < 2) return samples;
  const seen = new Set<string>();
  for (const s of samples) {
    const k = s.ls.key;
    if (seen.has(k)) throw new PromqlExecutionError('vector cannot contain metrics with the same labelset');
    seen.add(k);
  }
  return samples;
}

/**
 * A fetched series in typed arrays, sorted, one sample per timestamp (the last written
 * wins). Typed arrays already in that form are kept, not copied.
 */
function prepareSeries(s: SelectedSeries, forRange: boolean): FetchedSeries {
  const srcT = s.timestampsMs;
  const srcV = s.values;
  const n = srcT.length;
  const ls = LabelSet.from(s.labels);
  // Fast path, the usual store answer: strictly increasing times, no staleness markers
  // to drop. A plain copy, no per-sample branching.
  let strict = true;
  for (let i = 1; i < n; i++) {
    if (!(srcT[i] > srcT[i - 1])) {
      strict = false;
      break;
    }
  }
  let anyNaN = false;
  if (forRange) {
    for (let i = 0; i < n; i++) {
      if (srcV[i] !== srcV[i]) {
        anyNaN = true;
        break;
      }
    }
  }
  if (strict && !anyNaN) {
    if (srcT instanceof Float64Array && srcV instanceof Float64Array) return { ls, ts: srcT, vs: srcV };
    const ts = new Float64Array(n);
    const vs = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      ts[i] = srcT[i];
      vs[i] = srcV[i];
    }
    return { ls, ts, vs };
  }
  let order: number[] | undefined;
  if (!strict) order = Array.from({ length: n }, (_, i) => i).sort((a, b) => srcT[a] - srcT[b] || a - b);
  const ts = new Float64Array(n);
  const vs = new Float64Array(n);
  let len = 0;
  for (let j = 0; j < n; j++) {
    const i = order === undefined ? j : order[j];
    const time = srcT[i];
    const v = srcV[i];
    // Range selectors never see staleness markers; instant selectors need them to end a series.
    if (forRange && isStaleNaN(v)) continue;
    if (len > 0 && ts[len - 1] === time) {
      vs[len - 1] = v;
      continue;
    }
    ts[len] = time;
    vs[len] = v;
    len++;
  }
  return { ls, ts: ts.subarray(0, len), vs: vs.subarray(0, len) };
}

function toLabels(ls: LabelSet): Label[] {
  return ls.labels.map((l) => ({ name: l.name, value: l.value }));
}

function checkTime(name: string, v: number): void {
  if (!Number.isFinite(v)) throw new PromqlExecutionError(`${name} must be a finite time in milliseconds, got ${v}`);
}

/**
 * Evaluates `expr` at one time, like Prometheus' `/api/v1/query`.
 *
 * @throws PromqlSyntaxError for a query that does not parse or type-check.
 * @throws PromqlExecutionError for a query that cannot be evaluated on this data.
 * @throws QueryLimitError, QueryTimeoutError when a limit is crossed.
 */
export async function instantQuery(q: Queryable, expr: string, timeMs: number, opts: EngineOptions = {}): Promise<PromValue> {
  checkTime('time', timeMs);
  const parsed = parseQuery(expr);
  const ev = new Evaluator(timeMs, timeMs, opts.lookbackDeltaMs ?? DEFAULT_LOOKBACK_MS, opts);
  ev.check();
  await ev.fetch(q, parsed.root, timeMs, timeMs);
  ev.grid = Float64Array.of(timeMs);
  ev.stepIndex = 0;
  const v = ev.eval(parsed.root, timeMs);
  switch (v.type) {
    case 'scalar':
      return { type: 'scalar', value: [timeMs, v.v] };
    case 'string':
      return { type: 'string', value: [timeMs, v.s] };
    case 'vector':
      ev.addSamples(v.samples.length);
      return { type: 'vector', value: v.samples.map((s) => ({ labels: toLabels(s.ls), timestampMs: timeMs, value: s.v })) };
    case 'matrix': {
      const value = v.series.map((s) => {
        const points: Array<[number, number]> = [];
        for (let i = s.from; i < s.to; i++) points.push([s.ts[i] ?? 0, s.vs[i] ?? 0]);
        return { labels: toLabels(s.ls), points };
      });
      ev.addSamples(value.reduce((n, s) => n + s.points.length, 0));
      return { type: 'matrix', value };
    }
  }
}

/**
 * Evaluates `expr` at `startMs`, `startMs + stepMs`, … up to `endMs`, like Prometheus'
 * `/api/v1/query_range`. The result is a matrix sorted by labels (as Prometheus sorts it);
 * a scalar expression gives one series without labels.
 *
 * @throws PromqlSyntaxError for a query that does not parse or type-check, or is not of
 * type scalar or instant vector.
 * @throws PromqlExecutionError for bad times or a query that cannot be evaluated on this data.
 * @throws QueryLimitError, QueryTimeoutError when a limit is crossed.
 */
export async function rangeQuery(
  q: Queryable,
  expr: string,
  startMs: number,
  endMs: number,
  stepMs: number,
  opts: EngineOptions = {},
): Promise<PromValue & { type: 'matrix' }> {
  checkTime('start', startMs);
  checkTime('end', endMs);
  if (!(stepMs > 0) || !Number.isFinite(stepMs)) throw new PromqlExecutionError(`step must be a positive duration, got ${stepMs} ms`);
  if (endMs < startMs) throw new PromqlExecutionError('end timestamp must not be before start time');
  if ((endMs - startMs) / stepMs > MAX_POINTS_PER_SERIES) {
    throw new PromqlExecutionError(`exceeded maximum resolution of ${MAX_POINTS_PER_SERIES.toLocaleString('en-US')} points per timeseries. Try decreasing the query resolution (?step=XX)`);
  }
  const parsed = parseQuery(expr);
  const type = typeOf(parsed.root);
  if (type !== 'scalar' && type !== 'vector') {
    const documented = type === 'matrix' ? 'range vector' : type;
    // Prometheus rejects this before evaluating, as bad input (bad_data).
    throw new PromqlSyntaxError(`invalid expression type ${JSON.stringify(documented)} for range query, must be Scalar or instant Vector`, 0, expr);
  }
  const ev = new Evaluator(startMs, endMs, opts.lookbackDeltaMs ?? DEFAULT_LOOKBACK_MS, opts);
  ev.check();
  const times: number[] = [];
  for (let t = startMs; t <= endMs; t += stepMs) times.push(t);
  ev.grid = Float64Array.from(times);
  await ev.fetch(q, parsed.root, startMs, endMs, stepMs);
  let root = parsed.root;
  while (root.kind === 'paren') root = root.expr;
  const cols = ev.columnsOf(root);
  if (cols !== undefined) {
    // Evaluated for all steps at once: read the matrix straight out of the columns.
    const n = times.length;
    const out: Array<{ ls: LabelSet; points: Array<[number, number]> }> = [];
    cols.rows.forEach((ls, r) => {
      const points: Array<[number, number]> = [];
      for (let j = 0; j < n; j++) if (cols.present[r * n + j] === 1) points.push([times[j] as number, cols.vals[r * n + j] as number]);
      if (points.length > 0) out.push({ ls, points });
    });
    ev.addSamples(out.reduce((acc, s) => acc + s.points.length, 0));
    out.sort((a, b) => compareLabelSets(a.ls, b.ls));
    return { type: 'matrix', value: out.map((s) => ({ labels: toLabels(s.ls), points: s.points })) };
  }
  const series = new Map<string, { ls: LabelSet; points: Array<[number, number]> }>();
  for (let j = 0; j < times.length; j++) {
    const t = times[j] as number;
    ev.stepIndex = j;
    ev.check();
    const v = ev.eval(parsed.root, t);
    if (v.type === 'scalar') {
      let s = series.get('');
      if (s === undefined) {
        s = { ls: LabelSet.EMPTY, points: [] };
        series.set('', s);
      }
      s.points.push([t, v.v]);
      ev.addSamples(1);
      continue;
    }
    if (v.type !== 'vector') throw new PromqlExecutionError(`range query step produced a ${v.type}`);
    ev.addSamples(v.samples.length);
    for (const smp of v.samples) {
      let s = series.get(smp.ls.key);
      if (s === undefined) {
        s = { ls: smp.ls, points: [] };
        series.set(smp.ls.key, s);
      }
      s.points.push([t, smp.v]);
    }
  }
  const out = [...series.values()].sort((a, b) => compareLabelSets(a.ls, b.ls));
  return { type: 'matrix', value: out.map((s) => ({ labels: toLabels(s.ls), points: s.points })) };
}

/** Prometheus' `labels.Compare`: label by label, name then value, shorter first. */
function compareLabelSets(a: LabelSet, b: LabelSet): number {
  const n = Math.min(a.labels.length, b.labels.length);
  for (let i = 0; i < n; i++) {
    const x = a.labels[i];
    const y = b.labels[i];
    if (x === undefined || y === undefined) break;
    if (x.name !== y.name) return x.name < y.name ? -1 : 1;
    if (x.value !== y.value) return x.value < y.value ? -1 : 1;
  }
  return a.labels.length - b.labels.length;
}
