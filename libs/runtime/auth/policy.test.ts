import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { DescService } from '@bufbuild/protobuf';
import { ACCESS_TABLE, PUBLIC, createAccessPolicy, defaultAccessPolicy, isRole, rolesSatisfy } from './policy.js';
import type { Role } from './policy.js';

const contractsDir = fileURLToPath(new URL('../../contracts/', import.meta.url));

// Discovers services by walking the generated code rather than listing them, so a service
// added to proto/ later is covered without anyone remembering to edit this test.
async function contractServices(): Promise<DescService[]> {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('_pb.ts')) files.push(p);
    }
  };
  walk(contractsDir);
  const services: DescService[] = [];
  for (const f of files.sort()) {
    const mod = (await import(pathToFileURL(f).href)) as Record<string, unknown>;
    for (const v of Object.values(mod)) {
      if (typeof v === 'object' && v !== null && (v as { kind?: unknown }).kind === 'service') services.push(v as DescService);
    }
  }
  return services;
}

describe('access table', () => {
  it('has an entry for every method of every service in libs/contracts', async () => {
    const services = await contractServices();
    const names = services.map((s) => s.typeName);
    // Guard against the discovery itself silently finding nothing.
    for (const expected of [
      'grpc.health.v1.Health',
      'telemesh.ingest.v1.IngestService',
      'telemesh.heartbeat.v1.HeartbeatService',
      'telemesh.query.v1.QueryService',
      'telemesh.alerting.v1.AlertingService',
      'telemesh.notify.v1.NotificationService',
    ]) {
      assert.ok(names.includes(expected), `discovered ${expected}`);
    }
    const missing: string[] = [];
    for (const s of services) {
      for (const m of s.methods) {
        const procedure = `${s.typeName}/${m.name}`;
        if (defaultAccessPolicy.rpc(procedure) === undefined) missing.push(procedure);
      }
    }
    assert.deepEqual(missing, [], 'RPCs without an access entry');
  });

  it('has no entry naming an RPC that does not exist (no stale grants)', async () => {
    const services = await contractServices();
    const known = new Set(services.flatMap((s) => [`${s.typeName}/*`, ...s.methods.map((m) => `${s.typeName}/${m.name}`)]));
    const stale = Object.keys(ACCESS_TABLE.rpc).filter((k) => !known.has(k));
    assert.deepEqual(stale, []);
  });

  it('makes health public and assigns the expected roles', () => {
    const p = defaultAccessPolicy;
    assert.equal(p.rpc('grpc.health.v1.Health/Check'), PUBLIC);
    assert.equal(p.rpc('grpc.health.v1.Health/Watch'), PUBLIC);
    assert.deepEqual(p.rpc('telemesh.ingest.v1.IngestService/Write'), ['agent']);
    assert.deepEqual(p.rpc('telemesh.ingest.v1.IngestService/Stream'), ['agent']);
    assert.deepEqual(p.rpc('telemesh.heartbeat.v1.HeartbeatService/Connect'), ['agent']);
    assert.deepEqual(p.rpc('telemesh.heartbeat.v1.HeartbeatService/WatchAgents'), ['reader']);
    assert.deepEqual(p.rpc('telemesh.query.v1.QueryService/QueryRange'), ['reader']);
    assert.deepEqual(p.rpc('telemesh.alerting.v1.AlertingService/PutRuleGroup'), ['editor']);
    assert.deepEqual(p.rpc('telemesh.notify.v1.NotificationService/DeleteSilence'), ['editor']);
    assert.deepEqual(p.rpc('telemesh.notify.v1.NotificationService/ListDeliveries'), ['reader']);
  });

  it('fails closed on unknown RPCs', () => {
    assert.equal(defaultAccessPolicy.rpc('telemesh.query.v1.QueryService/DropEverything'), undefined);
    assert.equal(defaultAccessPolicy.rpc('evil.v1.Backdoor/Open'), undefined);
    assert.equal(defaultAccessPolicy.rpc('grpc.health.v1.Health'), undefined);
    assert.equal(defaultAccessPolicy.rpc(''), undefined);
  });
});

describe('HTTP paths', () => {
  const p = defaultAccessPolicy;
  it('maps receivers to agent and the Prometheus API to reader', () => {
    assert.deepEqual(p.http('/api/v1/write'), ['agent']);
    assert.deepEqual(p.http('/v1/metrics'), ['agent']);
    for (const path of [
      '/api/v1/query',
      '/api/v1/query_range',
      '/api/v1/query_exemplars',
      '/api/v1/series',
      '/api/v1/labels',
      '/api/v1/label/job/values',
      '/api/v1/metadata',
      '/api/v1/status/buildinfo',
      '/api/v1/query_range?query=up&start=0',
    ]) {
      assert.deepEqual(p.http(path), ['reader'], path);
    }
  });

  it('leaves health and /metrics public', () => {
    for (const path of ['/livez', '/readyz', '/metrics']) assert.equal(p.http(path), PUBLIC, path);
  });

  it('fails closed on unknown or suspicious paths', () => {
    for (const path of ['/', '/api/v1/admin/tsdb/delete_series', '/api/v1/writes', '/api/v1/query/../write', '/api/v1/label/./x', 'api/v1/query', '/api/v1/status\\x']) {
      assert.equal(p.http(path), undefined, path);
    }
  });

  it('prefers the longest matching prefix', () => {
    const custom = createAccessPolicy({ rpc: {}, http: { '/a/*': ['reader'], '/a/b/*': ['editor'], '/a/b/c': PUBLIC } });
    assert.deepEqual(custom.http('/a/x'), ['reader']);
    assert.deepEqual(custom.http('/a/b/x'), ['editor']);
    assert.equal(custom.http('/a/b/c'), PUBLIC);
  });
});

describe('roles', () => {
  const can = (held: Role[], required: Role[]): boolean => rolesSatisfy(held, required);
  it('admin may do everything', () => {
    for (const r of ['agent', 'reader', 'editor', 'admin'] as const) assert.ok(can(['admin'], [r]), r);
  });
  it('editor includes reader but not agent', () => {
    assert.ok(can(['editor'], ['reader']));
    assert.ok(can(['editor'], ['editor']));
    assert.ok(!can(['editor'], ['agent']));
    assert.ok(!can(['editor'], ['admin']));
  });
  it('agent and reader are separate lanes', () => {
    assert.ok(!can(['agent'], ['reader']));
    assert.ok(!can(['reader'], ['agent']));
    assert.ok(!can(['reader'], ['editor']));
    assert.ok(can(['agent', 'reader'], ['reader']));
  });
  it('no roles grant nothing', () => {
    assert.ok(!can([], ['reader']));
  });
  it('recognises only the four roles', () => {
    assert.ok(isRole('agent'));
    assert.ok(!isRole('root'));
    assert.ok(!isRole('Admin'));
    assert.ok(!isRole(1));
  });
});
