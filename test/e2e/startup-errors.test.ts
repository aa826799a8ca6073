/**
 * Bad start-up input stops `telemesh serve` with exit 1 and one clear line naming the
 * problem and the setting that fixes it — never a stack trace as the only message.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../../libs/bus/testing.js';
import { runCli, testSecret } from '../harness.js';

describe('start-up errors', () => {
  let dir: string;
  let base: Record<string, string>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'telemesh-startup-'));
    base = {
      TELEMESH_DATA_DIR: dir,
      TELEMESH_AUTH_HS256_SECRET: testSecret(),
      TELEMESH_SERVER_HTTP_PORT: String(await freePort()),
      TELEMESH_SERVER_GRPC_PORT: String(await freePort()),
      TELEMESH_NATS_EMBEDDED_PORT: String(await freePort()),
      TELEMESH_LOG_LEVEL: 'silent',
    };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const oneLine = (stderr: string) => {
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line expected, got:\n${stderr}`);
    assert.doesNotMatch(lines[0]!, /\s+at\s.+:\d+:\d+/);
    return lines[0]!;
  };

  it('rejects an unknown key in the YAML file', async () => {
    const file = join(dir, 'unknown.yaml');
    await writeFile(file, 'server:\n  htpPort: 7400\n');
    const r = await runCli(['serve', `--config.file=${file}`], base);
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /unknown key "server\.htpPort" in .*unknown\.yaml/);
  });

  it('rejects a malformed YAML file with its position', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'server:\n  httpPort: [1,\n');
    const r = await runCli(['serve', `--config.file=${file}`], base);
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /bad\.yaml is not valid YAML at line \d+, column \d+/);
  });

  it('rejects a bad value from the environment naming the variable', async () => {
    const r = await runCli(['serve'], { ...base, TELEMESH_SERVER_HTTP_PORT: 'eighty' });
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /server\.httpPort must be a number, got "eighty" \(from TELEMESH_SERVER_HTTP_PORT\)/);
  });

  it('rejects an unknown flag', async () => {
    const r = await runCli(['serve', '--server.nope=1'], base);
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /unknown flag --server\.nope/);
  });

  it('names the port setting when the port is in use', async () => {
    const blocker: Server = createServer();
    const port = await freePort();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    try {
      const r = await runCli(['serve', '--target=heartbeat'], { ...base, TELEMESH_SERVER_HTTP_PORT: String(port) });
      assert.equal(r.code, 1);
      assert.match(oneLine(r.stderr), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: address already in use — set server\\.httpPort \\(TELEMESH_SERVER_HTTP_PORT`));
    } finally {
      blocker.close();
    }
  });

  it('names nats.url when NATS is unreachable', async () => {
    const port = await freePort();
    const r = await runCli(['serve', '--target=ingestion'], { ...base, TELEMESH_NATS_URL: `nats://127.0.0.1:${port}`, TELEMESH_NATS_CONNECT_TIMEOUT_MS: '500' });
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), new RegExp(`127\\.0\\.0\\.1:${port}.*nats\\.url`));
  });

  it('refuses to start without a token key unless in dev mode', async () => {
    const { TELEMESH_AUTH_HS256_SECRET: _omit, ...noKey } = base;
    const r = await runCli(['serve', '--target=heartbeat'], noKey);
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /no key to verify bearer tokens is configured — set auth\.hs256Secret/);
  });

  it('verifies a configuration and exits 0 without starting, secrets redacted', async () => {
    const file = join(dir, 'ok.yaml');
    await writeFile(file, 'log:\n  level: debug\nquery:\n  maxSeries: 10\n');
    const { TELEMESH_LOG_LEVEL: _fromEnv, ...env } = base; // the environment would override the file's level
    const r = await runCli(['serve', `--config.file=${file}`, '--config.verify', '--server.httpPort=9999'], env);
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { log: { level: string }; query: { maxSeries: number }; server: { httpPort: number }; auth: { hs256Secret: string } };
    assert.equal(json.log.level, 'debug');
    assert.equal(json.query.maxSeries, 10);
    assert.equal(json.server.httpPort, 9999);
    assert.equal(json.auth.hs256Secret, '<redacted>');
  });

  it('rejects an unknown target listing the valid ones', async () => {
    const r = await runCli(['serve', '--target=everything'], base);
    assert.equal(r.code, 1);
    assert.match(oneLine(r.stderr), /unknown target "everything"; valid targets: all, ingestion/);
  });
});
