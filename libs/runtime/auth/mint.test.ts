import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { StartupError } from '../errors.js';
import { mintToken } from './mint.js';
import type { Role } from './policy.js';

const SECRET = 'test-secret-that-is-long-enough-for-hs256!';

describe('mintToken', () => {
  it('signs HS256 with sub, tenant, roles, iat and exp', async () => {
    const before = Math.floor(Date.now() / 1000);
    const token = await mintToken(SECRET, { subject: 'dev-agent', tenant: 'default', roles: ['agent'], ttlSec: 3600 });
    assert.equal(decodeProtectedHeader(token).alg, 'HS256');
    const claims = decodeJwt(token);
    assert.equal(claims.sub, 'dev-agent');
    assert.equal(claims.tenant, 'default');
    assert.deepEqual(claims.roles, ['agent']);
    assert.ok(typeof claims.iat === 'number' && claims.iat >= before);
    assert.equal(claims.exp, (claims.iat ?? 0) + 3600);
    assert.equal(claims.iss, undefined);
  });

  it('refuses inputs the verifier would refuse', async () => {
    const ok = { subject: 's', tenant: 't', roles: ['reader'] as Role[], ttlSec: 60 };
    await assert.rejects(mintToken('short', ok), StartupError);
    await assert.rejects(mintToken(SECRET, { ...ok, subject: '' }), RangeError);
    await assert.rejects(mintToken(SECRET, { ...ok, tenant: 'a.b' }), RangeError);
    await assert.rejects(mintToken(SECRET, { ...ok, roles: ['root' as Role] }), RangeError);
    await assert.rejects(mintToken(SECRET, { ...ok, ttlSec: 0 }), RangeError);
    await assert.rejects(mintToken(SECRET, { ...ok, ttlSec: 1.5 }), RangeError);
  });
});
