/**
 * The ingestion module in-process against a real nats-server, real gRPC and HTTP over
 * loopback: stream acks and replay dedupe, privacy scrubbing on the bus, rate limit and
 * active-series cap (over gRPC and remote_write), self-metrics, and the bus going away.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { compress } from 'snappy';
import { pino } from 'pino';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { SeriesSchema, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { SampleBatchSchema, type SampleBatch } from '../../libs/contracts/telemesh/events/v1/events_pb.js';
import { IngestService, StreamRequestSchema, type StreamRequest, type StreamResponse } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { WriteRequestSchema } from '../../libs/contracts/prometheus/remote_pb.js';
import { ExportMetricsServiceRequestSchema, MetricsService } from '../../libs/contracts/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js';
import { connectBus, CONSUMERS, type Bus, type ConsumerHandle } from '../../libs/bus/index.js';
import { freePort, startTestNats, waitFor, type TestNats } from '../../libs/bus/testing.js';
import { authInterceptor, defaultAccessPolicy } from '../../libs/runtime/auth/index.js';
import { createTestAuth } from '../../libs/runtime/auth/testing.js';
import { loadConfig } from '../../libs/runtime/config.js';
import { HealthRegistry } from '../../libs/runtime/health.js';
import { errorInterceptor } from '../../libs/runtime/interceptors.js';
import { createRegistry } from '../../libs/runtime/metrics.js';
import type { Started } from '../../libs/runtime/modules.js';
import { RpcServer } from '../../libs/runtime/server.js';
import { hashValue } from './scrub.js';
import { startIngestion } from './module.js';

const logger = pino({ level: process.env['TELEMESH_LOG_LEVEL'] ?? 'silent' });
// The receivers and the bus take their tracer from the global API.
const spans = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });

function series(name: string, labels: Record<string, string>, samples: Array<[number, number]>): Series {
  return create(SeriesSchema, {
    labels: [{ name: '__name__', value: name }, ...Object.entries(labels).map(([n, v]) => ({ name: n, value: v }))],
    timestampsMs: samples.map(([t]) => BigInt(t)),
    values: samples.map(([, v]) => v),
  });
}

async function codeOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail('expected the call to fail');
}

describe('ingestion module (real NATS, real gRPC)', () => {
  const auth = createTestAuth();
  const registry = createRegistry();
  let nats: TestNats;
  let bus: Bus;
  let server: RpcServer;
  let module: Started<void>;
  let consumer: ConsumerHandle;
  const published: SampleBatch[] = [];
  const base = loadConfig();
  let config = base;
  const client = () => createClient(IngestService, createGrpcTransport({ baseUrl: server.urls.grpc }));
  const bearer = async (tenant: string) => ({ headers: { authorization: `Bearer ${await auth.token(['agent'], tenant)}` } });

  before(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(provider);
    config = {
      ...base,
      server: { ...base.server, httpPort: 0, grpcPort: 0 },
      ingestion: { ...base.ingestion, ratePerSecond: 1000, burstSamples: 5000, maxActiveSeries: 50, publishTimeoutMs: 1500, tenantOverrides: 'narrow:maxActiveSeries=2', otlpGrpcPort: await freePort(), otlpHttpPort: await freePort() },
    };
    nats = await startTestNats();
    bus = await connectBus({ url: nats.url, name: 'ingestion-test', logger, registry, requestTimeoutMs: 1500 });
    await bus.ensureTopology();
    const health = new HealthRegistry();
    server = new RpcServer(config.server, {
      logger,
      registry,
      health,
      interceptors: [errorInterceptor(logger), authInterceptor({ verifier: auth.verifier, policy: defaultAccessPolicy, logger })],
      readiness: () => ({ ready: true, modules: new Map() }),
    });
    await server.listen();
    module = await startIngestion({ config, server, bus, registry, health, logger, verifier: auth.verifier });
    consumer = await bus.consume(CONSUMERS.aggregation, SampleBatchSchema, (b) => {
      published.push(b);
    });
  });

  after(async () => {
    await consumer?.stop();
    await module?.stop?.();
    await server?.close();
    await bus?.close();
    await nats?.stop();
    await provider.shutdown();
    trace.disable();
    propagation.disable();
    context.disable();
  });

  it('acks stream batches in order after the bus stored them; a replayed batch id is stored once; sensitive labels are hashed', async () => {
    const now = Date.now();
    const opts = await bearer('acme');
    async function* batches(reqs: StreamRequest[]) {
      for (const r of reqs) yield r;
    }
    const reqs = [1, 2, 3].map((seq) =>
      create(StreamRequestSchema, {
        batchSeq: BigInt(seq),
        batchId: `agent-1/${seq}`,
        series: [series('stream_test_total', { seq: String(seq), password: 'hunter2', owner: 'bob@example.com' }, [[now - 10, seq]])],
        seriesStartTimesMs: [BigInt(now - 60_000)],
      }),
    );
    const acks: StreamResponse[] = [];
    for await (const a of client().stream(batches(reqs), opts)) acks.push(a);
    assert.deepEqual(acks.map((a) => a.batchSeq), [1n, 2n, 3n]);
    assert.ok(acks.every((a) => a.result?.acceptedSamples === 1n));
    // The agent reconnects and replays batch 2 (it never saw the ack): acked again, stored once.
    const replay: StreamResponse[] = [];
    for await (const a of client().stream(batches([reqs[1]!]), opts)) replay.push(a);
    assert.equal(replay[0]!.result?.acceptedSamples, 1n);
    await waitFor(() => published.filter((b) => b.tenant === 'acme').length >= 3);
    await new Promise((r) => setTimeout(r, 300));
    const mine = published.filter((b) => b.tenant === 'acme');
    assert.deepEqual(mine.map((b) => b.batchId).sort(), ['s:agent-1/1', 's:agent-1/2', 's:agent-1/3']);
    assert.deepEqual(mine[0]!.startTimesMs, [BigInt(now - 60_000)], 'start times travel with their series');
    const labels = Object.fromEntries(mine[0]!.series[0]!.labels.map((l) => [l.name, l.value]));
    assert.equal(labels.password, hashValue('hunter2'));
    assert.equal(labels.owner, hashValue('bob@example.com'));
    const metrics = await registry.metrics();
    assert.match(metrics, /telemesh_ingestion_scrubbed_labels_total\{tenant="acme",reason="name",action="hash"\} 4/);
    assert.match(metrics, /telemesh_ingestion_scrubbed_labels_total\{tenant="acme",reason="value",action="hash"\} 4/);
  });

  it('serves Stream to Connect JSON clients (series as objects) as it serves binary ones', async () => {
    const now = Date.now();
    const json = createClient(IngestService, createConnectTransport({ baseUrl: server.urls.grpc, httpVersion: '2', useBinaryFormat: false }));
    async function* batches() {
      for (const seq of [1, 2]) {
        yield create(StreamRequestSchema, {
          batchSeq: BigInt(seq),
          batchId: `json-agent/${seq}`,
          series: [series('json_stream_total', { seq: String(seq) }, [[now - 5, seq]])],
        });
      }
    }
    const acks: StreamResponse[] = [];
    for await (const a of json.stream(batches(), await bearer('jsonco'))) acks.push(a);
    assert.deepEqual(acks.map((a) => [a.batchSeq, a.result?.acceptedSamples]), [[1n, 1n], [2n, 1n]]);
    await waitFor(() => published.filter((b) => b.tenant === 'jsonco').length >= 2);
    const mine = published.filter((b) => b.tenant === 'jsonco').sort((a, b) => a.batchId.localeCompare(b.batchId));
    assert.deepEqual(
      mine.map((b) => Object.fromEntries(b.series[0]!.labels.map((l) => [l.name, l.value]))),
      [1, 2].map((seq) => ({ __name__: 'json_stream_total', seq: String(seq) })),
    );
    assert.deepEqual(mine.map((b) => b.series[0]!.values), [[1], [2]]);
    // Unary Write over Connect JSON (HTTP/1.1, as curl sends it) is unaffected.
    const unary = createClient(IngestService, createConnectTransport({ baseUrl: server.urls.http, httpVersion: '1.1', useBinaryFormat: false }));
    const res = await unary.write({ requestId: 'json-w1', series: [series('json_write_total', {}, [[now, 1]])] }, await bearer('jsonco'));
    assert.equal(res.result?.acceptedSamples, 1n);
  });

  it('rate-limits per tenant with a retry hint: resource_exhausted over gRPC, 429 + Retry-After over remote_write', async () => {
    const now = Date.now();
    const many = (n: number, name: string) => [series(name, {}, Array.from({ length: n }, (_, i) => [now - n + i, i] as [number, number]))];
    const opts = await bearer('ratey');
    assert.equal((await client().write({ series: many(4000, 'rate_a') }, opts)).result?.acceptedSamples, 4000n);
    const err = await codeOf(client().write({ series: many(4000, 'rate_b') }, opts));
    assert.equal(err.code, Code.ResourceExhausted);
    assert.match(err.rawMessage, /ingestion\.ratePerSecond = 1000/);
    assert.ok(Number(err.metadata.get('retry-after')) >= 1);
    const body = await compress(Buffer.from(toBinary(WriteRequestSchema, create(WriteRequestSchema, { timeseries: [{ labels: [{ name: '__name__', value: 'rate_c' }], samples: Array.from({ length: 4000 }, (_, i) => ({ value: i, timestamp: BigInt(now - 4000 + i) })) }] }))));
    const res = await fetch(`${server.urls.http}/api/v1/write`, { method: 'POST', headers: { ...opts.headers, 'content-encoding': 'snappy' }, body });
    assert.equal(res.status, 429);
    assert.ok(Number(res.headers.get('retry-after')) >= 1);
    // Another tenant has its own bucket.
    assert.equal((await client().write({ series: many(10, 'rate_d') }, await bearer('calm'))).result?.acceptedSamples, 10n);
    assert.match(await registry.metrics(), /telemesh_ingestion_refused_requests_total\{tenant="ratey",reason="rate_limited"\} 2/);
  });

  it('caps active series per tenant, naming the metric that crossed it, and shows how close the tenant is', async () => {
    const now = Date.now();
    const opts = await bearer('wide');
    const first = await client().write({ series: Array.from({ length: 50 }, (_, i) => series('card_ok', { i: String(i) }, [[now, 1]])) }, opts);
    assert.equal(first.result?.acceptedSamples, 50n);
    const err = await codeOf(client().write({ series: [series('card_ok', { i: '0' }, [[now + 1, 2]]), series('card_new', { i: 'x' }, [[now, 1]])] }, opts));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /series\[1\]\.labels: series of metric "card_new" not accepted: tenant wide has reached ingestion\.maxActiveSeries = 50 active series; 1 samples accepted, 1 rejected/);
    const metrics = await registry.metrics();
    assert.match(metrics, /telemesh_ingestion_limit_utilisation_ratio\{tenant="wide",limit="active_series"\} 1\n/);
    assert.match(metrics, /telemesh_ingestion_active_series\{tenant="wide"\} 50/);
    assert.match(metrics, /telemesh_ingestion_rejected_samples_total\{tenant="wide",reason="active_series"\} 1/);
  });

  it('traces a remote_write request as a SERVER span continuing the caller trace, down to the bus publish', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const body = await compress(
      Buffer.from(
        toBinary(
          WriteRequestSchema,
          create(WriteRequestSchema, {
            timeseries: [{ labels: [{ name: '__name__', value: 'traced_total' }], samples: [{ value: 1, timestamp: BigInt(Date.now()) }], exemplars: [{ value: 1, timestamp: BigInt(Date.now()) }] }],
          }),
        ),
      ),
    );
    const res = await fetch(`${server.urls.http}/api/v1/write`, {
      method: 'POST',
      headers: { ...(await bearer('traced')).headers, 'content-encoding': 'snappy', traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      body,
    });
    assert.equal(res.status, 204);
    const mine = spans.getFinishedSpans().filter((sp) => sp.spanContext().traceId === traceId);
    // (The test's own consumer may add its `process` span to the same trace.)
    const names = mine.map((sp) => sp.name);
    assert.ok(names.includes('/api/v1/write') && names.includes('publish telemesh.samples.v1'), names.join(', '));
    const serverSpan = mine.find((sp) => sp.name === '/api/v1/write')!;
    assert.equal(serverSpan.parentSpanContext?.spanId, '00f067aa0ba902b7', 'continues the caller span');
    // The exemplar has no place in the data model: the request succeeds and it is counted.
    assert.match(await registry.metrics(), /telemesh_ingestion_remote_write_dropped_total\{tenant="traced",kind="exemplar"\} 1/);
  });

  it('applies per-tenant overrides to that tenant only', async () => {
    const now = Date.now();
    const three = Array.from({ length: 3 }, (_, i) => series('narrow_total', { i: String(i) }, [[now, 1]]));
    const err = await codeOf(client().write({ series: three }, await bearer('narrow')));
    assert.match(err.rawMessage, /ingestion\.maxActiveSeries = 2 active series; 2 samples accepted, 1 rejected/);
    assert.equal((await client().write({ series: three }, await bearer('broad'))).result?.acceptedSamples, 3n);
  });

  it('serves OTLP on the extra listeners (ingestion.otlpGrpcPort, ingestion.otlpHttpPort) with the same auth', async () => {
    const opts = await bearer('otlp-extra');
    const now = BigInt(Date.now()) * 1_000_000n;
    const request = (name: string) =>
      create(ExportMetricsServiceRequestSchema, {
        resourceMetrics: [{ resource: { attributes: [{ key: 'service.name', value: { value: { case: 'stringValue', value: 'extra' } } }] }, scopeMetrics: [{ metrics: [{ name, data: { case: 'gauge', value: { dataPoints: [{ timeUnixNano: now, value: { case: 'asDouble', value: 1 } }] } } }] }] }],
      });
    const grpcClient = createClient(MetricsService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${config.ingestion.otlpGrpcPort}` }));
    const res = await grpcClient.export(request('extra.grpc'), opts);
    assert.equal(res.partialSuccess, undefined);
    assert.equal((await codeOf(grpcClient.export(request('extra.grpc'), {}))).code, Code.Unauthenticated);
    const http = await fetch(`http://127.0.0.1:${config.ingestion.otlpHttpPort}/v1/metrics`, {
      method: 'POST',
      headers: { ...opts.headers, 'content-type': 'application/x-protobuf' },
      body: Buffer.from(toBinary(ExportMetricsServiceRequestSchema, request('extra.http'))),
    });
    assert.equal(http.status, 200);
    await waitFor(() => published.filter((b) => b.tenant === 'otlp-extra').length >= 2);
    const names = published.filter((b) => b.tenant === 'otlp-extra').flatMap((b) => b.series.map((x) => x.labels.find((l) => l.name === '__name__')!.value));
    assert.deepEqual(names.sort(), ['extra_grpc', 'extra_http']);
  });

  it('answers unavailable with a retry hint (503 over remote_write) when the bus is gone, and acks nothing', async () => {
    const before = published.length;
    await consumer.stop();
    await nats.stop();
    const now = Date.now();
    const opts = await bearer('outage');
    const err = await codeOf(client().write({ series: [series('outage_total', {}, [[now, 1]])] }, opts));
    assert.equal(err.code, Code.Unavailable, err.rawMessage);
    assert.ok(Number(err.metadata.get('retry-after')) >= 1);
    const body = await compress(Buffer.from(toBinary(WriteRequestSchema, create(WriteRequestSchema, { timeseries: [{ labels: [{ name: '__name__', value: 'outage_total' }], samples: [{ value: 1, timestamp: BigInt(now) }] }] }))));
    const res = await fetch(`${server.urls.http}/api/v1/write`, { method: 'POST', headers: { ...opts.headers, 'content-encoding': 'snappy' }, body });
    assert.equal(res.status, 503);
    assert.ok(Number(res.headers.get('retry-after')) >= 1);
    assert.equal(published.length, before);
  });
});
