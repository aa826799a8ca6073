/**
 * The server interceptors, outermost first: tracing (a SERVER span per RPC, continuing the
 * caller's W3C trace context), observation (metrics, one log line per failed call, the
 * request logger), error mapping (domain errors → Connect codes, in this one place), then
 * authentication (see ./auth). Plus the client-side trace propagation interceptor.
 */
import { Code, ConnectError, type Interceptor, type StreamResponse, type UnaryResponse } from '@connectrpc/connect';
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import type { DescMessage } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { TelemeshError, InvalidArgumentError, LimitExceededError, UnavailableError } from './errors.js';
import { principalKey } from './auth/index.js';
import { loggerKey } from './logger.js';
import { counter, histogram } from './metrics.js';

const headerGetter: TextMapGetter<Headers> = {
  get: (carrier, key) => carrier.get(key) ?? undefined,
  keys: (carrier) => [...carrier.keys()],
};
const headerSetter: TextMapSetter<Headers> = { set: (carrier, key, value) => carrier.set(key, value) };

type AnyResponse = UnaryResponse | StreamResponse;

/** Calls `done` once the response has been fully produced (after the last streamed message). */
function onComplete(res: AnyResponse, done: (err?: unknown) => void): AnyResponse {
  if (!res.stream) {
    done();
    return res;
  }
  const inner = res.message;
  async function* wrapped() {
    try {
      yield* inner;
      done();
    } catch (err) {
      done(err);
      throw err;
    }
  }
  return { ...res, message: wrapped() };
}

/** Maps any error to the ConnectError that goes on the wire; causes are logged, never sent. */
export function toConnectError(err: unknown, logger?: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof TelemeshError) {
    const code = (Code as unknown as Record<string, Code | undefined>)[
      err.kind.replace(/(^|_)([a-z])/g, (_m, _u, c: string) => c.toUpperCase())
    ];
    const headers = new Headers();
    if ((err instanceof LimitExceededError || err instanceof UnavailableError) && err.retryAfterMs !== undefined) {
      headers.set('retry-after', String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
    }
    const details: Array<{ desc: DescMessage; value: object }> = [];
    if (err instanceof InvalidArgumentError && isDetail(err.detail)) details.push(err.detail);
    return new ConnectError(err.message, code ?? Code.Unknown, headers, details as never);
  }
  logger?.error({ err }, 'internal error');
  return new ConnectError('internal error', Code.Internal);
}

function isDetail(d: unknown): d is { desc: DescMessage; value: object } {
  return typeof d === 'object' && d !== null && 'desc' in d && 'value' in d;
}

/** Maps domain errors to Connect codes (the one place that does). */
export function errorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    let res: AnyResponse;
    try {
      res = await next(req);
    } catch (err) {
      throw toConnectError(err, req.contextValues.get(loggerKey) ?? logger);
    }
    if (!res.stream) return res;
    const inner = res.message;
    async function* mapped() {
      try {
        yield* inner;
      } catch (err) {
        throw toConnectError(err, req.contextValues.get(loggerKey) ?? logger);
      }
    }
    return { ...res, message: mapped() };
  };
}

/** Starts a SERVER span per RPC, continuing the trace context the caller sent. */
export function serverTracingInterceptor(): Interceptor {
  const tracer = trace.getTracer('telemesh-rpc');
  return (next) => async (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    const span = tracer.startSpan(
      `${req.service.typeName}/${req.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'rpc.system': 'connect_rpc', 'rpc.service': req.service.typeName, 'rpc.method': req.method.name },
      },
      parent,
    );
    const end = (err?: unknown) => endSpan(span, err);
    try {
      const res = await context.with(trace.setSpan(parent, span), () => next(req));
      return onComplete(res, end);
    } catch (err) {
      end(err);
      throw err;
    }
  };
}

function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined) {
    const ce = err instanceof ConnectError ? err : undefined;
    span.setAttribute('rpc.connect_rpc.error_code', ce ? Code[ce.code] : 'unknown');
    span.setStatus({ code: SpanStatusCode.ERROR, message: ce?.rawMessage ?? 'error' });
  }
  span.end();
}

/** Sends the active trace context with every client call (W3C `traceparent`). */
export function clientTracingInterceptor(): Interceptor {
  return (next) => (req) => {
    propagation.inject(context.active(), req.header, headerSetter);
    return next(req);
  };
}

/**
 * Request metrics and logging: a request-scoped logger in the context, duration and count
 * per procedure and code, and one warn line for every failed call.
 */
export function observeInterceptor(logger: Logger, registry: Registry): Interceptor {
  const requests = counter(registry, {
    name: 'telemesh_server_requests_total',
    help: 'RPCs handled, by procedure and result code.',
    labelNames: ['procedure', 'code'],
  });
  const duration = histogram(registry, {
    name: 'telemesh_server_request_duration_seconds',
    help: 'RPC handling time, by procedure.',
    labelNames: ['procedure'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const log = logger.child({ procedure });
    req.contextValues.set(loggerKey, log);
    const started = performance.now();
    const done = (err?: unknown) => {
      const code = err === undefined ? 'ok' : err instanceof ConnectError ? Code[err.code] : 'unknown';
      requests.inc({ procedure, code });
      duration.observe({ procedure }, (performance.now() - started) / 1000);
      if (err !== undefined) {
        // The tenant is known once auth (an inner interceptor) has run, if it accepted the token.
        const tenant = req.contextValues.get(principalKey)?.tenant;
        log.warn({ code, tenant, err: err instanceof ConnectError ? err.rawMessage : String(err) }, 'request failed');
      }
    };
    try {
      return onComplete(await next(req), done);
    } catch (err) {
      done(err);
      throw err;
    }
  };
}
