/**
 * Plain HTTP plumbing shared by the remote_write and OTLP/HTTP receivers: bounded body
 * reading, authentication, and the mapping of domain errors to HTTP statuses (400 not
 * retried, 429 and 503 with Retry-After, 5xx only for our own failures).
 */
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { context, propagation, SpanKind, SpanStatusCode, trace, type TextMapGetter } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { authenticateHttp, defaultAccessPolicy, type Principal, type TokenVerifier } from '../../libs/runtime/auth/index.js';
import {
  InvalidArgumentError,
  LimitExceededError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from '../../libs/runtime/errors.js';
import type { HttpHandler, HttpRequest, HttpResponse } from '../../libs/runtime/server.js';
import { OverloadedError } from './pipeline.js';

const gunzipAsync = promisify(gunzip);

/** The request body is larger than allowed (HTTP 413). */
export class PayloadTooLargeError extends InvalidArgumentError {}

/** Reads the whole body, refusing more than `maxBytes`. */
export async function readBody(req: HttpRequest, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw new PayloadTooLargeError(`request body of ${declared} bytes is larger than ingestion.maxRequestBytes = ${maxBytes}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new PayloadTooLargeError(`request body is larger than ingestion.maxRequestBytes = ${maxBytes}`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** Undoes `Content-Encoding: gzip` (bounded), or returns the body as is. */
export async function decodeContentEncoding(req: HttpRequest, body: Buffer, maxBytes: number): Promise<Buffer> {
  const enc = String(req.headers['content-encoding'] ?? '').toLowerCase();
  if (enc === '' || enc === 'identity') return body;
  if (enc !== 'gzip') throw new InvalidArgumentError(`content-encoding ${enc} is not supported (use gzip or none)`);
  try {
    return await gunzipAsync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new PayloadTooLargeError(`decompressed body is larger than ingestion.maxRequestBytes = ${maxBytes}`);
    }
    throw new InvalidArgumentError(`body is not valid gzip: ${(err as Error).message}`);
  }
}

/** Authenticates a receiver request by its path in the access table. */
export async function authenticate(req: HttpRequest, path: string, verifier: TokenVerifier): Promise<Principal> {
  const p = await authenticateHttp(req.headers, path, verifier, defaultAccessPolicy);
  if (!p) throw new PermissionDeniedError(`${path} needs a token`);
  return p;
}

/** Answers a failed receiver request with the status its error calls for. */
export function sendError(res: HttpResponse, err: unknown, logger: Logger): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' };
  let status: number;
  let message: string;
  if (err instanceof PayloadTooLargeError) [status, message] = [413, err.message];
  else if (err instanceof InvalidArgumentError) [status, message] = [400, err.message];
  else if (err instanceof UnauthenticatedError) [status, message] = [401, err.message];
  else if (err instanceof PermissionDeniedError) [status, message] = [403, err.message];
  else if (err instanceof LimitExceededError || err instanceof UnavailableError) {
    // Rate limits and our own overload both mean "slow down and retry": 429 is what
    // Prometheus and OTLP clients back off on. A bus outage is our failure: 503.
    status = err instanceof UnavailableError && !(err instanceof OverloadedError) ? 503 : 429;
    message = err.message;
    headers['retry-after'] = String(Math.max(1, Math.ceil((err.retryAfterMs ?? 1000) / 1000)));
  } else {
    logger.error({ err }, 'receiver failed');
    [status, message] = [500, 'internal error'];
  }
  res.writeHead(status, headers);
  res.end(`${message}\n`);
}

const tracer = trace.getTracer('telemesh-ingestion');

const nodeHeaderGetter: TextMapGetter<HttpRequest['headers']> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const v = carrier[key];
    return Array.isArray(v) ? v[0] : v;
  },
};

/**
 * Wraps a receiver in a SERVER span continuing the caller's W3C trace context, like the
 * RPC tracing interceptor does for Connect, so a remote_write or OTLP/HTTP request links
 * to its bus publish. Status ≥ 500 marks the span as an error.
 */
export function traced(name: string, handler: HttpHandler): HttpHandler {
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
