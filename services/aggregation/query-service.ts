/**
 * The QueryService implementation. Every read is scoped to the caller's tenant; PromQL
 * evaluation goes through the shared {@link Querier}, so the RPCs and the Prometheus HTTP
 * API apply the same limits.
 */
import { create } from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import {
  type QueryService,
  type SelectRequest,
  type SelectResponse,
  SelectResponseSchema,
  type LabelNamesRequest,
  type LabelNamesResponse,
  LabelNamesResponseSchema,
  type LabelValuesRequest,
  type LabelValuesResponse,
  LabelValuesResponseSchema,
  type QueryRequest,
  type QueryResponse,
  QueryResponseSchema,
  type QueryRangeRequest,
  type QueryRangeResponse,
  QueryRangeResponseSchema,
  type ListSeriesRequest,
  type ListSeriesResponse,
  ListSeriesResponseSchema,
} from '../../libs/contracts/telemesh/query/v1/query_service_pb.js';
import { ResultType, SeriesLabelsSchema } from '../../libs/contracts/telemesh/query/v1/query_pb.js';
import type { PromValue } from '../../libs/promql/index.js';
import { matchersFromWire, type Matcher } from '../../libs/model/index.js';
import { parseSelector, PromqlSyntaxError } from '../../libs/promql/index.js';
import { requirePrincipal } from '../../libs/runtime/auth/index.js';
import { InvalidArgumentError, LimitExceededError } from '../../libs/runtime/errors.js';
import { type MetricStore, StoreLimitError } from '../../libs/store/index.js';
import type { QueryLimits } from './config.js';
import { seriesToWire } from './convert.js';
import { Querier } from './querier.js';

const HOUR_MS = 3_600_000;

/** Dependencies of {@link QueryServiceImpl}. */
export interface QueryDeps {
  readonly store: MetricStore;
  readonly limits: QueryLimits;
  readonly now?: () => number;
}

/** Implements `telemesh.query.v1.QueryService`. */
export class QueryServiceImpl implements ServiceImpl<typeof QueryService> {
  readonly #deps: QueryDeps;
  readonly #querier: Querier;

  constructor(deps: QueryDeps) {
    this.#deps = deps;
    this.#querier = new Querier(deps.store, deps.limits);
  }

  /** Evaluates a PromQL expression at one instant (`time_ms` 0 means now). */
  async query(req: QueryRequest, ctx: HandlerContext): Promise<QueryResponse> {
    const { tenant } = requirePrincipal(ctx);
    const time = req.timeMs === 0n ? (this.#deps.now ?? Date.now)() : Number(req.timeMs);
    const value = await queryField(() => this.#querier.instant(tenant, req.query, time, ctx.signal));
    return create(QueryResponseSchema, valueToWire(value));
  }

  /** Evaluates a PromQL expression over `[start_ms, end_ms]` at `step_ms`. */
  async queryRange(req: QueryRangeRequest, ctx: HandlerContext): Promise<QueryRangeResponse> {
    const { tenant } = requirePrincipal(ctx);
    if (req.stepMs <= 0n) {
      throw new InvalidArgumentError('step_ms: must be positive', [{ field: 'step_ms', description: 'must be a positive number of milliseconds' }]);
    }
    const [start, end] = [Number(req.startMs), Number(req.endMs)];
    if (start > end) {
      throw new InvalidArgumentError(`end_ms: end ${end} is before start ${start}`, [{ field: 'end_ms', description: 'must not be before start_ms' }]);
    }
    const value = await queryField(() => this.#querier.range(tenant, req.query, start, end, Number(req.stepMs), ctx.signal));
    return create(QueryRangeResponseSchema, { resultType: ResultType.MATRIX, series: valueToWire(value).series });
  }

  /**
   * Label sets of the series matching any selector in the range, read without their
   * samples (the series limit applies, the sample limit does not).
   */
  async listSeries(req: ListSeriesRequest, ctx: HandlerContext): Promise<ListSeriesResponse> {
    const { tenant } = requirePrincipal(ctx);
    if (req.selectors.length === 0) {
      throw new InvalidArgumentError('selectors: at least one selector is required', [{ field: 'selectors', description: 'required' }]);
    }
    const selectors = req.selectors.map((sel, i) => selectorMatchers(sel, `selectors[${i}]`, false));
    const [start, end] = this.#range(req.startMs, req.endMs);
    const sets = await limited(() => this.#querier.series(tenant, selectors, start, end));
    return create(ListSeriesResponseSchema, { series: sets.map((labels) => create(SeriesLabelsSchema, { labels })) });
  }

  /** Raw samples of the series matching a selector, in a time range. */
  async select(req: SelectRequest, ctx: HandlerContext): Promise<SelectResponse> {
    const { tenant } = requirePrincipal(ctx);
    const matchers = [...selectorMatchers(req.selector, 'selector', true), ...matchersFromWire(req.matchers, 'matchers')];
    if (matchers.length === 0) {
      throw new InvalidArgumentError('selector: a selector or at least one matcher is required', [{ field: 'selector', description: 'required' }]);
    }
    const [start, end] = this.#range(req.startMs, req.endMs);
    const series = await limited(() =>
      this.#deps.store.select(tenant, matchers, start, end, { maxSeries: this.#deps.limits.maxSeries, maxSamples: this.#deps.limits.maxSamples }),
    );
    return create(SelectResponseSchema, { series: seriesToWire(series) });
  }

  /** Label names in a time range, optionally restricted by selectors. */
  async labelNames(req: LabelNamesRequest, ctx: HandlerContext): Promise<LabelNamesResponse> {
    const { tenant } = requirePrincipal(ctx);
    const [start, end] = this.#range(req.startMs, req.endMs);
    const names = await this.#eachSelector(req.selectors, (m) => this.#deps.store.labelNames(tenant, m, start, end));
    return create(LabelNamesResponseSchema, { names });
  }

  /** Values of one label in a time range, optionally restricted by selectors. */
  async labelValues(req: LabelValuesRequest, ctx: HandlerContext): Promise<LabelValuesResponse> {
    const { tenant } = requirePrincipal(ctx);
    if (req.name === '') throw new InvalidArgumentError('name: label name is required', [{ field: 'name', description: 'required' }]);
    const [start, end] = this.#range(req.startMs, req.endMs);
    const values = await this.#eachSelector(req.selectors, (m) => this.#deps.store.labelValues(tenant, req.name, m, start, end));
    return create(LabelValuesResponseSchema, { values });
  }

  /** Runs `read` once per selector (or once unrestricted) and merges the sorted results. */
  async #eachSelector(selectors: readonly string[], read: (m: Matcher[]) => Promise<string[]>): Promise<string[]> {
    if (selectors.length === 0) return read([]);
    const all = new Set<string>();
    for (const [i, sel] of selectors.entries()) for (const v of await read(selectorMatchers(sel, `selectors[${i}]`, false))) all.add(v);
    return [...all].sort();
  }

  #range(startMs: bigint, endMs: bigint): [number, number] {
    const end = endMs === 0n ? (this.#deps.now ?? Date.now)() : Number(endMs);
    const start = startMs === 0n ? end - HOUR_MS : Number(startMs);
    if (start > end) {
      throw new InvalidArgumentError(`start_ms: start ${start} is after end ${end}`, [{ field: 'start_ms', description: 'must not be after end_ms' }]);
    }
    return [start, end];
  }
}

function selectorMatchers(text: string, field: string, optional: boolean): Matcher[] {
  if (text.trim() === '' && optional) return [];
  try {
    return parseSelector(text);
  } catch (err) {
    if (err instanceof PromqlSyntaxError) throw new InvalidArgumentError(`${field}: ${err.message}`, [{ field, description: err.message }], { cause: err });
    throw err;
  }
}

/** Wire form of a PromQL value: a scalar is one series without labels. */
function valueToWire(v: PromValue): { resultType: ResultType; series: ReturnType<typeof seriesToWire>; stringValue?: string } {
  switch (v.type) {
    case 'scalar':
      return { resultType: ResultType.SCALAR, series: seriesToWire([{ labels: [], timestampsMs: [v.value[0]], values: [v.value[1]] }]) };
    case 'string':
      return { resultType: ResultType.STRING, series: [], stringValue: v.value[1] };
    case 'vector':
      return {
        resultType: ResultType.VECTOR,
        series: seriesToWire(v.value.map((s) => ({ labels: s.labels, timestampsMs: [s.timestampMs], values: [s.value] }))),
      };
    case 'matrix':
      return {
        resultType: ResultType.MATRIX,
        series: seriesToWire(v.value.map((s) => ({ labels: s.labels, timestampsMs: s.points.map((p) => p[0]), values: s.points.map((p) => p[1]) }))),
      };
  }
}

/** Runs a query; a syntax error names the `query` field, store limits become limit errors. */
async function queryField<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await limited(fn);
  } catch (err) {
    if (err instanceof PromqlSyntaxError) throw new InvalidArgumentError(`query: ${err.message}`, [{ field: 'query', description: err.message }], { cause: err });
    throw err;
  }
}

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StoreLimitError) throw new LimitExceededError(err.message, undefined, { cause: err });
    throw err;
  }
}
