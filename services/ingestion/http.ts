/**
 * Plain HTTP plumbing shared by the remote_write and OTLP/HTTP receivers (body reading and
 * spans come from libs/runtime/http.ts): gzip decoding, authentication, and the mapping of
 * domain errors to HTTP statuses (400 not retried, 429 and 503 with Retry-After, 5xx only
 * for our own failures).
 */
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { authenticateHttp, defaultAccessPolicy, type Principal, type TokenVerifier } from '../../libs/runtime/auth/index.js';
import {
  InvalidArgumentError,
  LimitExceededError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from '../../libs/runtime/errors.js';
import { PayloadTooLargeError } from '../../libs/runtime/http.js';
import type { HttpRequest, HttpResponse } from '../../libs/runtime/server.js';
import { OverloadedError } from './pipeline.js';

const gunzipAsync = promisify(gunzip);

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
