import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { configKeys, describeSetting, loadConfig, redactConfig } from './config.js';
import { StartupError } from './errors.js';

describe('config', () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), 'telemesh-config-'))));
  after(() => rm(dir, { recursive: true, force: true }));

  it('has the documented defaults', () => {
    const c = loadConfig();
    assert.equal(c.server.httpPort, 7400);
    assert.equal(c.server.grpcPort, 7401);
    assert.equal(c.server.host, '127.0.0.1');
    assert.equal(c.dataDir, './var');
    assert.equal(c.nats.url, '');
    assert.equal(c.store.backend, 'duckdb');
    assert.equal(c.auth.devTokens, false);
  });

  it('layers file < env < flags', async () => {
    const file = join(dir, 'layers.yaml');
    await writeFile(file, 'server:\n  httpPort: 1000\n  grpcPort: 1001\nlog:\n  level: debug\n');
    const c = loadConfig({
      file,
      env: { TELEMESH_SERVER_GRPC_PORT: '2001', TELEMESH_SERVER_HOST: '0.0.0.0', TELEMESH_UNRELATED: 'x' },
      flags: [['server.host', '::1'], ['auth.devTokens', 'true']],
    });
    assert.equal(c.server.httpPort, 1000);
    assert.equal(c.server.grpcPort, 2001);
    assert.equal(c.server.host, '::1');
    assert.equal(c.log.level, 'debug');
    assert.equal(c.auth.devTokens, true);
  });

  it('derives env names from camelCase keys', () => {
    const env = Object.fromEntries(configKeys.map((k) => [k.path, k.env]));
    assert.equal(env['nats.url'], 'TELEMESH_NATS_URL');
    assert.equal(env['server.httpPort'], 'TELEMESH_SERVER_HTTP_PORT');
    assert.equal(env['ingestion.maxSampleAgeMs'], 'TELEMESH_INGESTION_MAX_SAMPLE_AGE_MS');
    assert.equal(new Set(configKeys.map((k) => k.env)).size, configKeys.length, 'env names are unique');
    assert.equal(describeSetting('nats.url'), 'nats.url (TELEMESH_NATS_URL or --nats.url)');
  });

  const fails = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (err: unknown) => {
      assert.ok(err instanceof StartupError, String(err));
      assert.match(err.message, re);
      return true;
    });

  it('rejects unknown keys, at any depth, naming them', async () => {
    const file = join(dir, 'unknown.yaml');
    await writeFile(file, 'nats:\n  ur1: nats://x\n');
    fails(() => loadConfig({ file }), /unknown key "nats\.ur1"/);
    await writeFile(file, 'colour: blue\n');
    fails(() => loadConfig({ file }), /unknown key "colour"/);
    fails(() => loadConfig({ flags: [['nats.ur1', 'x']] }), /unknown flag --nats\.ur1/);
  });

  it('rejects bad values naming the key and the source', async () => {
    fails(() => loadConfig({ env: { TELEMESH_SERVER_HTTP_PORT: '70000' } }), /server\.httpPort: .*\(from TELEMESH_SERVER_HTTP_PORT\)/);
    fails(() => loadConfig({ flags: [['log.level', 'loud']] }), /log\.level: .*\(from --log\.level\)/);
    fails(() => loadConfig({ env: { TELEMESH_AUTH_DEV_TOKENS: 'maybe' } }), /auth\.devTokens must be true or false/);
    const file = join(dir, 'types.yaml');
    await writeFile(file, 'server:\n  httpPort: "x"\n');
    fails(() => loadConfig({ file }), /server\.httpPort: .*types\.yaml/);
  });

  it('reports malformed YAML with its position, and a missing file', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'server: [\n');
    fails(() => loadConfig({ file }), /broken\.yaml is not valid YAML at line \d+, column \d+/);
    fails(() => loadConfig({ file: join(dir, 'absent.yaml') }), /cannot read config file .*absent\.yaml \(ENOENT\)/);
    await writeFile(file, '- a\n- b\n');
    fails(() => loadConfig({ file }), /must hold a mapping/);
  });

  it('accepts an empty file', async () => {
    const file = join(dir, 'empty.yaml');
    await writeFile(file, '');
    assert.equal(loadConfig({ file }).server.httpPort, 7400);
  });

  it('redacts secrets', () => {
    const c = loadConfig({ env: { TELEMESH_AUTH_HS256_SECRET: 's'.repeat(40), TELEMESH_STORE_MONGODB_URI: 'mongodb://u:p@h' } });
    const r = redactConfig(c) as { auth: { hs256Secret: string }; store: { mongodbUri: string } };
    assert.equal(r.auth.hs256Secret, '<redacted>');
    assert.equal(r.store.mongodbUri, '<redacted>');
    assert.equal(c.auth.hs256Secret, 's'.repeat(40), 'the original is untouched');
  });
});
