/**
 * The Prometheus-compatible HTTP API on the HTTP port, so Grafana's Prometheus data source
 * and `promtool query` work against Telemesh unchanged: `/api/v1/query`, `query_range`,
 * `series`, `labels`, `label/<name>/values`, `metadata`, `query_exemplars` and
 * `status/buildinfo|flags`, by GET or POST form, answering Prometheus' JSON envelope
 * `{status, data, errorType, error, warnings}` with its error types and status codes.
 *
 * Unlike Prometheus every endpoint needs a bearer token (the `/api/v1/*` entries of the
 * access table), and every read is scoped to the token's tenant.
 */
import type { Logger } from '../../libs/runtime/logger.js';
import { isValidLabelName, type Matcher } from '../../libs/model/index.js';
import { parseSelector, PromqlExecutionError, PromqlSyntaxError, QueryTimeoutError } from '../../libs/promql/index.js';
import { authenticateHttp, defaultAccessPolicy, type AccessPolicy, type Principal, type TokenVerifier } from '../../libs/runtime/auth/index.js';
import {
  InvalidArgumentError,
  LimitExceededError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from '../../libs/runtime/errors.js';
import { readBody } from '../../libs/runtime/http.js';
import type { HttpRequest, HttpResponse, HttpRoute } from '../../libs/runtime/server.js';
import { durationParam, labelSetsJson, MAX_TIME_MS, MIN_TIME_MS, ParamError, requiredTimeParam, resultJson, timeParam } from './prom-format.js';
import type { Querier } from './querier.js';

/** The Prometheus API version whose behaviour this API reproduces (reported by buildinfo). */
export const PROMETHEUS_COMPAT_VERSION = '2.42.0';

/** Dependencies of {@link prometheusApiRoutes}. */
export interface PromApiDeps {
  readonly querier: Querier;
  readonly verifier: TokenVerifier;
  readonly logger: Logger;
  /** Largest accepted form body, bytes. */
  readonly maxRequestBytes: number;
  /** Telemesh's own version, reported beside the compatibility version. */
  readonly version: string;
  readonly policy?: AccessPolicy;
  readonly now?: () => number;
}

/** Prometheus' error types, with the HTTP status each is sent with. */
const ERROR_STATUS = {
  bad_data: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  execution: 422,
  internal: 500,
  timeout: 503,
  unavailable: 503,
} as const;
type ErrorType = keyof typeof ERROR_STATUS;

/** An error answered in Prometheus' envelope. */
class ApiError extends Error {
  constructor(
    readonly type: ErrorType,
    message: string,
  ) {
    super(message);
  }
}

type Handler = (params: URLSearchParams, principal: Principal, signal: AbortSignal, path: string) => Promise<unknown>;

/** The routes to register with `RpcServer.registerHttp`. */
export function prometheusApiRoutes(deps: PromApiDeps): HttpRoute[] {
  const { querier } = deps;
  const now = deps.now ?? Date.now;
  const methods = ['GET', 'POST'];

  const handlers: Array<[path: string, handler: Handler]> = [
    [
      '/api/v1/query',
      async (params, p, signal) => {
        const time = timeParam(params, 'time', now());
        const timeout = optionalTimeout(params);
        return resultJson(await querier.instant(p.tenant, requiredQuery(params), time, signal, timeout));
      },
    ],
    [
      '/api/v1/query_range',
      async (params, p, signal) => {
        const start = requiredTimeParam(params, 'start');
        const end = requiredTimeParam(params, 'end');
        if (end < start) throw new ParamError('end', 'end timestamp must not be before start time');
        const step = durationParam(params, 'step');
        if (step <= 0) throw new ParamError('step', 'zero or negative query resolution step widths are not accepted. Try a positive integer');
        const timeout = optionalTimeout(params);
        return resultJson(await querier.range(p.tenant, requiredQuery(params), start, end, step, signal, timeout));
      },
    ],
    [
      '/api/v1/series',
      async (params, p) => {
        const selectors = matchParams(params);
        if (selectors.length === 0) throw new ApiError('bad_data', 'no match[] parameter provided');
        const [start, end] = timeRange(params);
        if (end < start) return [];
        return labelSetsJson(await querier.series(p.tenant, selectors, start, end));
      },
    ],
    [
      '/api/v1/labels',
      async (params, p) => {
        const [start, end] = timeRange(params);
        if (end < start) return [];
        return eachSelector(matchParams(params), (m) => querier.store.labelNames(p.tenant, m, start, end));
      },
    ],
    [
      '/api/v1/label/',
      async (params, p, _signal, path) => {
        const m = /^\/api\/v1\/label\/([^/]+)\/values$/.exec(path);
        if (!m) throw new ApiError('not_found', `no such endpoint ${path}`);
        let name: string;
        try {
          name = decodeURIComponent(m[1]!);
        } catch {
          throw new ApiError('bad_data', `invalid label name: ${JSON.stringify(m[1])}`);
        }
        if (!isValidLabelName(name)) throw new ApiError('bad_data', `invalid label name: ${JSON.stringify(name)}`);
        const [start, end] = timeRange(params);
        if (end < start) return [];
        return eachSelector(matchParams(params), (sel) => querier.store.labelValues(p.tenant, name, sel, start, end));
      },
    ],
    // Telemesh keeps no metric metadata (TYPE/HELP/UNIT) yet: an empty answer is what
    // Prometheus gives for metrics it has no metadata for, and Grafana copes with it.
    ['/api/v1/metadata', async () => ({})],
    // Exemplars are not stored; Grafana asks when the exemplar toggle is on.
    ['/api/v1/query_exemplars', async () => []],
    [
      '/api/v1/status/buildinfo',
      async () => ({
        // Grafana reads the version to pick the features it may use; report the Prometheus
        // API level this endpoint reproduces, and our own version beside it.
        version: PROMETHEUS_COMPAT_VERSION,
        revision: '',
        branch: '',
        buildUser: '',
        buildDate: '',
        goVersion: '',
        application: `telemesh ${deps.version}`,
      }),
    ],
    [
      '/api/v1/status/flags',
      async () => ({
        'query.lookback-delta': `${querier.limits.lookbackDeltaMs / 1000}s`,
        'query.max-samples': String(querier.limits.maxSamples),
        'query.timeout': `${querier.limits.timeoutMs / 1000}s`,
      }),
    ],
  ];

  return handlers.map(([path, handler]) => ({
    path,
    methods,
    handler: (req: HttpRequest, res: HttpResponse) => serve(req, res, handler, deps),
  }));
}

async function serve(req: HttpRequest, res: HttpResponse, handler: Handler, deps: PromApiDeps): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const abort = new AbortController();
  // A client that goes away (Grafana cancelling a panel) stops the query it asked for.
  res.once('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  try {
    const principal = await authenticateHttp({ authorization: bearerFrom(req.headers.authorization) }, url.pathname, deps.verifier, deps.policy ?? defaultAccessPolicy, { logger: deps.logger });
    if (!principal) throw new ApiError('internal', 'endpoint has no tenant');
    const params = await formParams(req, url, deps.maxRequestBytes);
    const data = await handler(params, principal, abort.signal, url.pathname);
    send(res, 200, { status: 'success', data });
  } catch (err) {
    const apiErr = toApiError(err);
    if (apiErr.type === 'internal') deps.logger.error({ err, path: url.pathname }, 'prometheus api request failed');
    const headers: Record<string, string> = apiErr.type === 'unauthorized' ? { 'www-authenticate': 'Bearer' } : {};
    send(res, ERROR_STATUS[apiErr.type], { status: 'error', errorType: apiErr.type, error: apiErr.message }, headers);
  }
}

function send(res: HttpResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

/** Maps a failure to Prometheus' error types; causes of internal errors are logged, not sent. */
function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ParamError) return new ApiError('bad_data', err.message);
  if (err instanceof PromqlSyntaxError) return new ApiError('bad_data', `invalid parameter "query": ${err.message}`);
  if (err instanceof UnauthenticatedError) return new ApiError('unauthorized', err.message);
  if (err instanceof PermissionDeniedError) return new ApiError('forbidden', err.message);
  // Well-formed but not evaluable on this data (many-to-many matching, duplicate series).
  if (err instanceof PromqlExecutionError) return new ApiError('execution', err.message);
  if (err instanceof InvalidArgumentError) return new ApiError('bad_data', err.message);
  if (err instanceof QueryTimeoutError) return new ApiError('timeout', err.message);
  // Limits crossed while evaluating: Prometheus answers "too many samples" as execution.
  if (err instanceof LimitExceededError) return new ApiError('execution', err.message);
  if (err instanceof UnavailableError) return new ApiError('unavailable', err.message);
  return new ApiError('internal', 'internal error');
}

/**
 * The bearer credential of a request. Basic auth is read as `<anything>:<token>`, because
 * some Prometheus clients can only send credentials that way (promtool 2.42's `query
 * instant` sends the URL's user info); the token is verified exactly like a bearer token.
 */
function bearerFrom(header: string | undefined): string | undefined {
  const m = /^basic\s+(\S+)$/i.exec(header ?? '');
  if (!m) return header;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? header : `Bearer ${decoded.slice(colon + 1)}`;
}

/** Query string and, for POST, the urlencoded body, like Go's `Request.ParseForm`. */
async function formParams(req: HttpRequest, url: URL, maxBytes: number): Promise<URLSearchParams> {
  const params = new URLSearchParams();
  if (req.method === 'POST') {
    const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const body = (await readBody(req, maxBytes, 'server.maxRequestBytes')).toString('utf8');
    if (type === 'application/x-www-form-urlencoded') {
      for (const [k, v] of new URLSearchParams(body)) params.append(k, v);
    } else if (type !== '' && body.length > 0) {
      throw new ApiError('bad_data', `unsupported content type ${JSON.stringify(type)}: send application/x-www-form-urlencoded`);
    }
  }
  // Body values come first, as Go's ParseForm puts them first for FormValue.
  for (const [k, v] of url.searchParams) params.append(k, v);
  return params;
}

function requiredQuery(params: URLSearchParams): string {
  return params.get('query') ?? '';
}

function optionalTimeout(params: URLSearchParams): number | undefined {
  const raw = params.get('timeout');
  if (raw === null || raw === '') return undefined;
  return durationParam(params, 'timeout');
}

/** `start` and `end` of the metadata endpoints; an inverted range selects nothing, as in Prometheus. */
function timeRange(params: URLSearchParams): [number, number] {
  return [timeParam(params, 'start', MIN_TIME_MS), timeParam(params, 'end', MAX_TIME_MS)];
}

function matchParams(params: URLSearchParams): Matcher[][] {
  return params.getAll('match[]').map((s) => {
    try {
      return parseSelector(s);
    } catch (err) {
      if (err instanceof PromqlSyntaxError) throw new ParamError('match[]', err.message);
      throw err;
    }
  });
}

async function eachSelector(selectors: Matcher[][], read: (m: Matcher[]) => Promise<string[]>): Promise<string[]> {
  if (selectors.length === 0) return read([]);
  const all = new Set<string>();
  for (const m of selectors) for (const v of await read(m)) all.add(v);
  return [...all].sort();
}
