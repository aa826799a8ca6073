/**
 * Ingestion's protocols proven with clients nobody here wrote, against the real single
 * binary (`telemesh serve --target=all`): a plain @grpc/grpc-js client on our .proto files
 * using the Stream RPC, the OpenTelemetry JS metrics SDK exporting over OTLP/gRPC and
 * OTLP/HTTP, and Debian's Prometheus remote-writing into us. Every case then finds its
 * samples through QueryService.Select. Plus the remote_write status codes.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { OTLPMetricExporter as OtlpGrpcExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPMetricExporter as OtlpProtoExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationType, MeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { compress } from 'snappy';
import { WriteRequestSchema } from '../../libs/contracts/prometheus/remote_pb.js';
import { QueryService } from '../../libs/contracts/telemesh/query/v1/query_service_pb.js';
import { findExecutable } from '../../libs/bus/index.js';
import { freePort } from '../../libs/bus/testing.js';
import { bearer, eventually, removeDir, ROOT, startMesh, testSecret, token, type MeshProcess } from '../harness.js';

describe('ingestion interop (target all)', () => {
  const secret = testSecret();
  let mesh: MeshProcess;
  let agent: string;
  let reader: string;

  before(async () => {
    mesh = await startMesh({ target: 'all', secret });
    agent = await token(secret, ['agent']);
    reader = await token(secret, ['reader']);
  });

  after(async () => {
    await mesh?.terminate();
    if (mesh) await removeDir(mesh.dataDir);
  });

  const select = (selector: string) => mesh.connect(QueryService).select({ selector, startMs: BigInt(Date.now() - 3_600_000) }, bearer(reader));
  const labelsOf = (s: { labels: Array<{ name: string; value: string }> }) => Object.fromEntries(s.labels.map((l) => [l.name, l.value]));

  it('streams numbered batches from a plain @grpc/grpc-js client and acks each after the bus ack, with partial success', async () => {
    const def = protoLoader.loadSync(['telemesh/ingest/v1/ingest_service.proto'], { includeDirs: [join(ROOT, 'proto')], longs: String, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { telemesh: { ingest: { v1: { IngestService: grpc.ServiceClientConstructor } } } };
    const client = new pkg.telemesh.ingest.v1.IngestService(new URL(mesh.grpcUrl).host, grpc.credentials.createInsecure());
    const now = Date.now();
    try {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${agent}`);
      const call = (client as unknown as { Stream(md: grpc.Metadata): grpc.ClientDuplexStream<object, { batchSeq: string; result: { acceptedSamples: string; rejectedSamples: string; rejections: Array<{ violation: { field: string; description: string } }> } }> }).Stream(md);
      const acks: Array<{ batchSeq: string; result: { acceptedSamples: string; rejectedSamples: string; rejections: Array<{ violation: { field: string; description: string } }> } }> = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', (a) => acks.push(a));
        call.on('error', reject);
        call.on('end', resolve);
      });
      call.write({
        batchSeq: 1,
        batchId: `grpcjs-${now}-1`,
        series: [
          { labels: [{ name: '__name__', value: 'e2e_stream_total' }, { name: 'host', value: 'a' }], timestampsMs: [String(now - 2000), String(now - 1000)], values: [1, 2], type: 'METRIC_TYPE_COUNTER' },
          { labels: [{ name: '__name__', value: 'bad-name' }], timestampsMs: [String(now)], values: [1] },
        ],
      });
      call.write({
        batchSeq: 2,
        batchId: `grpcjs-${now}-2`,
        histograms: [
          { labels: [{ name: '__name__', value: 'e2e_stream_latency_seconds' }], points: [{ timestampMs: String(now - 500), upperBounds: [0.1, 1], bucketCounts: ['3', '2', '1'], sum: 4.5, count: '6' }] },
        ],
        summaries: [{ labels: [{ name: '__name__', value: 'e2e_stream_rpc_seconds' }], points: [{ timestampMs: String(now - 500), quantiles: [{ quantile: 0.5, value: 0.2 }], sum: 3, count: '10' }] }],
      });
      call.end();
      await done;
      assert.deepEqual(acks.map((a) => a.batchSeq), ['1', '2']);
      assert.equal(acks[0]!.result.acceptedSamples, '2');
      assert.equal(acks[0]!.result.rejectedSamples, '1');
      assert.equal(acks[0]!.result.rejections[0]!.violation.field, 'series[1].labels[0].value');
      assert.match(acks[0]!.result.rejections[0]!.violation.description, /invalid metric name "bad-name"/);
      // 3 buckets + _sum + _count, and 1 quantile + _sum + _count.
      assert.equal(acks[1]!.result.acceptedSamples, '8');
    } finally {
      client.close();
    }
    const got = await eventually(() => select('e2e_stream_total'), (r) => r.series.length === 1 && r.series[0]!.values.length === 2);
    assert.deepEqual(got.series[0]!.values, [1, 2]);
    const buckets = await eventually(() => select('e2e_stream_latency_seconds_bucket'), (r) => r.series.length === 3);
    assert.deepEqual(
      buckets.series.map((s) => [labelsOf(s).le, s.values[0]]).sort(),
      [['+Inf', 6], ['0.1', 3], ['1', 5]],
    );
    await eventually(() => select('{__name__=~"e2e_stream_rpc_seconds.*"}'), (r) => r.series.length === 3);
  });

  async function exportWith(exporter: PushMetricExporter, service: string): Promise<void> {
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
    const provider = new MeterProvider({
      resource: resourceFromAttributes({ 'service.name': service, 'service.namespace': 'e2e', 'service.instance.id': `${service}-1`, 'host.name': 'box' }),
      readers: [reader],
      views: [{ instrumentName: 'e2e.exp.latency', aggregation: { type: AggregationType.EXPONENTIAL_HISTOGRAM } }],
    });
    const meter = provider.getMeter('e2e-meter', '1.2.3');
    meter.createCounter('e2e.requests', { unit: '{request}' }).add(5, { route: '/a' });
    meter.createUpDownCounter('e2e.queue.depth').add(-2);
    const h = meter.createHistogram('e2e.latency', { unit: 's', advice: { explicitBucketBoundaries: [0.1, 1] } });
    h.record(0.05);
    h.record(0.5);
    h.record(3);
    const e = meter.createHistogram('e2e.exp.latency', { unit: 'ms' });
    for (const v of [1, 3, 5, 100]) e.record(v);
    meter.createObservableGauge('e2e.temperature', { unit: 'Cel' }).addCallback((r) => r.observe(21.5));
    // Shutdown collects and exports once more, then stops.
    await provider.shutdown();
  }

  for (const kind of ['grpc', 'http'] as const) {
    it(`receives the OpenTelemetry JS SDK over OTLP/${kind} and maps it as Prometheus does`, async () => {
      const service = `svc-${kind}`;
      const exporter =
        kind === 'grpc'
          ? new OtlpGrpcExporter({ url: mesh.grpcUrl, metadata: (() => { const m = new grpc.Metadata(); m.set('authorization', `Bearer ${agent}`); return m; })() })
          : new OtlpProtoExporter({ url: `${mesh.httpUrl}/v1/metrics`, headers: { authorization: `Bearer ${agent}` } });
      await exportWith(exporter, service);
      const job = `e2e/${service}`;
      const counter = await eventually(() => select(`e2e_requests_total{job="${job}"}`), (r) => r.series.length === 1);
      assert.deepEqual(
        { ...labelsOf(counter.series[0]!), __name__: undefined },
        { __name__: undefined, job, instance: `${service}-1`, route: '/a', otel_scope_name: 'e2e-meter', otel_scope_version: '1.2.3' },
      );
      assert.equal(counter.series[0]!.values.at(-1), 5);
      const gauge = await eventually(() => select(`e2e_temperature_celsius{job="${job}"}`), (r) => r.series.length === 1);
      assert.equal(gauge.series[0]!.values.at(-1), 21.5);
      await eventually(() => select(`e2e_queue_depth{job="${job}"}`), (r) => r.series.length === 1 && r.series[0]!.values[0] === -2);
      const buckets = await eventually(() => select(`e2e_latency_seconds_bucket{job="${job}"}`), (r) => r.series.length === 3);
      assert.deepEqual(buckets.series.map((s) => [labelsOf(s).le, s.values[0]]).sort(), [['+Inf', 3], ['0.1', 1], ['1', 2]]);
      await eventually(() => select(`e2e_latency_seconds_count{job="${job}"}`), (r) => r.series[0]?.values[0] === 3);
      // Exponential histogram → classic buckets at powers of two: 1 → le=1, 3 → le=4, 5 → le=8, 100 → le=128.
      const exp = await eventually(() => select(`e2e_exp_latency_milliseconds_bucket{job="${job}"}`), (r) => r.series.some((s) => labelsOf(s).le === '+Inf'));
      const cum = Object.fromEntries(exp.series.map((s) => [labelsOf(s).le, s.values[0]]));
      assert.equal(cum['+Inf'], 4);
      assert.equal(cum['4'], 2);
      assert.equal(cum['128'], 4);
      const info = await eventually(() => select(`target_info{job="${job}"}`), (r) => r.series.length === 1);
      assert.equal(labelsOf(info.series[0]!).host_name, 'box');
    });
  }

  it('answers OTLP/HTTP JSON with a partial success naming the rejected point', async () => {
    const nowNs = String(BigInt(Date.now()) * 1_000_000n);
    const body = {
      resourceMetrics: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: 'json-svc' } }] },
          scopeMetrics: [
            {
              metrics: [
                { name: 'e2e.json.gauge', gauge: { dataPoints: [{ timeUnixNano: nowNs, asDouble: 7 }, { timeUnixNano: '1000000', asDouble: 8 }] } },
              ],
            },
          ],
        },
      ],
    };
    const res = await fetch(`${mesh.httpUrl}/v1/metrics`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${agent}` }, body: JSON.stringify(body) });
    assert.equal(res.status, 200);
    const json = (await res.json()) as { partialSuccess?: { rejectedDataPoints?: string; errorMessage?: string } };
    assert.equal(json.partialSuccess?.rejectedDataPoints, '1');
    assert.match(json.partialSuccess?.errorMessage ?? '', /data_points\[1\].*older than the accepted age \(ingestion\.maxSampleAgeMs/);
    await eventually(() => select('e2e_json_gauge{job="json-svc"}'), (r) => r.series[0]?.values[0] === 7);
  });

  it('answers remote_write with 204, 400 for malformed or rejected samples (keeping the good ones), 401 without a token', async () => {
    const url = `${mesh.httpUrl}/api/v1/write`;
    const headers = { 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy', 'x-prometheus-remote-write-version': '0.1.0', authorization: `Bearer ${agent}` };
    const now = Date.now();
    const body = async (names: string[]) =>
      compress(Buffer.from(toBinary(WriteRequestSchema, create(WriteRequestSchema, { timeseries: names.map((n) => ({ labels: [{ name: '__name__', value: n }, { name: 'job', value: 'rw' }], samples: [{ value: 1.5, timestamp: BigInt(now) }] })) }))));
    assert.equal((await fetch(url, { method: 'POST', headers, body: await body(['e2e_rw_ok']) })).status, 204);
    const partial = await fetch(url, { method: 'POST', headers, body: await body(['e2e_rw_kept', '0bad']) });
    assert.equal(partial.status, 400);
    assert.match(await partial.text(), /1 samples accepted, 1 rejected:\ntimeseries\[1\]\.labels\[0\]\.value: invalid metric name "0bad"/);
    const garbage = await fetch(url, { method: 'POST', headers, body: Buffer.from('not snappy at all') });
    assert.equal(garbage.status, 400);
    const { authorization: _a, ...anonymous } = headers;
    assert.equal((await fetch(url, { method: 'POST', headers: anonymous, body: await body(['e2e_rw_anon']) })).status, 401);
    await eventually(() => select('{__name__=~"e2e_rw_ok|e2e_rw_kept"}'), (r) => r.series.length === 2);
  });

  it("receives Debian's Prometheus remote_write", async () => {
    // `npm test` installs it first (scripts/ensure-deps.sh --test): missing is a failure, not a skip.
    const prometheus = await findExecutable('prometheus');
    assert.ok(prometheus, 'prometheus is not installed: apt-get install -y --no-install-recommends prometheus');
    const dir = await mkdtemp(join(tmpdir(), 'telemesh-prom-'));
    const port = await freePort();
    const config = [
      'global:',
      '  scrape_interval: 1s',
      'scrape_configs:',
      '  - job_name: prom_self',
      '    static_configs:',
      `      - targets: ['127.0.0.1:${port}']`,
      'remote_write:',
      `  - url: ${mesh.httpUrl}/api/v1/write`,
      '    authorization:',
      `      credentials: ${agent}`,
      '    queue_config:',
      '      batch_send_deadline: 1s',
      '      min_backoff: 100ms',
      '',
    ].join('\n');
    await writeFile(join(dir, 'prometheus.yml'), config);
    let out = '';
    const child: ChildProcess = spawn(
      prometheus,
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const got = await eventually(() => select('prometheus_build_info{job="prom_self"}'), (r) => r.series.length === 1, 45_000).catch((err: Error) => {
        throw new Error(`${err.message}\nprometheus output:\n${out.slice(-3000)}`);
      });
      assert.equal(labelsOf(got.series[0]!).instance, `127.0.0.1:${port}`);
      await eventually(() => select('up{job="prom_self"}'), (r) => r.series[0]?.values.includes(1) === true, 20_000);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
