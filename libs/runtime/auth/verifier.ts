/**
 * Bearer-token verification: turns a JWT into a {@link Principal} or refuses it with an
 * {@link UnauthenticatedError} carrying a short reason. Reasons never include the token or
 * its claims' values, because they end up in audit logs and may reach the client.
 */
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify } from 'jose';
import type { JSONWebKeySet, JWSAlgorithm, JWTPayload, JWTVerifyOptions } from 'jose';
import { StartupError, UnauthenticatedError, UnavailableError } from '../errors.js';
import { isRole } from './policy.js';
import type { Role } from './policy.js';

/** The authenticated caller, as carried through request context. */
export interface Principal {
  /** The token's `sub` claim: who the caller is (an agent id, a user, a service account). */
  readonly subject: string;
  /** The token's `tenant` claim; scopes every bus subject and store query of the request. */
  readonly tenant: string;
  /** Known roles from the token's `roles` claim, de-duplicated; unknown ones are dropped. */
  readonly roles: readonly Role[];
}

/**
 * Allowed tenant ids. The tenant becomes a NATS subject token (`telemesh.samples.v1.<tenant>`),
 * so dots, wildcards (`*`, `>`) and whitespace must never get through.
 */
export const TENANT_PATTERN: RegExp = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `value` is a tenant id that is safe to use as a subject token and store key. */
export function isValidTenant(value: unknown): value is string {
  return typeof value === 'string' && TENANT_PATTERN.test(value);
}

/**
 * Shortest HS256 secret accepted, in bytes (UTF-8). RFC 7518 §3.2 requires a key at least as
 * long as the hash output; shorter secrets are brute-forceable offline from any one token.
 */
export const MIN_HS256_SECRET_BYTES = 32;

/** Verifier settings; the names mirror the `auth.*` configuration keys. */
export interface TokenVerifierConfig {
  /** Shared HS256 secret (`auth.hs256Secret`). */
  hs256Secret?: string;
  /** Path of a JSON Web Key Set file with the issuer's public keys (`auth.jwksFile`). */
  jwksFile?: string;
  /** URL of the issuer's JSON Web Key Set (`auth.jwksUrl`); fetched and cached by jose. */
  jwksUrl?: string;
  /** Required `iss` claim value, if set. */
  issuer?: string;
  /** Required `aud` claim value, if set. */
  audience?: string;
  /** Allowed clock skew when checking `exp`/`nbf`, seconds. */
  clockToleranceSec?: number;
}

/** Verifies bearer tokens. */
export interface TokenVerifier {
  /**
   * Verifies `token` (the bare JWT, without `Bearer `) and returns its principal.
   * @throws UnauthenticatedError when the token is missing, malformed, expired, wrongly
   *   signed, uses a disallowed algorithm, or lacks a valid `sub`/`tenant` claim.
   * @throws UnavailableError when a remote key set cannot be fetched (the client may retry).
   */
  verify(token: string): Promise<Principal>;
}

// Large enough for tokens with many claims, small enough that nobody makes us parse and
// hash megabytes per request.
const MAX_TOKEN_CHARS = 16 * 1024;

// Key-set keys are public keys; pinning asymmetric algorithms keeps a token from choosing
// HMAC or `none` and so rules out the classic algorithm-confusion attacks.
const ASYMMETRIC_ALGORITHMS: JWSAlgorithm[] = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519',
];

type KeyMode = { kind: 'secret'; key: Uint8Array } | { kind: 'jwks'; remote: boolean; getKey: ReturnType<typeof createLocalJWKSet> | ReturnType<typeof createRemoteJWKSet> };

/**
 * Creates a verifier from configuration. Exactly one of `hs256Secret`, `jwksFile`, `jwksUrl`
 * must be set (empty strings count as unset, since config defaults are often `''`).
 * A JWKS file is read once here, so a bad file fails start-up rather than the first request.
 * @throws StartupError naming the setting to fix when the configuration is unusable.
 */
export function createTokenVerifier(cfg: TokenVerifierConfig): TokenVerifier {
  const mode = keyMode(cfg);
  const options: JWTVerifyOptions = {
    algorithms: mode.kind === 'secret' ? ['HS256'] : ASYMMETRIC_ALGORITHMS,
    // A token without an expiry would be valid forever once leaked.
    requiredClaims: ['exp'],
  };
  if (cfg.issuer) options.issuer = cfg.issuer;
  if (cfg.audience) options.audience = cfg.audience;
  if (cfg.clockToleranceSec !== undefined) {
    if (!Number.isFinite(cfg.clockToleranceSec) || cfg.clockToleranceSec < 0) {
      throw new StartupError('auth.clockToleranceSec must be a non-negative number of seconds', 'auth.clockToleranceSec');
    }
    options.clockTolerance = cfg.clockToleranceSec;
  }

  return {
    async verify(token) {
      if (typeof token !== 'string' || token.length === 0) throw new UnauthenticatedError('missing bearer token');
      if (token.length > MAX_TOKEN_CHARS) throw new UnauthenticatedError('token too large');
      let payload: JWTPayload;
      try {
        payload =
          mode.kind === 'secret'
            ? (await jwtVerify(token, mode.key, options)).payload
            : (await jwtVerify(token, mode.getKey, options)).payload;
      } catch (err) {
        throw translate(err, mode.kind === 'jwks' && mode.remote);
      }
      return principalFrom(payload);
    },
  };
}

function keyMode(cfg: TokenVerifierConfig): KeyMode {
  const set = (['hs256Secret', 'jwksFile', 'jwksUrl'] as const).filter((k) => !!cfg[k]);
  if (set.length === 0) {
    throw new StartupError(
      'no token verification key configured: set auth.hs256Secret (shared secret) or auth.jwksFile / auth.jwksUrl (issuer public keys)',
      'auth.hs256Secret',
    );
  }
  if (set.length > 1) {
    const names = set.map((k) => `auth.${k}`);
    throw new StartupError(
      `only one token verification key source may be set, got ${names.join(' and ')}: keep exactly one of auth.hs256Secret, auth.jwksFile, auth.jwksUrl`,
      names[1],
    );
  }

  if (cfg.hs256Secret) return { kind: 'secret', key: hs256Key(cfg.hs256Secret, 'auth.hs256Secret') };

  if (cfg.jwksFile) {
    let jwks: unknown;
    try {
      jwks = JSON.parse(readFileSync(cfg.jwksFile, 'utf8'));
    } catch (err) {
      throw new StartupError(`auth.jwksFile: cannot read a JSON key set from ${cfg.jwksFile}`, 'auth.jwksFile', { cause: err });
    }
    if (typeof jwks !== 'object' || jwks === null || !Array.isArray((jwks as { keys?: unknown }).keys)) {
      throw new StartupError(`auth.jwksFile: ${cfg.jwksFile} is not a JSON Web Key Set (no "keys" array)`, 'auth.jwksFile');
    }
    const keys = (jwks as { keys: unknown[] }).keys;
    // Private key material in a verification key set means the signing key was published.
    if (keys.some((k) => typeof k === 'object' && k !== null && 'd' in k)) {
      throw new StartupError(`auth.jwksFile: ${cfg.jwksFile} contains private keys; publish only the public keys`, 'auth.jwksFile');
    }
    try {
      return { kind: 'jwks', remote: false, getKey: createLocalJWKSet(jwks as JSONWebKeySet) };
    } catch (err) {
      throw new StartupError(`auth.jwksFile: ${cfg.jwksFile} is not a valid JSON Web Key Set`, 'auth.jwksFile', { cause: err });
    }
  }

  let url: URL;
  try {
    url = new URL(cfg.jwksUrl as string);
  } catch (err) {
    throw new StartupError('auth.jwksUrl is not a valid URL', 'auth.jwksUrl', { cause: err });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new StartupError('auth.jwksUrl must be an http(s) URL', 'auth.jwksUrl');
  }
  return { kind: 'jwks', remote: true, getKey: createRemoteJWKSet(url) };
}

/**
 * Encodes an HS256 secret, refusing ones too short to be safe.
 * @internal shared with mint.ts so signing and verifying agree on the bytes.
 */
export function hs256Key(secret: string, setting: string): Uint8Array {
  const key = new TextEncoder().encode(secret);
  if (key.length < MIN_HS256_SECRET_BYTES) {
    throw new StartupError(`${setting} must be at least ${MIN_HS256_SECRET_BYTES} bytes long`, setting);
  }
  return key;
}

// Maps jose's failures to short, fixed reasons. Branches on error classes, never messages;
// the jose error is not attached as `cause` because some carry the decoded claims.
function translate(err: unknown, remote: boolean): Error {
  if (err instanceof errors.JWTExpired) return new UnauthenticatedError('token expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    return new UnauthenticatedError(`claim "${err.claim}" ${err.reason === 'missing' ? 'missing' : 'rejected'}`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new UnauthenticatedError('signature verification failed');
  if (err instanceof errors.JOSEAlgNotAllowed) return new UnauthenticatedError('signing algorithm not allowed');
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return new UnauthenticatedError('no matching verification key');
  }
  if (remote && (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || !(err instanceof errors.JOSEError) || err.code === 'ERR_JOSE_GENERIC')) {
    // The issuer's key endpoint failed, not the caller: say so, so clients retry.
    return new UnavailableError('token keys unavailable');
  }
  if (err instanceof errors.JOSENotSupported) return new UnauthenticatedError('unsupported token');
  return new UnauthenticatedError('malformed token');
}

function principalFrom(payload: JWTPayload): Principal {
  const { sub, tenant, roles } = payload;
  if (typeof sub !== 'string' || sub.length === 0) throw new UnauthenticatedError('claim "sub" missing');
  if (tenant === undefined) throw new UnauthenticatedError('claim "tenant" missing');
  if (!isValidTenant(tenant)) throw new UnauthenticatedError('claim "tenant" invalid: must match [A-Za-z0-9_-]{1,64}');
  if (roles !== undefined && !Array.isArray(roles)) throw new UnauthenticatedError('claim "roles" must be an array');
  // Unknown roles are dropped rather than refused so an issuer can add roles for other
  // systems without locking callers out of this one.
  const known = [...new Set((roles ?? []).filter(isRole))];
  return Object.freeze({ subject: sub, tenant, roles: Object.freeze(known) });
}
