import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT, base64url, exportJWK, generateKeyPair } from 'jose';
import type { CryptoKey, JWTPayload } from 'jose';
import { StartupError, UnauthenticatedError, UnavailableError } from '../errors.js';
import { mintToken } from './mint.js';
import { createTokenVerifier } from './verifier.js';

const SECRET = 'test-secret-that-is-long-enough-for-hs256!';
const now = (): number => Math.floor(Date.now() / 1000);

function sign(payload: JWTPayload, key: Uint8Array | CryptoKey, alg = 'HS256', kid?: string): Promise<string> {
  return new SignJWT(payload).setProtectedHeader(kid ? { alg, kid } : { alg }).sign(key);
}
const secretKey = (s: string): Uint8Array => new TextEncoder().encode(s);
const good = (): JWTPayload => ({ sub: 'agent-1', tenant: 'acme', roles: ['agent', 'reader'], iat: now(), exp: now() + 60 });

async function refuses(p: Promise<unknown>, cls: new (...a: never[]) => Error = UnauthenticatedError): Promise<Error> {
  const err = await p.then(
    () => assert.fail('expected a refusal'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
  return err;
}

describe('HS256 verifier', () => {
  const verifier = createTokenVerifier({ hs256Secret: SECRET });

  it('accepts a valid token with its subject, tenant and roles', async () => {
    const p = await verifier.verify(await sign(good(), secretKey(SECRET)));
    assert.deepEqual(p, { subject: 'agent-1', tenant: 'acme', roles: ['agent', 'reader'] });
  });

  it('accepts tokens from mintToken', async () => {
    const token = await mintToken(SECRET, { subject: 'dev', tenant: 'default', roles: ['admin'], ttlSec: 60 });
    assert.deepEqual(await verifier.verify(token), { subject: 'dev', tenant: 'default', roles: ['admin'] });
  });

  it('drops unknown roles and duplicates, keeps the known ones', async () => {
    const p = await verifier.verify(await sign({ ...good(), roles: ['reader', 'root', 42, 'reader', 'editor'] }, secretKey(SECRET)));
    assert.deepEqual(p.roles, ['reader', 'editor']);
  });

  it('treats a missing roles claim as no roles', async () => {
    const { roles: _roles, ...noRoles } = good();
    assert.deepEqual((await verifier.verify(await sign(noRoles, secretKey(SECRET)))).roles, []);
  });

  it('refuses a missing or empty token', async () => {
    await refuses(verifier.verify(''));
  });

  it('refuses malformed tokens', async () => {
    for (const t of ['not-a-jwt', 'a.b.c', 'eyJhbGciOiJIUzI1NiJ9..', '....']) await refuses(verifier.verify(t));
  });

  it('refuses oversized tokens before parsing them', async () => {
    await refuses(verifier.verify('a'.repeat(20_000)));
  });

  it('refuses an expired token', async () => {
    const err = await refuses(verifier.verify(await sign({ ...good(), iat: now() - 120, exp: now() - 60 }, secretKey(SECRET))));
    assert.match(err.message, /expired/);
  });

  it('honours the clock tolerance', async () => {
    const lenient = createTokenVerifier({ hs256Secret: SECRET, clockToleranceSec: 120 });
    const token = await sign({ ...good(), exp: now() - 60 }, secretKey(SECRET));
    assert.equal((await lenient.verify(token)).tenant, 'acme');
  });

  it('refuses a token without exp', async () => {
    const { exp: _exp, ...noExp } = good();
    await refuses(verifier.verify(await sign(noExp, secretKey(SECRET))));
  });

  it('refuses a token signed with another secret', async () => {
    await refuses(verifier.verify(await sign(good(), secretKey('another-secret-that-is-long-enough-too!!'))));
  });

  it('refuses a tampered payload', async () => {
    const [h, , s] = (await sign(good(), secretKey(SECRET))).split('.');
    const forged = base64url.encode(JSON.stringify({ ...good(), tenant: 'victim' }));
    await refuses(verifier.verify(`${h}.${forged}.${s}`));
  });

  it('refuses alg:none', async () => {
    // Crafted by hand: no library would sign this for us, which is the point.
    const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
    const payload = base64url.encode(JSON.stringify(good()));
    await refuses(verifier.verify(`${header}.${payload}.`));
  });

  it('refuses other HMAC algorithms even with the right secret', async () => {
    await refuses(verifier.verify(await sign(good(), secretKey(SECRET), 'HS512')));
  });

  it('refuses a missing tenant', async () => {
    const { tenant: _t, ...noTenant } = good();
    const err = await refuses(verifier.verify(await sign(noTenant, secretKey(SECRET))));
    assert.match(err.message, /tenant/);
  });

  it('refuses tenants that are not safe subject tokens', async () => {
    for (const tenant of ['', 'a.b', 'a*', 'a>', 'a b', 'ten/ant', 'x'.repeat(65), 42, ['acme']]) {
      await refuses(verifier.verify(await sign({ ...good(), tenant }, secretKey(SECRET))));
    }
    assert.equal((await verifier.verify(await sign({ ...good(), tenant: 'A_z-9'.padEnd(64, 'x') }, secretKey(SECRET)))).tenant.length, 64);
  });

  it('refuses a missing subject and a non-array roles claim', async () => {
    const { sub: _s, ...noSub } = good();
    await refuses(verifier.verify(await sign(noSub, secretKey(SECRET))));
    await refuses(verifier.verify(await sign({ ...good(), roles: 'admin' }, secretKey(SECRET))));
  });

  it('never echoes the token in the reason', async () => {
    const token = await sign({ ...good(), exp: now() - 60 }, secretKey('another-secret-that-is-long-enough-too!!'));
    const err = await refuses(verifier.verify(token));
    assert.ok(!err.message.includes(token.split('.')[1] ?? '\0'));
    assert.ok(err.message.length < 80);
  });

  it('checks issuer and audience when configured', async () => {
    const strict = createTokenVerifier({ hs256Secret: SECRET, issuer: 'telemesh', audience: 'mesh' });
    const key = secretKey(SECRET);
    assert.equal((await strict.verify(await sign({ ...good(), iss: 'telemesh', aud: 'mesh' }, key))).subject, 'agent-1');
    await refuses(strict.verify(await sign({ ...good(), iss: 'someone-else', aud: 'mesh' }, key)));
    await refuses(strict.verify(await sign({ ...good(), iss: 'telemesh' }, key)));
    const minted = await mintToken(SECRET, { subject: 's', tenant: 't', roles: [], ttlSec: 60, issuer: 'telemesh', audience: 'mesh' });
    assert.equal((await strict.verify(minted)).tenant, 't');
  });
});

describe('JWKS verifiers', () => {
  let dir: string;
  let es: { privateKey: CryptoKey; publicKey: CryptoKey };
  let rs: { privateKey: CryptoKey; publicKey: CryptoKey };
  let jwksPath: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'telemesh-auth-'));
    es = await generateKeyPair('ES256', { extractable: true });
    rs = await generateKeyPair('RS256', { extractable: true });
    const keys = [
      { ...(await exportJWK(es.publicKey)), kid: 'es', alg: 'ES256', use: 'sig' },
      { ...(await exportJWK(rs.publicKey)), kid: 'rs', alg: 'RS256', use: 'sig' },
    ];
    jwksPath = join(dir, 'jwks.json');
    writeFileSync(jwksPath, JSON.stringify({ keys }));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts ES256 and RS256 tokens signed by keys in the file', async () => {
    const v = createTokenVerifier({ jwksFile: jwksPath });
    assert.equal((await v.verify(await sign(good(), es.privateKey, 'ES256', 'es'))).tenant, 'acme');
    assert.deepEqual((await v.verify(await sign(good(), rs.privateKey, 'RS256', 'rs'))).roles, ['agent', 'reader']);
  });

  it('refuses tokens signed by a key not in the set', async () => {
    const v = createTokenVerifier({ jwksFile: jwksPath });
    const stranger = await generateKeyPair('ES256');
    await refuses(v.verify(await sign(good(), stranger.privateKey, 'ES256', 'es')));
    await refuses(v.verify(await sign(good(), stranger.privateKey, 'ES256', 'unknown-kid')));
  });

  it('refuses HS256 and alg:none against a key set (algorithm confusion)', async () => {
    const v = createTokenVerifier({ jwksFile: jwksPath });
    const pub = await exportJWK(es.publicKey);
    await refuses(v.verify(await sign(good(), secretKey(JSON.stringify(pub)), 'HS256', 'es')));
    const header = base64url.encode(JSON.stringify({ alg: 'none', kid: 'es' }));
    await refuses(v.verify(`${header}.${base64url.encode(JSON.stringify(good()))}.`));
  });

  it('fetches a remote key set over HTTP', async () => {
    const body = JSON.stringify({ keys: [{ ...(await exportJWK(es.publicKey)), kid: 'es', alg: 'ES256' }] });
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(body));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      const v = createTokenVerifier({ jwksUrl: `http://127.0.0.1:${port}/jwks.json` });
      assert.equal((await v.verify(await sign(good(), es.privateKey, 'ES256', 'es'))).subject, 'agent-1');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('reports an unreachable remote key set as unavailable, not as a bad token', async () => {
    // Bind then close to get a port nothing listens on.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as AddressInfo;
    await new Promise((r) => probe.close(r));
    const v = createTokenVerifier({ jwksUrl: `http://127.0.0.1:${port}/jwks.json` });
    await refuses(v.verify(await sign(good(), es.privateKey, 'ES256', 'es')), UnavailableError);
  });
});

describe('verifier configuration', () => {
  it('requires exactly one key source, naming the settings', () => {
    assert.throws(() => createTokenVerifier({}), (e: unknown) => e instanceof StartupError && /auth\.hs256Secret/.test(e.message) && /auth\.jwksFile/.test(e.message) && /auth\.jwksUrl/.test(e.message));
    assert.throws(() => createTokenVerifier({ hs256Secret: '' , jwksUrl: '' }), StartupError);
    assert.throws(
      () => createTokenVerifier({ hs256Secret: SECRET, jwksUrl: 'https://idp.example/jwks' }),
      (e: unknown) => e instanceof StartupError && e.setting === 'auth.jwksUrl',
    );
  });

  it('refuses a short HS256 secret', () => {
    assert.throws(() => createTokenVerifier({ hs256Secret: 'short' }), (e: unknown) => e instanceof StartupError && e.setting === 'auth.hs256Secret');
  });

  it('refuses unusable JWKS settings at start-up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'telemesh-auth-'));
    try {
      const bad = (name: string, content: string): string => {
        const p = join(dir, name);
        writeFileSync(p, content);
        return p;
      };
      const priv = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey);
      for (const file of [join(dir, 'missing.json'), bad('a.json', 'not json'), bad('b.json', '{"nokeys":[]}'), bad('c.json', JSON.stringify({ keys: [priv] }))]) {
        assert.throws(() => createTokenVerifier({ jwksFile: file }), (e: unknown) => e instanceof StartupError && e.setting === 'auth.jwksFile', file);
      }
      assert.throws(() => createTokenVerifier({ jwksUrl: 'not a url' }), (e: unknown) => e instanceof StartupError && e.setting === 'auth.jwksUrl');
      assert.throws(() => createTokenVerifier({ jwksUrl: 'file:///etc/passwd' }), StartupError);
      assert.throws(() => createTokenVerifier({ hs256Secret: SECRET, clockToleranceSec: -1 }), StartupError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
