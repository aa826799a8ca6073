/**
 * Enforcement: the Connect interceptor every server installs, and the same checks for plain
 * HTTP endpoints (remote_write, OTLP/HTTP, the Prometheus API). Both run one routine so an
 * endpoint cannot be stricter or looser depending on the protocol it arrived by.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { createContextKey } from '@connectrpc/connect';
import type { HandlerContext, Interceptor } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { PermissionDeniedError, UnauthenticatedError, UnavailableError } from '../errors.js';
import { PUBLIC, rolesSatisfy } from './policy.js';
import type { Access, AccessPolicy } from './policy.js';
import type { Principal, TokenVerifier } from './verifier.js';
import { loggerKey } from '../logger.js';

/**
 * Context key holding the caller's {@link Principal}. Set by {@link authInterceptor};
 * `undefined` on public RPCs. Handlers should use {@link requirePrincipal} rather than read
 * it directly, so a missing principal fails closed.
 */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: 'telemesh.auth.principal' });

/**
 * The authenticated caller of the current RPC.
 * @throws UnauthenticatedError when there is none: the RPC is public or the interceptor is
 *   not installed, and either way the handler must not guess a tenant.
 */
export function requirePrincipal(ctx: Pick<HandlerContext, 'values'>): Principal {
  const principal = ctx.values.get(principalKey);
  if (!principal) throw new UnauthenticatedError('no authenticated caller');
  return principal;
}

/** One refused request, for the audit log and the auth-failure counter. */
export interface AuthFailure {
  /** The RPC (`"<service>/<method>"`) or HTTP path that was refused. */
  readonly procedure: string;
  /** Short, fixed reason (e.g. `token expired`); never contains the token. */
  readonly reason: string;
  /** Which refusal: maps to the Connect code the caller sees; bounded, so fit for a metric label. */
  readonly kind: 'unauthenticated' | 'permission_denied' | 'unavailable';
  /** The token's subject, when the token itself was valid (a role refusal). */
  readonly subject?: string;
  /** The token's tenant, when the token itself was valid (a role refusal). */
  readonly tenant?: string;
}

/** Audit hooks shared by {@link authInterceptor} and {@link authenticateHttp}. */
export interface AuthAuditOptions {
  /** Receives a `warn` line per refusal, if given. */
  logger?: Pick<Logger, 'warn'>;
  /** Called once per refusal, before the error is thrown; exceptions from it are swallowed. */
  onFailure?: (failure: AuthFailure) => void;
}

/** Options of {@link authInterceptor}. */
export interface AuthInterceptorOptions extends AuthAuditOptions {
  /** Verifies bearer tokens. */
  verifier: TokenVerifier;
  /** Which roles each RPC needs (normally `defaultAccessPolicy`). */
  policy: AccessPolicy;
}

/**
 * A Connect interceptor enforcing the access policy on every RPC, streaming ones included.
 * It reads `authorization: Bearer <jwt>`, skips public RPCs, refuses RPCs missing from the
 * policy, verifies the token, checks roles and puts the {@link Principal} under
 * {@link principalKey}. Refusals are domain errors ({@link UnauthenticatedError},
 * {@link PermissionDeniedError}, {@link UnavailableError}) for the error interceptor to map,
 * so install this one inside (after) the error interceptor.
 */
export function authInterceptor(options: AuthInterceptorOptions): Interceptor {
  const { verifier, policy } = options;
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    const principal = await authorize(policy.rpc(procedure), req.header.get('authorization'), verifier, procedure, options);
    if (principal) {
      req.contextValues.set(principalKey, principal);
      // From here on, the request's log lines carry the tenant.
      const log = req.contextValues.get(loggerKey);
      if (log) req.contextValues.set(loggerKey, log.child({ tenant: principal.tenant }));
    }
    return next(req);
  };
}

/**
 * The same checks as {@link authInterceptor} for a plain HTTP endpoint, keyed by `path`.
 * @returns the caller, or `undefined` when the path is public.
 * @throws UnauthenticatedError, PermissionDeniedError or UnavailableError like the interceptor.
 */
export async function authenticateHttp(
  headers: IncomingHttpHeaders | Headers,
  path: string,
  verifier: TokenVerifier,
  policy: AccessPolicy,
  audit: AuthAuditOptions = {},
): Promise<Principal | undefined> {
  const authorization = headers instanceof Headers ? headers.get('authorization') : headers.authorization;
  return authorize(policy.http(path), authorization, verifier, path, audit);
}

async function authorize(
  access: Access | undefined,
  authorization: string | string[] | null | undefined,
  verifier: TokenVerifier,
  procedure: string,
  audit: AuthAuditOptions,
): Promise<Principal | undefined> {
  if (access === PUBLIC) return undefined;
  let principal: Principal | undefined;
  try {
    // Fail closed: an endpoint nobody declared access for is refused even to admins, so
    // forgetting the table entry shows up in the first test rather than in production.
    if (access === undefined) throw new PermissionDeniedError(`no access policy for ${procedure}`);
    principal = await verifier.verify(bearerToken(authorization));
    if (!rolesSatisfy(principal.roles, access)) {
      const need = access.length === 1 ? `role ${access[0]}` : `one of roles ${access.join(', ')}`;
      throw new PermissionDeniedError(`${need} required for ${procedure}`);
    }
    return principal;
  } catch (err) {
    const kind =
      err instanceof UnauthenticatedError ? 'unauthenticated'
      : err instanceof PermissionDeniedError ? 'permission_denied'
      : err instanceof UnavailableError ? 'unavailable'
      : undefined;
    if (kind) report(audit, { procedure, reason: err instanceof Error ? err.message : kind, kind, subject: principal?.subject, tenant: principal?.tenant });
    throw err;
  }
}

// RFC 6750 §2.1: the scheme is case-insensitive; the token is b64token. Stricter than that
// would refuse valid tokens, looser would let a comma-joined second header through.
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

function bearerToken(header: string | string[] | null | undefined): string {
  if (header === undefined || header === null || header === '') throw new UnauthenticatedError('missing bearer token');
  if (typeof header !== 'string') throw new UnauthenticatedError('more than one authorization header');
  const m = BEARER.exec(header);
  if (!m?.[1]) throw new UnauthenticatedError('authorization header is not a bearer token');
  return m[1];
}

function report(audit: AuthAuditOptions, failure: AuthFailure): void {
  // Only present fields, so audit records and metric labels never carry `subject: undefined`.
  const record: AuthFailure = {
    procedure: failure.procedure,
    reason: failure.reason,
    kind: failure.kind,
    ...(failure.subject !== undefined && { subject: failure.subject }),
    ...(failure.tenant !== undefined && { tenant: failure.tenant }),
  };
  audit.logger?.warn(record, 'auth failure');
  try {
    audit.onFailure?.(record);
  } catch {
    // An audit sink failing must not turn a refusal into an internal error or, worse,
    // swallow the refusal; the refusal below is what matters to the caller.
  }
}
