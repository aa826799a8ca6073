/**
 * Test helpers for code behind the auth interceptor: a random HS256 secret, a verifier for
 * it and a one-line token minter, so other libraries' tests use real tokens instead of
 * bypassing authentication.
 */
import { randomBytes } from 'node:crypto';
import { mintToken } from './mint.js';
import type { Role } from './policy.js';
import { createTokenVerifier } from './verifier.js';
import type { TokenVerifier } from './verifier.js';

/** A self-contained HS256 auth setup for tests. */
export interface TestAuth {
  /** The random shared secret. */
  readonly secret: string;
  /** A verifier accepting tokens signed with {@link TestAuth.secret}. */
  readonly verifier: TokenVerifier;
  /** Mints a token valid for an hour; subject defaults to `test-<roles>`. */
  token(roles: readonly Role[], tenant?: string, subject?: string): Promise<string>;
}

/** Creates a {@link TestAuth} with a fresh secret, so tests never share keys. */
export function createTestAuth(): TestAuth {
  const secret = randomBytes(32).toString('base64url');
  return {
    secret,
    verifier: createTokenVerifier({ hs256Secret: secret }),
    token: (roles, tenant = 'test', subject = `test-${roles.join('-') || 'none'}`) =>
      mintToken(secret, { subject, tenant, roles, ttlSec: 3600 }),
  };
}
