/**
 * One trace across two processes: a push to ingestion (its own process), the bus hop, and
 * the store write in aggregation (another process) share one trace id, exported by the
 * real OTLP exporter to a Tempo stand-in.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { TracerProvider } from '@opentelemetry/sdk-trace';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { IngestService } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { startTestNats, type TestNats } from '../../libs/bus/testing.js';
import { clientTracingInterceptor } from '../../libs/runtime/interceptors.js';
import { bearer, eventually, removeDir, startMesh, testSecret, token, type MeshProcess } from '../harness.js';
import { startOtlpSink, type OtlpSink } from '../otlp-sink.js';

describe('distributed trace', () => {
  const secret = testSecret();
  let nats: TestNats;
  let sink: OtlpSink;
  let ingestion: MeshProcess;
  let aggregation: MeshProcess;

  before(async () => {
    nats = await startTestNats();
    sink = await startOtlpSink();
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint };
    [ingestion, aggregation] = await Promise.all([
      startMesh({ target: 'ingestion', secret, natsUrl: nats.url, env }),
      startMesh({ target: 'aggregation', secret, natsUrl: nats.url, env }),
    ]);
  });

  after(async () => {
    await Promise.all([ingestion?.terminate(), aggregation?.terminate()]);
    for (const p of [ingestion, aggregation]) if (p) await removeDir(p.dataDir);
    await sink?.close();
    await nats?.stop();
  });

  it('links the push, its bus hop and the store write into one trace', async () => {
    // The test is the client: it starts the trace and sends traceparent with the call.
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(new TracerProvider());
    const client = createClient(IngestService, createGrpcTransport({ baseUrl: ingestion.grpcUrl, interceptors: [clientTracingInterceptor()] }));
    const agent = await token(secret, ['agent']);
    const traceId = await trace.getTracer('test').startActiveSpan('client push', async (span) => {
      await client.write(
        { series: [{ labels: [{ name: '__name__', value: 'trace_test_total' }], timestampsMs: [BigInt(Date.now())], values: [1] }] },
        bearer(agent),
      );
      span.end();
      return span.spanContext().traceId;
    });

    const spans = await eventually(
      async () => sink.spans.filter((s) => s.traceId === traceId),
      (found) => found.some((s) => s.name === 'store.write'),
      20_000,
    );
    const byName = (name: string) => {
      const s = spans.find((x) => x.name === name || x.name.startsWith(name));
      assert.ok(s, `span ${name} in ${JSON.stringify(spans.map((x) => x.name))}`);
      return s;
    };
    const rpc = byName('telemesh.ingest.v1.IngestService/Write');
    const publish = byName('publish');
    const process = byName('process');
    const write = byName('store.write');
    assert.equal(rpc.serviceName, 'telemesh-ingestion');
    assert.equal(publish.serviceName, 'telemesh-ingestion');
    assert.equal(process.serviceName, 'telemesh-aggregation');
    assert.equal(write.serviceName, 'telemesh-aggregation');
    // Parent links: RPC → publish (producer) → process (consumer) → store write.
    assert.equal(publish.parentSpanId, rpc.spanId);
    assert.equal(process.parentSpanId, publish.spanId);
    assert.equal(write.parentSpanId, process.spanId);
    assert.equal(rpc.kind, 2);
    assert.equal(publish.kind, 4);
    assert.equal(process.kind, 5);
  });
});
