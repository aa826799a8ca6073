import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test, type TestContext } from 'node:test';
import { create, equals } from '@bufbuild/protobuf';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { context, propagation, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { Registry } from 'prom-client';
import { SeriesSchema } from '../contracts/telemesh/common/v1/common_pb.js';
import { AlertEventSchema, SampleBatchSchema, type SampleBatch } from '../contracts/telemesh/events/v1/events_pb.js';
import { InvalidArgumentError, StartupError, UnavailableError } from '../runtime/errors.js';
import { connectBus, type Bus, type DeliveryContext } from './bus.js';
import { PoisonMessageError } from './errors.js';
import { alertsSubject, samplesSubject } from './subjects.js';
import { freePort, startTestNats, testLogger, waitFor, type TestNats } from './testing.js';
import { CONSUMERS, STREAMS } from './topology.js';

const logger = testLogger();

// One tracer provider for the whole file: the bus takes its tracer from the global API.
const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
before(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
});
after(async () => {
  await provider.shutdown();
  trace.disable();
  propagation.disable();
  context.disable();
});

interface Env {
  nats: TestNats;
  bus: Bus;
  registry: Registry;
}

/** A fresh server and bus per test, so no test sees another's messages. */
async function setup(t: TestContext, ensure = true): Promise<Env> {
  const nats = await startTestNats();
  const registry = new Registry();
  const bus = await connectBus({ url: nats.url, name: 'bus-test', logger, registry }).catch(async (err: unknown) => {
    await nats.stop();
    throw err;
  });
  // Bus first: closing it while the server is still up lets it drain instead of timing out.
  t.after(async () => {
    await bus.close();
    await nats.stop();
  });
  if (ensure) await bus.ensureTopology();
  return { nats, bus, registry };
}

function batch(tenant: string, batchId: string, value = 1): SampleBatch {
  return create(SampleBatchSchema, {
    tenant,
    batchId,
    receivedAtMs: 1_700_000_000_000n,
    series: [
      create(SeriesSchema, {
        labels: [
          { name: '__name__', value: 'cpu_usage' },
          { name: 'host', value: 'a' },
        ],
        timestampsMs: [1_700_000_000_000n, 1_700_000_015_000n],
        values: [value, value + 0.5],
      }),
    ],
  });
}

async function counterValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return hit?.value ?? 0;
}

async function consumerState(url: string, stream: string, durable: string) {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    return await jsm.consumers.info(stream, durable);
  } finally {
    await nc.close();
  }
}

describe('connectBus', () => {
  test('an unreachable URL fails with StartupError naming nats.url and the URL, without credentials', async () => {
    const port = await freePort();
    const url = `nats://telemesh:s3cret@127.0.0.1:${port}`;
    await assert.rejects(connectBus({ url, name: 'x', logger, registry: new Registry(), connectTimeoutMs: 1000 }), (err: unknown) => {
      assert.ok(err instanceof StartupError);
      assert.equal(err.setting, 'nats.url');
      assert.ok(err.message.includes(`127.0.0.1:${port}`), err.message);
      assert.ok(err.message.includes('TELEMESH_NATS_URL'), err.message);
      assert.ok(!err.message.includes('s3cret'), err.message);
      return true;
    });
  });

  test('a NATS server without JetStream fails with StartupError naming nats.url', async () => {
    const port = await freePort();
    const plain = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    try {
      const url = `nats://127.0.0.1:${port}`;
      const up = await waitFor(async () => {
        try {
          await (await connect({ servers: url })).close();
          return true;
        } catch {
          return false;
        }
      });
      assert.equal(up, true);
      await assert.rejects(connectBus({ url, name: 'x', logger, registry: new Registry() }), (err: unknown) => {
        assert.ok(err instanceof StartupError);
        assert.equal(err.setting, 'nats.url');
        assert.match(err.message, /JetStream/);
        return true;
      });
    } finally {
      plain.kill('SIGTERM');
      await new Promise((resolve) => (plain.exitCode !== null ? resolve(null) : plain.once('exit', resolve)));
    }
  });

  test('onClosed fires when the connection closes without close()', async (t) => {
    const nats = await startTestNats();
    t.after(() => nats.stop());
    let reported: Error | undefined | 'not called' = 'not called';
    const onClosed = (err: Error | undefined): void => {
      reported = err;
    };
    const bus = await connectBus({ url: nats.url, name: 'x', logger, registry: new Registry(), onClosed });
    // A deliberate close() is not "unexpected".
    const closedByUs = await connectBus({ url: nats.url, name: 'y', logger, registry: new Registry(), onClosed });
    await closedByUs.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(reported, 'not called');
    // Force the underlying connection closed, as a fatal server error would. (Stopping the
    // server is not enough: the bus reconnects forever by design.)
    await (bus as unknown as { nc: { close(): Promise<void> } }).nc.close();
    assert.equal(await waitFor(() => reported !== 'not called'), true);
    await bus.close();
  });

  test('several buses may share one registry; close() is idempotent', async (t) => {
    const { nats, bus, registry } = await setup(t, false);
    const other = await connectBus({ url: nats.url, name: 'bus-test-2', logger, registry });
    assert.equal(other.isConnected(), true);
    await other.close();
    await other.close();
    assert.equal(other.isConnected(), false);
    assert.equal(bus.isConnected(), true);
  });
});

describe('publish', () => {
  test('publishing before the topology exists is unavailable, with a retry hint', async (t) => {
    const { bus } = await setup(t, false);
    await assert.rejects(bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'b0'), { msgId: 'b0' }), (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.ok((err.retryAfterMs ?? 0) > 0);
      return true;
    });
  });

  test('the same msgId is stored once and reported as duplicate', async (t) => {
    const { bus, registry, nats } = await setup(t);
    const a = await bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'b1'), { msgId: 'acme-b1' });
    const b = await bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'b1'), { msgId: 'acme-b1' });
    assert.deepEqual(a, { stream: STREAMS.samples, seq: 1, duplicate: false });
    assert.deepEqual(b, { stream: STREAMS.samples, seq: 1, duplicate: true });
    const c = await bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'b2'), { msgId: 'acme-b2' });
    assert.equal(c.seq, 2);
    const nc = await connect({ servers: nats.url });
    const si = await (await jetstreamManager(nc)).streams.info(STREAMS.samples);
    await nc.close();
    assert.equal(si.state.messages, 2);
    assert.equal(await counterValue(registry, 'telemesh_bus_published_total', { stream: STREAMS.samples }), 3);
  });

  test('a message over max_payload is refused with InvalidArgumentError naming the limit', async (t) => {
    const { bus } = await setup(t);
    assert.equal(bus.maxPayloadBytes, 1024 * 1024);
    const big = batch('acme', 'big');
    big.series[0]!.values = Array.from({ length: 140_000 }, (_, i) => i + 0.5);
    await assert.rejects(bus.publish(samplesSubject('acme'), SampleBatchSchema, big, { msgId: 'big' }), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.ok(err.message.includes(String(bus.maxPayloadBytes)), err.message);
      return true;
    });
  });

  test('a stopped server makes publish fail as unavailable', async (t) => {
    const { bus, nats } = await setup(t);
    await nats.stop();
    await assert.rejects(
      bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'b1'), { msgId: 'b1', timeoutMs: 500 }),
      (err: unknown) => err instanceof UnavailableError,
    );
  });
});

describe('consume', () => {
  test('roundtrip: a SampleBatch arrives decoded with its delivery context and is acked', async (t) => {
    const { bus, registry, nats } = await setup(t);
    const sent = batch('acme', 'batch-1', 42);
    await bus.publish(samplesSubject('acme'), SampleBatchSchema, sent, { msgId: 'acme-batch-1' });
    const got: { msg: SampleBatch; d: DeliveryContext }[] = [];
    const handle = await bus.consume(CONSUMERS.aggregation, SampleBatchSchema, (msg, d) => {
      got.push({ msg, d });
    });
    assert.equal(await waitFor(() => got.length === 1), true);
    await handle.stop();
    const [first] = got;
    assert.ok(first);
    assert.ok(equals(SampleBatchSchema, first.msg, sent));
    assert.equal(first.d.subject, 'telemesh.samples.v1.acme');
    assert.equal(first.d.tenant, 'acme');
    assert.equal(first.d.deliveryCount, 1);
    assert.equal(first.d.msgId, 'acme-batch-1');
    assert.equal(first.d.stream, STREAMS.samples);
    assert.equal(first.d.streamSequence, 1);
    assert.equal(await counterValue(registry, 'telemesh_bus_consumed_total', { consumer: 'aggregation', outcome: 'ack' }), 1);
    const ci = await consumerState(nats.url, STREAMS.samples, CONSUMERS.aggregation);
    assert.equal(ci.num_ack_pending, 0);
    assert.equal(ci.num_pending, 0);
  });

  test('garbage bytes are terminated and counted as poison; the next good message is processed', async (t) => {
    const { bus, registry, nats } = await setup(t);
    const nc = await connect({ servers: nats.url });
    // A truncated varint: no protobuf decoder can make sense of it.
    await jetstream(nc).publish(samplesSubject('acme'), Uint8Array.of(0xff, 0xff, 0xff, 0xff), { msgID: 'garbage' });
    await nc.close();
    await bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'good'), { msgId: 'good' });
    const got: string[] = [];
    const handle = await bus.consume(CONSUMERS.aggregation, SampleBatchSchema, (msg) => {
      got.push(msg.batchId);
    });
    assert.equal(await waitFor(() => got.length === 1), true);
    await handle.stop();
    assert.deepEqual(got, ['good']);
    assert.equal(await counterValue(registry, 'telemesh_bus_poison_messages_total', { consumer: 'aggregation' }), 1);
    assert.equal(await counterValue(registry, 'telemesh_bus_consumed_total', { consumer: 'aggregation', outcome: 'poison' }), 1);
    // Terminated means gone for good: nothing pending, nothing awaiting an ack.
    const ci = await consumerState(nats.url, STREAMS.samples, CONSUMERS.aggregation);
    assert.equal(ci.num_ack_pending, 0);
    assert.equal(ci.num_pending, 0);
  });

  test('a handler throwing PoisonMessageError terminates the message without redelivery', async (t) => {
    const { bus, registry, nats } = await setup(t);
    await bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'reject-me'), { msgId: 'reject-me' });
    let calls = 0;
    const handle = await bus.consume(CONSUMERS.aggregation, SampleBatchSchema, () => {
      calls++;
      throw new PoisonMessageError('series without a metric name');
    });
    assert.equal(await waitFor(async () => (await counterValue(registry, 'telemesh_bus_poison_messages_total', { consumer: 'aggregation' })) === 1), true);
    await handle.stop();
    assert.equal(calls, 1);
    assert.equal((await consumerState(nats.url, STREAMS.samples, CONSUMERS.aggregation)).num_ack_pending, 0);
  });

  test('a handler that fails once gets the message redelivered, then acks', async (t) => {
    const { bus, registry } = await setup(t);
    await bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'flaky'), { msgId: 'flaky' });
    const deliveries: number[] = [];
    const handle = await bus.consume(CONSUMERS.aggregation, SampleBatchSchema, (_msg, d) => {
      deliveries.push(d.deliveryCount);
      if (d.deliveryCount === 1) throw new Error('store briefly unavailable');
    });
    assert.equal(await waitFor(() => deliveries.length === 2, 15_000), true);
    await handle.stop();
    assert.deepEqual(deliveries, [1, 2]);
    assert.equal(await counterValue(registry, 'telemesh_bus_consumed_total', { consumer: 'aggregation', outcome: 'retry' }), 1);
    assert.equal(await counterValue(registry, 'telemesh_bus_consumed_total', { consumer: 'aggregation', outcome: 'ack' }), 1);
  });

  test('stop() waits for the in-flight handler and its ack', async (t) => {
    const { bus, nats } = await setup(t);
    await bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'slow'), { msgId: 'slow' });
    let started = false;
    let finished = false;
    const handle = await bus.consume(CONSUMERS.aggregation, SampleBatchSchema, async () => {
      started = true;
      await new Promise((r) => setTimeout(r, 300));
      finished = true;
    });
    assert.equal(await waitFor(() => started), true);
    await handle.stop();
    assert.equal(finished, true);
    const ci = await consumerState(nats.url, STREAMS.samples, CONSUMERS.aggregation);
    assert.equal(ci.num_ack_pending, 0);
    assert.equal(ci.ack_floor.stream_seq, 1);
  });

  test('stop() drains: buffered messages are handled, nothing is left unacked', async (t) => {
    const { bus, nats } = await setup(t);
    for (let i = 0; i < 5; i++) {
      await bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', `m${i}`), { msgId: `m${i}` });
    }
    const first: string[] = [];
    const h1 = await bus.consume(CONSUMERS.aggregation, SampleBatchSchema, async (msg) => {
      first.push(msg.batchId);
      await new Promise((r) => setTimeout(r, 100));
    });
    assert.equal(await waitFor(() => first.length === 1), true);
    await h1.stop();
    assert.equal((await consumerState(nats.url, STREAMS.samples, CONSUMERS.aggregation)).num_ack_pending, 0);
    // Whatever the first loop had not pulled yet goes to a successor right away.
    const second: string[] = [];
    const h2 = await bus.consume(CONSUMERS.aggregation, SampleBatchSchema, (msg) => {
      second.push(msg.batchId);
    });
    assert.equal(await waitFor(() => first.length + second.length === 5, 5000), true, `first ${first.join()} second ${second.join()}`);
    await h2.stop();
    assert.deepEqual([...first, ...second].sort(), ['m0', 'm1', 'm2', 'm3', 'm4']);
  });

  test('handlers run with concurrency and every message is acked once', async (t) => {
    const { bus, nats } = await setup(t);
    for (let i = 0; i < 20; i++) {
      await bus.publish(samplesSubject(`t${i % 3}`), SampleBatchSchema, batch(`t${i % 3}`, `b${i}`), { msgId: `b${i}` });
    }
    let running = 0;
    let peak = 0;
    const seen = new Set<string>();
    const handle = await bus.consume(
      CONSUMERS.aggregation,
      SampleBatchSchema,
      async (msg, d) => {
        assert.equal(msg.tenant, d.tenant);
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        seen.add(msg.batchId);
      },
      { concurrency: 4 },
    );
    assert.equal(await waitFor(() => seen.size === 20), true);
    await handle.stop();
    assert.ok(peak > 1 && peak <= 4, `peak concurrency ${peak}`);
    assert.equal((await consumerState(nats.url, STREAMS.samples, CONSUMERS.aggregation)).num_ack_pending, 0);
  });

  test('an undeclared consumer, or one missing on the server, is refused at start', async (t) => {
    const { bus } = await setup(t, false);
    await assert.rejects(bus.consume('nope', SampleBatchSchema, () => {}), /not declared/);
    await assert.rejects(bus.consume(CONSUMERS.aggregation, SampleBatchSchema, () => {}));
  });

  test('bus.close() stops running consumers', async (t) => {
    const { bus } = await setup(t);
    await bus.consume(CONSUMERS.notification, AlertEventSchema, () => {});
    await bus.publish(alertsSubject('acme'), AlertEventSchema, create(AlertEventSchema, { tenant: 'acme', firing: true }), { msgId: 'a1' });
    await bus.close();
    assert.equal(bus.isConnected(), false);
  });
});

describe('trace context', () => {
  test('the consumer span continues the producer span across the bus', async (t) => {
    const { bus } = await setup(t);
    exporter.reset();
    const tracer = trace.getTracer('bus-test');
    const ingest = tracer.startSpan('ingest');
    await context.with(trace.setSpan(context.active(), ingest), () =>
      bus.publish(samplesSubject('acme'), SampleBatchSchema, batch('acme', 'traced'), { msgId: 'traced' }),
    );
    ingest.end();
    let handlerTraceId = '';
    const handle = await bus.consume(CONSUMERS.aggregation, SampleBatchSchema, () => {
      // The handler runs inside the consumer span, so its own spans join the trace.
      handlerTraceId = trace.getActiveSpan()?.spanContext().traceId ?? '';
    });
    assert.equal(await waitFor(() => handlerTraceId !== ''), true);
    await handle.stop();
    assert.equal(await waitFor(() => exporter.getFinishedSpans().some((s) => s.kind === SpanKind.CONSUMER)), true);
    const spans = exporter.getFinishedSpans();
    const producer = spans.find((s) => s.kind === SpanKind.PRODUCER);
    const consumer = spans.find((s) => s.kind === SpanKind.CONSUMER);
    assert.ok(producer && consumer);
    assert.equal(producer.name, 'publish telemesh.samples.v1');
    assert.equal(consumer.name, `process ${STREAMS.samples}`);
    const traceId = ingest.spanContext().traceId;
    assert.equal(producer.spanContext().traceId, traceId);
    assert.equal(producer.parentSpanContext?.spanId, ingest.spanContext().spanId);
    assert.equal(consumer.spanContext().traceId, traceId);
    assert.equal(consumer.parentSpanContext?.spanId, producer.spanContext().spanId);
    assert.equal(handlerTraceId, traceId);
  });
});

describe('kv', () => {
  test('opens declared buckets and refuses undeclared ones', async (t) => {
    const { bus } = await setup(t);
    const kv = await bus.kv('telemesh_agents');
    await kv.put('acme.host1', new TextEncoder().encode('{"state":"up"}'));
    const e = await kv.get('acme.host1');
    assert.equal(e?.string(), '{"state":"up"}');
    await assert.rejects(bus.kv('not_declared'), /not declared/);
  });
});
