/**
 * PromQL evaluation for one tenant, shared by `QueryService` and the Prometheus HTTP API so
 * both apply the same limits: the engine reads through a tenant-scoped view of the store,
 * and every query carries the configured series, sample, time and resolution limits.
 */
import type { Label, Matcher } from '../../libs/model/index.js';
import {
  instantQuery,
  rangeQuery,
  type EngineOptions,
  type PromValue,
  type Queryable,
  type RollupSource,
} from '../../libs/promql/index.js';
import { InvalidArgumentError } from '../../libs/runtime/errors.js';
import { QuantileSketch } from '../../libs/store/index.js';
import type { MetricStore, RollupStore } from '../../libs/store/index.js';
import type { QueryLimits } from './config.js';

/** Prometheus' message for a range query with too many points per series. */
export function resolutionMessage(maxPoints: number): string {
  return `exceeded maximum resolution of ${maxPoints.toLocaleString('en-US')} points per timeseries. Try decreasing the query resolution (?step=XX)`;
}

/**
 * A range query asks for more points per series than `query.maxRangePoints`; the message is
 * Prometheus' own. Maps to `invalid_argument` (RPC) and `bad_data` (HTTP).
 */
export class ResolutionError extends InvalidArgumentError {
  constructor(readonly maxPoints: number) {
    super(resolutionMessage(maxPoints), [{ field: 'step', description: `at most query.maxRangePoints=${maxPoints} points per series` }]);
  }
}

/**
 * The store, read as one tenant, within the query limits. A store with rollup tiers also
 * offers them to the engine: range queries whose step spans a tier's windows read the
 * coarsest such tier (`pickTier`) for the functions it can answer, up to where the
 * compactor has caught up (see `rollupColumns` in libs/promql/engine.ts for which
 * functions and the error bound).
 */
export function tenantQueryable(store: MetricStore, tenant: string, limits: QueryLimits, now: () => number = Date.now): Queryable {
  const selectLimits = { maxSeries: limits.maxSeries, maxSamples: limits.maxSamples };
  const q: Queryable = {
    select: (matchers: readonly Matcher[], startMs: number, endMs: number) => store.selectColumns(tenant, matchers, startMs, endMs, selectLimits),
  };
  if (!isRollupStore(store) || store.retention.tiers.length === 0) return q;
  const rollups: RollupSource<QuantileSketch> = {
    async plan(stepMs, fromMs) {
      const resolutionMs = store.pickTier(stepMs, now() - fromMs);
      if (resolutionMs === 0) return undefined;
      return { resolutionMs, completeBeforeMs: await store.rollupsCompleteBefore(tenant) };
    },
    select: (matchers, startMs, endMs, resolutionMs) => store.selectRollup(tenant, matchers, startMs, endMs, resolutionMs, selectLimits),
    quantile(sketches, q) {
      const first = sketches[0];
      if (first === undefined) return NaN;
      const merged = new QuantileSketch(first.alpha);
      for (const s of sketches) merged.merge(s);
      return merged.quantile(q);
    },
  };
  return { ...q, rollups };
}

function isRollupStore(store: MetricStore): store is RollupStore {
  const s = store as Partial<RollupStore>;
  return typeof s.selectRollup === 'function' && typeof s.rollupsCompleteBefore === 'function' && typeof s.pickTier === 'function' && s.retention !== undefined;
}

/** Evaluates PromQL for tenants of one store under the configured limits. */
export class Querier {
  constructor(
    readonly store: MetricStore,
    readonly limits: QueryLimits,
  ) {}

  #options(signal?: AbortSignal, timeoutMs?: number): EngineOptions {
    return {
      lookbackDeltaMs: this.limits.lookbackDeltaMs,
      maxSamples: this.limits.maxSamples,
      maxSeries: this.limits.maxSeries,
      // A caller may ask for less time than configured (Prometheus' `timeout`), never more.
      timeoutMs: Math.min(this.limits.timeoutMs, timeoutMs ?? Infinity),
      signal,
    };
  }

  /** An instant query at `timeMs`. */
  instant(tenant: string, expr: string, timeMs: number, signal?: AbortSignal, timeoutMs?: number): Promise<PromValue> {
    return instantQuery(tenantQueryable(this.store, tenant, this.limits), expr, timeMs, this.#options(signal, timeoutMs));
  }

  /**
   * A range query. Checks the resolution limit first, as Prometheus does, so a request for
   * too many points fails before any data is read.
   */
  range(tenant: string, expr: string, startMs: number, endMs: number, stepMs: number, signal?: AbortSignal, timeoutMs?: number): Promise<PromValue & { type: 'matrix' }> {
    if ((endMs - startMs) / stepMs > this.limits.maxRangePoints) throw new ResolutionError(this.limits.maxRangePoints);
    return rangeQuery(tenantQueryable(this.store, tenant, this.limits), expr, startMs, endMs, stepMs, this.#options(signal, timeoutMs));
  }

  /**
   * Label sets of the series matching any of the selectors in the range, sorted and
   * de-duplicated. A series-only read: no samples leave the store, so its cost follows the
   * matching series rather than the time range, and only the series limit applies.
   */
  async series(tenant: string, selectors: readonly (readonly Matcher[])[], startMs: number, endMs: number): Promise<Label[][]> {
    const seen = new Map<string, Label[]>();
    for (const matchers of selectors) {
      const found = await this.store.series(tenant, matchers, startMs, endMs, { maxSeries: this.limits.maxSeries });
      for (const labels of found) seen.set(JSON.stringify(labels), labels);
    }
    return [...seen.values()].sort(compareLabelSets);
  }
}

/** Orders label sets like Prometheus' `labels.Compare`: name by name, then value, then length. */
export function compareLabelSets(a: readonly Label[], b: readonly Label[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.name !== y.name) return x.name < y.name ? -1 : 1;
    if (x.value !== y.value) return x.value < y.value ? -1 : 1;
  }
  return a.length - b.length;
}
