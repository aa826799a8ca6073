/**
 * Authentication and authorization for every Telemesh endpoint: bearer JWTs (HS256 secret
 * or JWKS) carrying `sub`, `tenant` and `roles`, checked against one declared access table.
 * Services install {@link authInterceptor} on their Connect routes, call
 * {@link authenticateHttp} from plain HTTP handlers, and read the caller with
 * {@link requirePrincipal}. Test helpers live in `./testing.js`, outside this face.
 */
export {
  ACCESS_TABLE,
  PUBLIC,
  ROLES,
  createAccessPolicy,
  defaultAccessPolicy,
  isRole,
  rolesSatisfy,
} from './policy.js';
export type { Access, AccessPolicy, AccessTable, Role } from './policy.js';
export { MIN_HS256_SECRET_BYTES, TENANT_PATTERN, createTokenVerifier, isValidTenant } from './verifier.js';
export type { Principal, TokenVerifier, TokenVerifierConfig } from './verifier.js';
export { mintToken } from './mint.js';
export type { MintClaims } from './mint.js';
export { authInterceptor, authenticateHttp, principalKey, requirePrincipal } from './interceptor.js';
export type { AuthAuditOptions, AuthFailure, AuthInterceptorOptions } from './interceptor.js';
