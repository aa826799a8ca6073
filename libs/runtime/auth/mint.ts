/**
 * Minting HS256 tokens: the dev tokens `npm start` prints and `telemesh token` issues.
 * Production deployments normally get tokens from their own issuer (JWKS), so this stays
 * deliberately small.
 */
import { SignJWT } from 'jose';
import { isRole } from './policy.js';
import type { Role } from './policy.js';
import { hs256Key, isValidTenant } from './verifier.js';

/** What a minted token asserts. */
export interface MintClaims {
  /** `sub`: who the token is for. */
  subject: string;
  /** `tenant`: must match `TENANT_PATTERN` (verifier.ts), or the verifier would refuse the token. */
  tenant: string;
  /** `roles`. */
  roles: readonly Role[];
  /** Lifetime in seconds from now; sets `exp`. */
  ttlSec: number;
  /** `iss`, for verifiers configured with an issuer. */
  issuer?: string;
  /** `aud`, for verifiers configured with an audience. */
  audience?: string;
}

/**
 * Signs a JWT with HS256 carrying `sub`, `tenant`, `roles`, `iat` and `exp`.
 * Inputs are checked against the same rules the verifier applies, so a token minted here is
 * never one our own verifier would refuse for its claims.
 * @throws StartupError when the secret is shorter than `MIN_HS256_SECRET_BYTES` (verifier.ts).
 * @throws RangeError when the subject, tenant, roles or ttl are invalid.
 */
export async function mintToken(secret: string, claims: MintClaims): Promise<string> {
  const key = hs256Key(secret, 'auth.hs256Secret');
  if (typeof claims.subject !== 'string' || claims.subject.length === 0) throw new RangeError('mintToken: subject must be non-empty');
  if (!isValidTenant(claims.tenant)) throw new RangeError('mintToken: tenant must match [A-Za-z0-9_-]{1,64}');
  const unknown = claims.roles.filter((r) => !isRole(r));
  if (unknown.length > 0) throw new RangeError(`mintToken: unknown roles ${unknown.join(', ')}`);
  if (!Number.isInteger(claims.ttlSec) || claims.ttlSec <= 0) throw new RangeError('mintToken: ttlSec must be a positive integer');

  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ tenant: claims.tenant, roles: [...claims.roles] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.subject)
    .setIssuedAt(now)
    .setExpirationTime(now + claims.ttlSec);
  if (claims.issuer) jwt.setIssuer(claims.issuer);
  if (claims.audience) jwt.setAudience(claims.audience);
  return jwt.sign(key);
}
