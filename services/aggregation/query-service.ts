/**
 * The QueryService implementation. Every read is scoped to the caller's tenant. PromQL
 * evaluation (Query, QueryRange) is not built yet and answers `unimplemented`.
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
} from '../../libs/contracts/telemesh/query/v1/query_service_pb.js';
import type { Matcher } from '../../libs/model/index.js';
import { parseSelector, PromqlSyntaxError } from '../../libs/promql/index.js';
import { requirePrincipal } from '../../libs/runtime/auth/index.js';
import { InvalidArgumentError, LimitExceededError } from '../../libs/runtime/errors.js';
import { type MetricStore, StoreLimitError } from '../../libs/store/index.js';
import type { QueryLimits } from './config.js';
import { matchersFromWire, seriesToWire } from './convert.js';

const HOUR_MS = 3_600_000;

/** Dependencies of {@link QueryServiceImpl}. */
export interface QueryDeps {
  readonly store: MetricStore;
  readonly limits: QueryLimits;
  readonly now?: () => number;
}

/** Implements `telemesh.query.v1.QueryService` (the parts built so far). */
export class QueryServiceImpl implements Partial<ServiceImpl<typeof QueryService>> {
  readonly #deps: QueryDeps;

  constructor(deps: QueryDeps) {
    this.#deps = deps;
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

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StoreLimitError) throw new LimitExceededError(err.message, undefined, { cause: err });
    throw err;
  }
}
