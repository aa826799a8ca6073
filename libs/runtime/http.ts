/**
 * Plumbing for plain HTTP routes (remote_write, OTLP/HTTP, the Prometheus API): a bounded
 * body reader and the SERVER span that continues the caller's W3C trace context — for
 * HTTP what the tracing interceptor is for RPCs. RpcServer wraps every registered route in
 * {@link tracedHttp}; handlers served by other listeners wrap themselves.
 */
import { context, propagation, SpanKind, SpanStatusCode, trace, type TextMapGetter } from '@opentelemetry/api';
import { InvalidArgumentError } from './errors.js';
import type { HttpHandler, HttpRequest } from './server.js';

/** The request body is larger than allowed (HTTP 413 where the protocol has it). */
export class PayloadTooLargeError extends InvalidArgumentError {}

/**
 * Reads the whole body, refusing more than `maxBytes`; `setting` names the limit in the
 * error (e.g. `ingestion.maxRequestBytes`). A declared Content-Length over the limit is
 * refused before anything is read.
 */
export async function readBody(req: HttpRequest, maxBytes: number, setting: string): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw new PayloadTooLargeError(`request body of ${declared} bytes is larger than ${setting} = ${maxBytes}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new PayloadTooLargeError(`request body is larger than ${setting} = ${maxBytes}`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

const tracer = trace.getTracer('telemesh-http');

const nodeHeaderGetter: TextMapGetter<HttpRequest['headers']> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const v = carrier[key];
    return Array.isArray(v) ? v[0] : v;
  },
};

/** Wraps a handler in a SERVER span named `name`; a status ≥ 500 marks the span as an error. */
export function tracedHttp(name: string, handler: HttpHandler): HttpHandler {
  return async (req, res) => {
    const parent = propagation.extract(context.active(), req.headers, nodeHeaderGetter);
    const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method ?? '', 'url.path': name } }, parent);
    try {
      await context.with(trace.setSpan(parent, span), () => handler(req, res));
    } finally {
      span.setAttribute('http.response.status_code', res.statusCode);
      if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
  };
}
