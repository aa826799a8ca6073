/**
 * The bus: one NATS connection per process with typed protobuf publish/consume over
 * JetStream, W3C trace context in NATS headers, and self-metrics.
 *
 * Delivery contract, end to end:
 * - `publish` resolves only after JetStream's publish ack, i.e. once the message is stored
 *   (replicated, with R3). Ingestion acknowledges an agent only after that.
 * - Every publish carries `Nats-Msg-Id`, so a retried publish inside the stream's duplicate
 *   window is stored once.
 * - `consume` acks only after the handler resolved, i.e. after the handler's write. The
 *   ack is confirmed by the server (`ackAck`), so when `stop()` returns every finished
 *   message is known to be acked and will not be redelivered to another replica.
 * - Delivery is at least once; handlers must be idempotent (the store keys by batch id).
 */
import { fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { jetstream, jetstreamManager, type Consumer, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, headers as natsHeaders, Match, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { InvalidArgumentError, StartupError, UnavailableError } from '../runtime/errors.js';
import { isTransientBusError, PoisonMessageError } from './errors.js';
import { rejectionFor } from './redelivery.js';
import { parseSubject } from './subjects.js';
import {
  declareTopology,
  ensureTopology,
  findConsumer,
  findStream,
  type ConsumerSpec,
  type EnsureAction,
  type Topology,
  type TopologyOptions,
} from './topology.js';

/** Options of {@link connectBus}. */
export interface BusOptions {
  /** NATS URL(s), comma-separated for a cluster, e.g. `nats://nats:4222`. Setting `nats.url`. */
  readonly url: string;
  /** Connection name shown by the server (`nats server report connections`); use the service name. */
  readonly name: string;
  readonly logger: Logger;
  /** Registry the bus counters are registered on. */
  readonly registry: Registry;
  /** Stream and KV replicas: 1 locally, 3 on Kubernetes. Default 1. */
  readonly replicas?: number;
  /** Timeout of the first connection attempt. Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** Timeout of a publish (until JetStream's ack) and of JetStream API calls. Default 5 s. */
  readonly requestTimeoutMs?: number;
  /**
   * Called once if the connection closes for good without {@link Bus.close} having been
   * called (e.g. the server rejected our credentials after a reconnect), with the reason
   * when the client knows it. The composition root uses it to fail the process, since a
   * bus that never reconnects cannot serve. Reconnects are retried forever and do not
   * trigger it.
   */
  readonly onClosed?: (err: Error | undefined) => void;
  /** How long close() lets the connection drain before closing it hard. Default 10 s. */
  readonly drainTimeoutMs?: number;
  /** Stream retention and similar knobs of the declared table. */
  readonly topology?: Omit<TopologyOptions, 'replicas'>;
}

/** Options of one {@link Bus.publish}. */
export interface PublishOptions {
  /**
   * Idempotency key, sent as `Nats-Msg-Id`: a second publish with the same id inside the
   * duplicate window is acknowledged but not stored again. Use the batch/event id.
   */
  readonly msgId: string;
  /** Overrides the bus request timeout for this publish. */
  readonly timeoutMs?: number;
}

/** What JetStream answered to a publish. */
export interface PublishAck {
  /** Stream that stored (or had already stored) the message. */
  readonly stream: string;
  /** Stream sequence of the message (of the original, for a duplicate). */
  readonly seq: number;
  /** True when the msgId was seen inside the duplicate window and nothing new was stored. */
  readonly duplicate: boolean;
}

/** What a consume handler learns about the message besides its body. */
export interface DeliveryContext {
  /** Full subject, e.g. `telemesh.samples.v1.acme`. */
  readonly subject: string;
  /** Tenant token of the subject. Handlers must scope their writes to it. */
  readonly tenant: string;
  /** 1 on first delivery, then 2, 3, … up to the consumer's max_deliver. */
  readonly deliveryCount: number;
  /** The publisher's `Nats-Msg-Id`, if it set one. */
  readonly msgId: string | undefined;
  readonly stream: string;
  /** Stream sequence; stable across redeliveries. */
  readonly streamSequence: number;
}

/**
 * Handles one decoded message. Resolve to ack; throw {@link PoisonMessageError} to
 * terminate the message for good; throw anything else to have it redelivered later.
 */
export type MessageHandler<Desc extends DescMessage> = (
  message: MessageShape<Desc>,
  delivery: DeliveryContext,
) => Promise<void> | void;

/** Options of one {@link Bus.consume}. */
export interface ConsumeOptions {
  /** Handlers running at once in this process. Default 1 (in stream order). */
  readonly concurrency?: number;
  /** Messages requested per pull and buffered client-side. Default max(8, 2 × concurrency). */
  readonly batch?: number;
  /** Expiry of each pull request, ms. Default 30 s. */
  readonly expiresMs?: number;
  /**
   * How long a slow handler may keep a message by sending "in progress" to the server.
   * After that the heartbeats stop and the server redelivers at ack timeout, so a handler
   * that hangs forever cannot hold a message forever. Default 5 min.
   */
  readonly maxInProgressMs?: number;
}

/** A running consumer loop. */
export interface ConsumerHandle {
  /** Durable consumer name. */
  readonly name: string;
  /**
   * Stops pulling, handles the few messages already buffered (at most `batch`), and
   * waits for in-flight handlers to finish and their acks to be confirmed. Idempotent.
   * Do not await it from inside a handler of the same consumer.
   */
  stop(): Promise<void>;
}

/** A connection to the bus. Create with {@link connectBus}. */
export interface Bus {
  /** The declared table this bus ensures and consumes from. */
  readonly topology: Topology;
  /**
   * Largest message body the server accepts, bytes (its `max_payload`, 1 MiB by default).
   * Publishers split larger batches; headers need a little room on top.
   */
  readonly maxPayloadBytes: number;
  /** Adds or updates streams, consumers and KV buckets to match the table. */
  ensureTopology(): Promise<EnsureAction[]>;
  /**
   * Encodes `message` with `schema`, publishes it to `subject` with `Nats-Msg-Id` and
   * trace headers, and resolves after JetStream stored it. Fails with
   * {@link UnavailableError} (with a retry hint) when NATS or the stream cannot be reached,
   * so an RPC handler can answer `unavailable`, and with {@link InvalidArgumentError}
   * when the encoded message is larger than {@link Bus.maxPayloadBytes}.
   */
  publish<Desc extends DescMessage>(subject: string, schema: Desc, message: MessageShape<Desc>, opts: PublishOptions): Promise<PublishAck>;
  /**
   * Starts a loop on the declared durable pull consumer `consumerName`, decoding each
   * message with `schema` and running `handler` inside a CONSUMER span. Rejects if the
   * consumer is not declared or does not exist on the server (run ensureTopology first).
   */
  consume<Desc extends DescMessage>(
    consumerName: string,
    schema: Desc,
    handler: MessageHandler<Desc>,
    opts?: ConsumeOptions,
  ): Promise<ConsumerHandle>;
  /** Opens a declared KV bucket (created by ensureTopology). */
  kv(bucket: string): Promise<KV>;
  /** True while connected (false while reconnecting or after close). For readiness. */
  isConnected(): boolean;
  /** Stops every consumer gracefully, then drains the connection. Idempotent. */
  close(): Promise<void>;
}

/** Suggested client wait before retrying a publish that failed as unavailable. */
const PUBLISH_RETRY_AFTER_MS = 1000;
const MSG_ID_HEADER = 'Nats-Msg-Id';
/** nats-server's default max_payload, for the (theoretical) case of no INFO yet. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

const tracer = trace.getTracer('telemesh-bus');

const headerSetter: TextMapSetter<MsgHdrs> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

// NATS headers keep case; other publishers may write "Traceparent", so read case-blind.
const headerGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => (carrier ? carrier.keys() : []),
  get: (carrier, key) => {
    const v = carrier?.get(key, Match.IgnoreCase);
    return v === undefined || v === '' ? undefined : v;
  },
};

/** Hides credentials in a NATS URL before it reaches an error message or a log. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/g, '//***@');
}

/** Returns the counter named `name` if some bus already registered it, else registers it. */
function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing as Counter<L>;
  return new Counter<L>({ name, help, labelNames, registers: [registry] });
}

/** The bus self-metrics. */
interface BusMetrics {
  readonly published: Counter<'stream'>;
  readonly consumed: Counter<'consumer' | 'outcome'>;
  readonly poison: Counter<'consumer'>;
}

/** Outcomes counted in `telemesh_bus_consumed_total`. */
type Outcome = 'ack' | 'ack_unconfirmed' | 'retry' | 'poison';

/**
 * Connects to NATS and checks JetStream is there. Fails with {@link StartupError}
 * (setting `nats.url`) when the server is unreachable or lacks JetStream. Reconnects
 * forever afterwards: a bus that gave up would need a process restart to recover.
 */
export async function connectBus(opts: BusOptions): Promise<Bus> {
  const topology = declareTopology({ ...opts.topology, replicas: opts.replicas ?? 1 });
  const shownUrl = redactUrl(opts.url);
  const servers = opts.url
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const logger = opts.logger.child({ component: 'bus' });
  const timeout = opts.requestTimeoutMs ?? 5000;
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers,
      name: opts.name,
      timeout: opts.connectTimeoutMs ?? 5000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
    });
  } catch (err) {
    throw new StartupError(
      `cannot connect to NATS at ${shownUrl}: ${err instanceof Error ? err.message : String(err)}; check nats.url (TELEMESH_NATS_URL)`,
      'nats.url',
      { cause: err },
    );
  }
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc, { timeout });
  } catch (err) {
    await nc.close().catch(() => {});
    throw new StartupError(
      `NATS at ${shownUrl} does not offer JetStream (${err instanceof Error ? err.message : String(err)}); run nats-server with -js or point nats.url (TELEMESH_NATS_URL) at one that does`,
      'nats.url',
      { cause: err },
    );
  }
  const js = jetstream(nc, { timeout });
  const metrics: BusMetrics = {
    published: counter(opts.registry, 'telemesh_bus_published_total', 'Messages published to JetStream and acknowledged, by stream.', ['stream']),
    consumed: counter(opts.registry, 'telemesh_bus_consumed_total', 'Messages handled by a consumer, by outcome (ack, ack_unconfirmed, retry, poison).', ['consumer', 'outcome']),
    poison: counter(opts.registry, 'telemesh_bus_poison_messages_total', 'Messages terminated as poison (undecodable, rejected by the handler, or out of deliveries).', ['consumer']),
  };
  logger.info({ url: shownUrl, server: nc.info?.server_name, version: nc.info?.version }, 'bus: connected');
  const bus = new NatsBus(nc, js, jsm, topology, logger, metrics, timeout, opts.drainTimeoutMs ?? 10_000);
  const onClosed = opts.onClosed;
  void nc.closed().then((err) => {
    if (bus.closeRequested) return;
    logger.error({ err }, 'bus: NATS connection closed for good');
    onClosed?.(err instanceof Error ? err : undefined);
  });
  return bus;
}

class NatsBus implements Bus {
  readonly #consumers = new Set<ConsumerLoop>();
  readonly #kv = new Map<string, Promise<KV>>();
  #connected = true;
  #closing: Promise<void> | undefined;
  readonly maxPayloadBytes: number;

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly topology: Topology,
    private readonly logger: Logger,
    private readonly metrics: BusMetrics,
    private readonly timeoutMs: number,
    private readonly drainTimeoutMs: number,
  ) {
    this.maxPayloadBytes = nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
    void this.#watchStatus();
  }

  /** True once close() was called; an unexpected close is anything else. */
  get closeRequested(): boolean {
    return this.#closing !== undefined;
  }

  async #watchStatus(): Promise<void> {
    // Connection state changes are rare and operationally interesting: log all of them.
    for await (const s of this.nc.status()) {
      switch (s.type) {
        case 'disconnect':
          this.#connected = false;
          this.logger.warn({ server: s.server }, 'bus: disconnected from NATS; reconnecting');
          break;
        case 'reconnect':
          this.#connected = true;
          this.logger.info({ server: s.server }, 'bus: reconnected to NATS');
          break;
        case 'error':
          this.logger.error({ err: s.error }, 'bus: NATS connection error');
          break;
        case 'slowConsumer':
          this.logger.warn({ subject: s.sub.getSubject(), pending: s.pending }, 'bus: slow consumer');
          break;
        case 'ldm':
          this.logger.info({ server: s.server }, 'bus: server entering lame duck mode');
          break;
        default:
          break;
      }
    }
  }

  ensureTopology(): Promise<EnsureAction[]> {
    return ensureTopology(this.jsm, this.topology, this.logger);
  }

  isConnected(): boolean {
    return this.#connected && !this.nc.isClosed() && !this.nc.isDraining();
  }

  async publish<Desc extends DescMessage>(
    subject: string,
    schema: Desc,
    message: MessageShape<Desc>,
    opts: PublishOptions,
  ): Promise<PublishAck> {
    const { prefix } = parseSubject(subject, this.topology.streams.map((s) => s.subjectPrefix));
    const data = toBinary(schema, message);
    if (data.byteLength > this.maxPayloadBytes) {
      // Checked here so the caller gets a domain error naming the limit, not the NATS
      // client's generic one.
      const description = `encoded ${schema.typeName} is ${data.byteLength} bytes; the bus accepts at most ${this.maxPayloadBytes}`;
      throw new InvalidArgumentError(`message too large for the bus: ${description}`, [{ field: 'payload', description }]);
    }
    return tracer.startActiveSpan(
      `publish ${prefix}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          'messaging.system': 'nats',
          'messaging.operation.type': 'send',
          'messaging.operation.name': 'publish',
          'messaging.destination.name': subject,
          'messaging.message.id': opts.msgId,
          'messaging.message.body.size': data.byteLength,
        },
      },
      async (span) => {
        try {
          const h = natsHeaders();
          // Inject inside the producer span so the consumer's parent is this span.
          propagation.inject(context.active(), h, headerSetter);
          const pa = await this.js.publish(subject, data, { msgID: opts.msgId, headers: h, timeout: opts.timeoutMs ?? this.timeoutMs });
          this.metrics.published.inc({ stream: pa.stream });
          span.setAttribute('messaging.nats.stream', pa.stream);
          span.setAttribute('messaging.nats.sequence', pa.seq);
          if (pa.duplicate) span.setAttribute('messaging.nats.duplicate', true);
          return { stream: pa.stream, seq: pa.seq, duplicate: pa.duplicate };
        } catch (err) {
          fail(span, err);
          if (this.#closing !== undefined || isTransientBusError(err)) {
            throw new UnavailableError(
              `bus unavailable: publish to ${subject} was not acknowledged by JetStream (${err instanceof Error ? err.message : String(err)}); retry later`,
              PUBLISH_RETRY_AFTER_MS,
              { cause: err },
            );
          }
          throw err;
        } finally {
          span.end();
        }
      },
    );
  }

  async consume<Desc extends DescMessage>(
    consumerName: string,
    schema: Desc,
    handler: MessageHandler<Desc>,
    opts: ConsumeOptions = {},
  ): Promise<ConsumerHandle> {
    if (this.#closing !== undefined) throw new UnavailableError('bus is closed', undefined);
    const spec = findConsumer(this.topology, consumerName);
    if (spec === undefined) {
      throw new Error(`consumer ${JSON.stringify(consumerName)} is not declared in libs/bus/topology.ts`);
    }
    const stream = findStream(this.topology, spec.stream);
    // Fails here, at start, when the consumer is missing: a module that cannot consume
    // must not report ready.
    const consumer = await this.js.consumers.get(spec.stream, spec.durable);
    const loop = new ConsumerLoop(
      consumer,
      spec,
      stream?.subjectPrefix,
      schema,
      handler as MessageHandler<DescMessage>,
      opts,
      this.logger.child({ consumer: spec.durable, stream: spec.stream }),
      this.metrics,
      () => this.nc.isClosed(),
      () => this.#consumers.delete(loop),
    );
    this.#consumers.add(loop);
    loop.start();
    return { name: spec.durable, stop: () => loop.stop() };
  }

  kv(bucket: string): Promise<KV> {
    if (!this.topology.buckets.some((b) => b.bucket === bucket)) {
      return Promise.reject(new Error(`KV bucket ${JSON.stringify(bucket)} is not declared in libs/bus/topology.ts`));
    }
    let kv = this.#kv.get(bucket);
    if (kv === undefined) {
      // open() binds without a round trip; the bucket itself is created by ensureTopology.
      kv = new Kvm(this.js).open(bucket);
      this.#kv.set(bucket, kv);
      kv.catch(() => this.#kv.delete(bucket));
    }
    return kv;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Consumers first, so in-flight handlers can still ack over the open connection.
      await Promise.allSettled([...this.#consumers].map((c) => c.stop()));
      if (this.nc.isClosed()) return;
      // Drain flushes what we published and acked. It needs the server, so it cannot
      // finish while we are reconnecting: then (or when it takes too long) close hard,
      // because a shutdown must never hang on an absent NATS.
      let timer: NodeJS.Timeout | undefined;
      try {
        if (this.#connected) {
          const drained = await Promise.race([
            this.nc.drain().then(() => true),
            new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.drainTimeoutMs))),
          ]);
          if (!drained) this.logger.warn({ timeoutMs: this.drainTimeoutMs }, 'bus: drain timed out; closing');
        }
      } catch (err) {
        this.logger.debug({ err }, 'bus: drain failed; closing');
      } finally {
        clearTimeout(timer);
      }
      if (!this.nc.isClosed()) await this.nc.close().catch(() => {});
      this.logger.info('bus: closed');
    })();
    return this.#closing;
  }
}

/**
 * Sends a term/nak. These are fire-and-forget on purpose: if one is lost, the server
 * redelivers at ack timeout, which is the same outcome a nak asks for, only later. The
 * only failure is a closed connection, which must not escape as an exception.
 */
function settle(send: () => void, log: Logger): void {
  try {
    send();
  } catch (err) {
    log.warn({ err }, 'bus: could not send nak/term; the server will redeliver at ack timeout');
  }
}

function fail(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/** Waits `ms`, or less when `signal` fires. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** One consume loop: pulls, dispatches to the handler, acks/naks/terms. */
class ConsumerLoop {
  readonly #inflight = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  #messages: ConsumerMessages | undefined;
  #running: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  readonly #concurrency: number;
  readonly #batch: number;

  constructor(
    private readonly consumer: Consumer,
    private readonly spec: ConsumerSpec,
    private readonly subjectPrefix: string | undefined,
    private readonly schema: DescMessage,
    private readonly handler: MessageHandler<DescMessage>,
    private readonly opts: ConsumeOptions,
    private readonly logger: Logger,
    private readonly metrics: BusMetrics,
    private readonly connectionClosed: () => boolean,
    private readonly onStopped: () => void,
  ) {
    this.#concurrency = Math.max(1, Math.floor(opts.concurrency ?? 1));
    this.#batch = Math.max(1, Math.floor(opts.batch ?? Math.max(8, 2 * this.#concurrency)));
  }

  start(): void {
    this.#running = this.#run().catch((err: unknown) => {
      this.logger.error({ err }, 'bus: consumer loop crashed');
    });
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#abort.abort();
      // close() unsubscribes at once but lets the iterator hand out what it already
      // buffered before ending; #run handles those.
      await this.#messages?.close();
      await this.#running;
      this.onStopped();
      this.logger.info('bus: consumer stopped');
    })();
    return this.#stopping;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#abort.signal.aborted && !this.connectionClosed()) {
      try {
        const messages = await this.consumer.consume({
          max_messages: this.#batch,
          expires: this.opts.expiresMs ?? 30_000,
        });
        this.#messages = messages;
        if (this.#abort.signal.aborted) await messages.close();
        void this.#watch(messages);
        // After stop() the iterator still yields what was already buffered, and we process
        // it: those messages are ours until ack_wait either way, and releasing them with an
        // immediate nak races with our own outstanding pull request (measured on 2.9.10:
        // the server can redeliver into the pull we just abandoned, parking the message
        // for a full ack_wait). Buffered work is bounded by `batch`.
        for await (const m of messages) {
          failures = 0;
          while (this.#inflight.size >= this.#concurrency) await Promise.race(this.#inflight);
          // #handle logs its own failures; this catch only keeps a settle-time surprise
          // (e.g. the connection closing mid-ack) from becoming an unhandled rejection.
          const p = this.#handle(m)
            .catch((err: unknown) => this.logger.error({ err, seq: m.seq }, 'bus: message handling failed'))
            .finally(() => this.#inflight.delete(p));
          this.#inflight.add(p);
        }
      } catch (err) {
        failures++;
        this.logger.error({ err, failures }, 'bus: consume failed; restarting the pull loop');
      } finally {
        this.#messages = undefined;
      }
      if (this.#abort.signal.aborted || this.connectionClosed()) break;
      // The iterator ended or failed without a stop(): back off, re-bind, pull again.
      // (consume() itself rides out reconnects and a recreated consumer; this covers the
      // rarer terminal errors, e.g. a 400 from a server restarted with other limits.)
      await pause(Math.min(30_000, 500 * 2 ** Math.min(failures, 6)), this.#abort.signal);
    }
    await Promise.allSettled([...this.#inflight]);
  }

  /** Logs pull-side notifications worth an operator's attention. */
  async #watch(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const s of messages.status()) {
        switch (s.type) {
          case 'heartbeats_missed':
            this.logger.warn({ count: s.count }, 'bus: pull heartbeats missed');
            break;
          case 'consumer_not_found':
          case 'consumer_deleted':
          case 'stream_not_found':
            this.logger.error({ status: s }, 'bus: consumer or stream missing; was the topology deleted?');
            break;
          case 'exceeded_limits':
            this.logger.warn({ description: s.description }, 'bus: pull request exceeded server limits');
            break;
          default:
            break;
        }
      }
    } catch {
      // the status iterator ends with the messages iterator
    }
  }

  async #handle(m: JsMsg): Promise<void> {
    const consumer = this.spec.durable;
    const deliveryCount = m.info.deliveryCount;
    const msgIdHeader = m.headers?.get(MSG_ID_HEADER, Match.IgnoreCase);
    const delivery: DeliveryContext = {
      subject: m.subject,
      tenant: parseSubject(m.subject, this.subjectPrefix !== undefined ? [this.subjectPrefix] : undefined).tenant,
      deliveryCount,
      msgId: msgIdHeader === undefined || msgIdHeader === '' ? undefined : msgIdHeader,
      stream: m.info.stream,
      streamSequence: m.seq,
    };
    const parent = propagation.extract(ROOT_CONTEXT, m.headers, headerGetter);
    const span = tracer.startSpan(
      `process ${this.spec.stream}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          'messaging.system': 'nats',
          'messaging.operation.type': 'process',
          'messaging.operation.name': 'process',
          'messaging.destination.name': m.subject,
          'messaging.consumer.group.name': consumer,
          'messaging.message.id': delivery.msgId ?? '',
          'messaging.message.body.size': m.data.byteLength,
          'messaging.nats.stream': this.spec.stream,
          'messaging.nats.sequence': m.seq,
          'messaging.nats.delivery_count': deliveryCount,
          'telemesh.tenant': delivery.tenant,
        },
      },
      parent,
    );
    const spanCtx = span.spanContext();
    const log = this.logger.child({
      subject: m.subject,
      seq: m.seq,
      deliveryCount,
      msgId: delivery.msgId,
      tenant: delivery.tenant,
      trace_id: spanCtx.traceId,
      span_id: spanCtx.spanId,
    });
    // Keep the message ours while a slow handler works (ack_wait is only 30 s), but only
    // up to maxInProgressMs, so a hung handler cannot hold it forever.
    const started = Date.now();
    const limit = this.opts.maxInProgressMs ?? 5 * 60_000;
    const progress = setInterval(
      () => {
        if (Date.now() - started >= limit) return;
        try {
          m.working();
        } catch (err) {
          // Connection closed: the server will redeliver at ack timeout; nothing to do.
          log.debug({ err }, 'bus: in-progress signal not sent');
        }
      },
      Math.max(1000, Math.floor(this.spec.ackWaitMs / 2)),
    );
    progress.unref();
    try {
      await context.with(trace.setSpan(parent, span), async () => {
        let message: MessageShape<DescMessage>;
        try {
          message = fromBinary(this.schema, m.data);
        } catch (err) {
          throw new PoisonMessageError(
            `cannot decode ${this.schema.typeName}: ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          );
        }
        const handler = this.handler; // called unbound: the loop is none of its business
        await handler(message, delivery);
      });
      clearInterval(progress);
      await this.#ack(m, log);
    } catch (err) {
      clearInterval(progress);
      fail(span, err);
      this.#reject(m, err, deliveryCount, log);
    } finally {
      span.end();
    }
  }

  /**
   * Acks after the handler's write and waits for the server to confirm. A plain ack is
   * fire-and-forget: if it were lost, or the connection drained before it left, the
   * message would be redelivered after ack_wait and the caller of stop() would have been
   * told "done" too early. An unconfirmed ack is not an error for correctness — handlers
   * are idempotent — but it is counted so a trend is visible.
   */
  async #ack(m: JsMsg, log: Logger): Promise<void> {
    try {
      await m.ackAck();
      this.#count('ack');
    } catch (err) {
      this.#count('ack_unconfirmed');
      log.warn({ err }, 'bus: ack not confirmed by the server; the message may be redelivered');
    }
  }

  #reject(m: JsMsg, err: unknown, deliveryCount: number, log: Logger): void {
    const r = rejectionFor(err, deliveryCount, this.spec);
    if (r.action === 'term') {
      // No reason argument: server 2.9 only understands a bare "+TERM" and silently
      // ignores "+TERM <reason>", which would leave the message to be redelivered.
      settle(() => m.term(), log);
      this.#count('poison');
      this.metrics.poison.inc({ consumer: this.spec.durable });
      log.error(
        { err, reason: r.reason, bytes: m.data.byteLength },
        r.reason === 'poison'
          ? 'bus: poison message terminated'
          : `bus: message failed on its last delivery (${deliveryCount}/${this.spec.maxDeliver}) and was terminated`,
      );
      return;
    }
    settle(() => m.nak(r.delayMs), log);
    this.#count('retry');
    log.warn({ err, retryInMs: r.delayMs }, 'bus: handler failed; message will be redelivered');
  }

  #count(outcome: Outcome): void {
    this.metrics.consumed.inc({ consumer: this.spec.durable, outcome });
  }
}
