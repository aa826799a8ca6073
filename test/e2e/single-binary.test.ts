/**
 * The whole mesh in one process (`telemesh serve --target=all`, embedded nats-server and
 * DuckDB), used from outside through its real protocols: Connect over HTTP/1.1, gRPC over
 * HTTP/2, plain HTTP probes, and the CLI.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { SeriesSchema, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { HealthCheckResponse_ServingStatus as Status, Health } from '../../libs/contracts/grpc/health/v1/health_pb.js';
import { WriteResultSchema } from '../../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import { IngestService } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { QueryService } from '../../libs/contracts/telemesh/query/v1/query_service_pb.js';
import { HeartbeatService } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import { AlertingService } from '../../libs/contracts/telemesh/alerting/v1/alerting_service_pb.js';
import { NotificationService } from '../../libs/contracts/telemesh/notify/v1/notify_service_pb.js';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { bearer, eventually, removeDir, ROOT, runCli, startMesh, testSecret, token, type MeshProcess } from '../harness.js';

function series(name: string, labels: Record<string, string>, samples: Array<[number, number]>): Series {
  return create(SeriesSchema, {
    labels: [{ name: '__name__', value: name }, ...Object.entries(labels).map(([n, v]) => ({ name: n, value: v }))],
    timestampsMs: samples.map(([t]) => BigInt(t)),
    values: samples.map(([, v]) => v),
  });
}

async function expectCode(p: Promise<unknown>, code: Code): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    const ce = ConnectError.from(err);
    assert.equal(Code[ce.code], Code[code], ce.rawMessage);
    return ce;
  }
  assert.fail(`expected ${Code[code]}, but the call succeeded`);
}

describe('single binary (target all)', () => {
  const secret = testSecret();
  let mesh: MeshProcess;
  let agent: string;
  let reader: string;
  const now = Date.now();

  before(async () => {
    mesh = await startMesh({ target: 'all', secret });
    agent = await token(secret, ['agent']);
    reader = await token(secret, ['reader']);
  });

  after(async () => {
    await mesh?.terminate();
    if (mesh) await removeDir(mesh.dataDir);
  });

  it('answers health over gRPC per service and overall, and the HTTP probes', async () => {
    const health = mesh.grpc(Health);
    assert.equal((await health.check({ service: '' })).status, Status.SERVING);
    for (const s of [IngestService, QueryService, HeartbeatService, AlertingService, NotificationService]) {
      assert.equal((await health.check({ service: s.typeName })).status, Status.SERVING, s.typeName);
    }
    await expectCode(health.check({ service: 'no.such.Service' }), Code.NotFound);
    assert.equal((await fetch(`${mesh.httpUrl}/livez`)).status, 200);
    const ready = await fetch(`${mesh.httpUrl}/readyz`);
    assert.equal(ready.status, 200);
    assert.match(await ready.text(), /aggregation: running/);
    const metrics = await (await fetch(`${mesh.httpUrl}/metrics`)).text();
    assert.match(metrics, /telemesh_server_requests_total\{procedure="grpc.health.v1.Health\/Check",code="ok"\}/);
    assert.match(metrics, /telemesh_process_cpu_seconds_total/);
  });

  it('stores pushed samples end to end and returns them for a selector and range', async () => {
    const ingest = mesh.connect(IngestService);
    const res = await ingest.write(
      { series: [series('e2e_temp_celsius', { room: 'lab' }, [[now - 2000, 20.5], [now - 1000, 21]]), series('e2e_temp_celsius', { room: 'hall' }, [[now - 1000, 18]])] },
      bearer(agent),
    );
    assert.equal(res.result?.acceptedSamples, 3n);
    const query = mesh.grpc(QueryService);
    const got = await eventually(
      () => query.select({ selector: 'e2e_temp_celsius{room="lab"}', startMs: BigInt(now - 60_000), endMs: BigInt(now + 1000) }, bearer(reader)),
      (r) => r.series.length === 1 && r.series[0]!.values.length === 2,
    );
    assert.deepEqual(got.series[0]!.values, [20.5, 21]);
    assert.deepEqual(got.series[0]!.timestampsMs, [BigInt(now - 2000), BigInt(now - 1000)]);
    const names = await query.labelValues({ name: 'room', selectors: ['e2e_temp_celsius'], startMs: BigInt(now - 60_000), endMs: BigInt(now + 1000) }, bearer(reader));
    assert.deepEqual(names.values, ['hall', 'lab']);
  });

  it('rejects a bad metric name and an out-of-range timestamp naming the field, and keeps the good samples', async () => {
    const ingest = mesh.grpc(IngestService);
    const err = await expectCode(
      ingest.write(
        {
          series: [
            series('e2e_good_total', { job: 'x' }, [[now - 500, 1]]),
            series('1bad-name', { job: 'x' }, [[now - 500, 2]]),
            series('e2e_mixed_total', { job: 'x' }, [[now - 400, 3], [-5, 4]]),
          ],
        },
        bearer(agent),
      ),
      Code.InvalidArgument,
    );
    assert.match(err.rawMessage, /series\[1\]\.labels\[0\]\.value: invalid metric name "1bad-name"/);
    const [detail] = err.findDetails(WriteResultSchema);
    assert.ok(detail, 'a WriteResult detail is attached');
    assert.equal(detail.acceptedSamples, 2n);
    assert.equal(detail.rejectedSamples, 2n);
    assert.deepEqual(
      detail.rejections.map((r) => r.violation?.field),
      ['series[1].labels[0].value', 'series[2].timestamps_ms[1]'],
    );
    assert.match(detail.rejections[1]!.violation!.description, /ingestion\.maxSampleAgeMs/);
    const query = mesh.connect(QueryService);
    const good = await eventually(
      () => query.select({ selector: '{job="x"}', startMs: BigInt(now - 60_000), endMs: BigInt(now + 1000) }, bearer(reader)),
      (r) => r.series.length === 2,
    );
    assert.deepEqual(
      good.series.map((s) => [s.labels.find((l) => l.name === '__name__')?.value, s.values]),
      [
        ['e2e_good_total', [1]],
        ['e2e_mixed_total', [3]],
      ],
    );
  });

  it('refuses missing, forged and alg:none tokens with unauthenticated, and a missing role with permission_denied', async () => {
    const query = mesh.connect(QueryService);
    const req = { selector: 'up' };
    await expectCode(query.select(req), Code.Unauthenticated);
    await expectCode(query.select(req, bearer(await token(testSecret(), ['reader']))), Code.Unauthenticated);
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'x', tenant: 'acme', roles: ['admin'], exp: Math.floor(Date.now() / 1000) + 60 })}.`;
    await expectCode(query.select(req, bearer(none)), Code.Unauthenticated);
    const denied = await expectCode(query.select(req, bearer(agent)), Code.PermissionDenied);
    assert.match(denied.rawMessage, /reader/);
    await expectCode(mesh.connect(IngestService).write({ series: [] }, bearer(reader)), Code.PermissionDenied);
  });

  it('never shows one tenant the samples of another', async () => {
    const agentB = await token(secret, ['agent'], 'globex');
    const readerB = await token(secret, ['reader'], 'globex');
    await mesh.connect(IngestService).write({ series: [series('e2e_secret_total', { owner: 'globex' }, [[now - 100, 42]])] }, bearer(agentB));
    const query = mesh.connect(QueryService);
    await eventually(
      () => query.select({ selector: 'e2e_secret_total', startMs: BigInt(now - 60_000), endMs: BigInt(now + 1000) }, bearer(readerB)),
      (r) => r.series.length === 1,
    );
    const seenByA = await query.select({ selector: '{__name__=~"e2e_.*"}', startMs: BigInt(now - 60_000), endMs: BigInt(now + 1000) }, bearer(reader));
    assert.ok(seenByA.series.length > 0);
    assert.ok(!seenByA.series.some((s) => s.labels.some((l) => l.value === 'e2e_secret_total')), 'tenant acme must not see globex');
    const namesB = await query.labelValues({ name: '__name__' }, bearer(readerB));
    assert.deepEqual(namesB.values, ['e2e_secret_total']);
  });

  it('answers unimplemented for the RPCs not built yet', async () => {
    const admin = await token(secret, ['admin']);
    await expectCode(mesh.grpc(AlertingService).listAlerts({}, bearer(admin)), Code.Unimplemented);
    await expectCode(mesh.connect(AlertingService).listRuleGroups({}, bearer(admin)), Code.Unimplemented);
    await expectCode(mesh.connect(NotificationService).listSilences({}, bearer(admin)), Code.Unimplemented);
  });

  it('works with a plain @grpc/grpc-js client built from the .proto files', async () => {
    const def = protoLoader.loadSync(['grpc/health/v1/health.proto', 'telemesh/ingest/v1/ingest_service.proto'], {
      includeDirs: [join(ROOT, 'proto')],
      longs: String,
      enums: String,
      defaults: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
      telemesh: { ingest: { v1: { IngestService: grpc.ServiceClientConstructor } } };
    };
    const address = new URL(mesh.grpcUrl).host;
    const health = new pkg.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
    const ingest = new pkg.telemesh.ingest.v1.IngestService(address, grpc.credentials.createInsecure());
    const call = <T>(client: grpc.Client, method: string, req: object, md = new grpc.Metadata()) =>
      new Promise<T>((resolve, reject) =>
        (client as unknown as Record<string, (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, v: T) => void) => void>)[method]!(req, md, (e, v) => (e ? reject(e) : resolve(v))),
      );
    try {
      assert.deepEqual(await call(health, 'Check', { service: '' }), { status: 'SERVING' });
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${agent}`);
      const res = await call<{ result: { acceptedSamples: string } }>(ingest, 'Write', { series: [{ labels: [{ name: '__name__', value: 'e2e_grpcjs_total' }], timestampsMs: [String(now - 5)], values: [9] }] }, md);
      assert.equal(res.result.acceptedSamples, '1');
      await assert.rejects(call(ingest, 'Write', { series: [] }), (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED);
    } finally {
      health.close();
      ingest.close();
    }
  });

  it('serves Connect JSON over plain HTTP/1.1 (curl-style)', async () => {
    const res = await fetch(`${mesh.httpUrl}/telemesh.ingest.v1.IngestService/Write`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${agent}` },
      body: JSON.stringify({ series: [{ labels: [{ name: '__name__', value: 'e2e_json_total' }], timestampsMs: [String(now - 10)], values: [7] }] }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { result: { acceptedSamples: '1' } });
  });

  it('pushes and queries with the CLI', async () => {
    const env = { TELEMESH_URL: mesh.httpUrl, TELEMESH_TOKEN: await token(secret, ['admin']) };
    const pushed = await runCli(['push', `e2e_cli_celsius{room="lab"} 21.5 ${now - 50}`, `e2e_cli_celsius{room="lab"} 22 ${now - 40}`], env);
    assert.equal(pushed.code, 0, pushed.stderr + pushed.stdout);
    assert.match(pushed.stdout, /accepted 2 samples/);
    const piped = await runCli(['push'], env, `# comment\ne2e_cli_celsius{room="hall"} 19 ${now - 30}\n`);
    assert.equal(piped.code, 0, piped.stderr + piped.stdout);
    const out = await eventually(
      () => runCli(['query', 'e2e_cli_celsius', '--start=-5m', '--json'], env),
      (r) => r.code === 0 && (JSON.parse(r.stdout) as unknown[]).length === 2,
    );
    const parsed = JSON.parse(out.stdout) as Array<{ labels: Record<string, string>; samples: Array<[number, number]> }>;
    assert.deepEqual(parsed.find((s) => s.labels.room === 'lab')?.samples, [
      [now - 50, 21.5],
      [now - 40, 22],
    ]);
    const bad = await runCli(['push', 'e2e_cli_celsius{room="lab"} notanumber'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /not a number/);
  });
});

describe('graceful shutdown', () => {
  it('exits 0 on SIGTERM within a few seconds and keeps every acknowledged sample', async () => {
    const secret = testSecret();
    const first = await startMesh({ target: 'all', secret });
    const agent = await token(secret, ['agent']);
    const reader = await token(secret, ['reader']);
    const now = Date.now();
    const ingest = first.grpc(IngestService);
    let acked = 0;
    for (let i = 0; i < 20; i++) {
      const res = await ingest.write({ series: [series('e2e_shutdown_total', { i: String(i) }, [[now - 1000 + i, i]])] }, bearer(agent));
      acked += Number(res.result?.acceptedSamples ?? 0);
    }
    const started = Date.now();
    const code = await first.terminate();
    assert.equal(code, 0, first.output());
    assert.ok(Date.now() - started < 10_000, `shutdown took ${Date.now() - started} ms`);
    const second = await startMesh({ target: 'all', secret, dataDir: first.dataDir });
    try {
      const res = await eventually(
        () => second.connect(QueryService).select({ selector: 'e2e_shutdown_total', startMs: BigInt(now - 60_000), endMs: BigInt(now + 1000) }, bearer(reader)),
        (r) => r.series.length === acked,
        // Usually immediate. A message the first process had pulled but not yet handled
        // when it stopped comes back only when its ack_wait (30 s) runs out, which a busy
        // machine occasionally shows; later than that would be a loss.
        40_000,
      );
      assert.equal(res.series.reduce((n, s) => n + s.values.length, 0), 20);
    } finally {
      await second.terminate();
      await removeDir(first.dataDir);
    }
  });
});
