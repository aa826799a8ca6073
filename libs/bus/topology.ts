/**
 * The bus topology: the one declared table of JetStream streams, durable consumers and KV
 * buckets Telemesh relies on, and {@link ensureTopology}, which makes the server match it
 * at start (add what is missing, update what differs, leave the rest alone).
 *
 * Declaring everything in one place keeps the contract between publishers and consumers
 * reviewable: a subject family, its retention, and who consumes it are visible together.
 *
 * Server 2.9.10 constraints shape this table: no stream compression, no `filter_subjects`,
 * no metadata, no per-message TTL. Anything needing 2.10+ must stay out of it.
 */
import type { Logger } from 'pino';
import type { JetStreamManager, StreamConfig, ConsumerConfig, ConsumerUpdateConfig, StreamUpdateConfig } from '@nats-io/jetstream';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { nanos } from '@nats-io/transport-node';
import { StartupError } from '../runtime/errors.js';
import { AGENTS_SUBJECT_PREFIX, ALERTS_SUBJECT_PREFIX, SAMPLES_SUBJECT_PREFIX } from './subjects.js';

export {
  agentsSubject,
  alertsSubject,
  assertSubjectToken,
  samplesSubject,
  SUBJECT_TOKEN_PATTERN,
} from './subjects.js';

/** Stream names, fixed: dashboards and runbooks refer to them. */
export const STREAMS = {
  samples: 'TELEMESH_SAMPLES',
  agents: 'TELEMESH_AGENTS',
  alerts: 'TELEMESH_ALERTS',
} as const;

/** Durable consumer names. Replicas of a service share one durable, so work is split. */
export const CONSUMERS = {
  aggregation: 'aggregation',
  notification: 'notification',
} as const;

/** KV bucket names. */
export const BUCKETS = {
  agents: 'telemesh_agents',
  alertState: 'telemesh_alert_state',
} as const;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** One stream of the table. Durations in milliseconds. */
export interface StreamSpec {
  readonly name: string;
  readonly description: string;
  /** Subject filters the stream captures, `<prefix>.>`. */
  readonly subjects: readonly string[];
  /** The family prefix (without `.>`), used for span names and tenant parsing. */
  readonly subjectPrefix: string;
  readonly maxAgeMs: number;
  /** Window in which a repeated `Nats-Msg-Id` is dropped as a duplicate. */
  readonly duplicateWindowMs: number;
  /** Largest accepted message, bytes; -1 leaves the server's max_payload as the limit. */
  readonly maxMsgSize: number;
  /** Cap on stored bytes; -1 for none (max age bounds the stream instead). */
  readonly maxBytes: number;
  readonly replicas: number;
}

/** One durable pull consumer of the table. Durations in milliseconds. */
export interface ConsumerSpec {
  readonly stream: string;
  readonly durable: string;
  readonly description: string;
  /**
   * Server-side redelivery schedule for messages that are neither acked nor nak'ed in
   * time (a crashed or hung consumer). On nats-server 2.9 a non-empty backoff *replaces*
   * ack_wait with `backoff[0]`, so the first entry is the effective ack wait; see
   * {@link ConsumerSpec.ackWaitMs}.
   */
  readonly backoffMs: readonly number[];
  /** Ack wait; always equal to `backoffMs[0]` (checked by {@link declareTopology}). */
  readonly ackWaitMs: number;
  /** Deliveries before the server gives up; must exceed `backoffMs.length` (a server rule). */
  readonly maxDeliver: number;
  /** Unacked messages in flight across all replicas before the server pauses delivery. */
  readonly maxAckPending: number;
  /**
   * Client-side delays for `nak` after a handler error, indexed by delivery count - 1
   * (the last entry repeats). Distinct from `backoffMs` because the server only applies
   * backoff to ack timeouts, never to explicit naks.
   */
  readonly nakDelaysMs: readonly number[];
  /** Optional single filter subject (2.9 has no `filter_subjects`). */
  readonly filterSubject?: string;
}

/** One KV bucket of the table. */
export interface BucketSpec {
  readonly bucket: string;
  readonly description: string;
  /** Values kept per key. */
  readonly history: number;
  /** Whole-bucket max age in ms; 0 for none. (Per-key TTL needs server 2.11.) */
  readonly ttlMs: number;
  readonly replicas: number;
}

/** The complete declared topology. */
export interface Topology {
  readonly streams: readonly StreamSpec[];
  readonly consumers: readonly ConsumerSpec[];
  readonly buckets: readonly BucketSpec[];
}

/** Knobs of {@link declareTopology}; the rest of the table is fixed on purpose. */
export interface TopologyOptions {
  /** Stream, consumer-inherited and KV replicas: 1 locally, 3 on Kubernetes. Default 1. */
  readonly replicas?: number;
  /** Retention of sample batches in the stream (not in the store). Default 24 h. */
  readonly samplesMaxAgeMs?: number;
  /** Retention of agent lifecycle events. Default 24 h. */
  readonly agentsMaxAgeMs?: number;
  /** Retention of alert events. Default 72 h, so notification can catch up after an outage. */
  readonly alertsMaxAgeMs?: number;
  /** Max unacked sample batches across aggregation replicas. Default 256. */
  readonly aggregationMaxAckPending?: number;
}

/** Server-side redelivery after an ack timeout: 30 s, then longer; first entry = ack wait. */
const DEFAULT_ACK_BACKOFF_MS = [30 * SECOND, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE] as const;
/** Client-side nak delays after handler errors: quick first retry, then back off. */
const DEFAULT_NAK_DELAYS_MS = [SECOND, 5 * SECOND, 15 * SECOND, 30 * SECOND, MINUTE] as const;

/**
 * Builds the declared table. Pure: no I/O, so tests and `--config.verify` can inspect it.
 * Throws {@link StartupError} (setting `nats.replicas`) on a bad replica count, and a
 * plain `Error` on an inconsistent table or retention (programming errors).
 */
export function declareTopology(opts: TopologyOptions = {}): Topology {
  const replicas = opts.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new StartupError(`nats replicas must be an integer from 1 to 5, got ${replicas}`, 'nats.replicas');
  }
  const stream = (
    name: string,
    prefix: string,
    description: string,
    maxAgeMs: number,
  ): StreamSpec => ({
    name,
    description,
    subjects: [`${prefix}.>`],
    subjectPrefix: prefix,
    maxAgeMs,
    // Publishers retry for at most a minute or two; a longer window only costs memory.
    duplicateWindowMs: Math.min(2 * MINUTE, maxAgeMs),
    maxMsgSize: -1,
    maxBytes: -1,
    replicas,
  });
  const consumer = (s: string, durable: string, description: string, maxAckPending: number): ConsumerSpec => ({
    stream: s,
    durable,
    description,
    backoffMs: DEFAULT_ACK_BACKOFF_MS,
    ackWaitMs: DEFAULT_ACK_BACKOFF_MS[0],
    maxDeliver: 10,
    maxAckPending,
    nakDelaysMs: DEFAULT_NAK_DELAYS_MS,
  });
  const topology: Topology = {
    streams: [
      stream(STREAMS.samples, SAMPLES_SUBJECT_PREFIX, 'Sample batches, ingestion → aggregation', opts.samplesMaxAgeMs ?? 24 * HOUR),
      stream(STREAMS.agents, AGENTS_SUBJECT_PREFIX, 'Agent lifecycle events from heartbeat', opts.agentsMaxAgeMs ?? 24 * HOUR),
      stream(STREAMS.alerts, ALERTS_SUBJECT_PREFIX, 'Alert events, alerting → notification', opts.alertsMaxAgeMs ?? 72 * HOUR),
    ],
    consumers: [
      consumer(STREAMS.samples, CONSUMERS.aggregation, 'Aggregation writes sample batches to the metric store', opts.aggregationMaxAckPending ?? 256),
      consumer(STREAMS.alerts, CONSUMERS.notification, 'Notification routes and delivers alert events', 256),
    ],
    buckets: [
      { bucket: BUCKETS.agents, description: 'Agent registry (heartbeat)', history: 1, ttlMs: 0, replicas },
      { bucket: BUCKETS.alertState, description: 'Alert state per rule and series (alerting)', history: 5, ttlMs: 0, replicas },
    ],
  };
  for (const s of topology.streams) {
    if (!(s.maxAgeMs > 0)) throw new Error(`max age of stream ${s.name} must be positive, got ${s.maxAgeMs}`);
  }
  for (const c of topology.consumers) {
    if (c.backoffMs.length > 0 && c.backoffMs[0] !== c.ackWaitMs) {
      throw new Error(`consumer ${c.durable}: backoff[0] must equal ack_wait (server 2.9 overrides ack_wait with it)`);
    }
    if (c.maxDeliver <= c.backoffMs.length) {
      throw new Error(`consumer ${c.durable}: max_deliver must exceed the number of backoff steps`);
    }
  }
  return topology;
}

/** Finds a consumer of the table by durable name, or undefined. */
export function findConsumer(topology: Topology, durable: string): ConsumerSpec | undefined {
  return topology.consumers.find((c) => c.durable === durable);
}

/** Finds a stream of the table by name, or undefined. */
export function findStream(topology: Topology, name: string): StreamSpec | undefined {
  return topology.streams.find((s) => s.name === name);
}

/** What {@link ensureTopology} did to one item. */
export interface EnsureAction {
  readonly kind: 'stream' | 'consumer' | 'bucket';
  readonly name: string;
  readonly action: 'created' | 'updated' | 'unchanged';
  /** Names of the settings that differed, for `updated`. */
  readonly changed: readonly string[];
}

// JetStream API error codes we branch on (from the server's errors.json).
const STREAM_NOT_FOUND = 10059;
const CONSUMER_NOT_FOUND = 10014;
const STREAM_NAME_IN_USE = 10058;

function apiCode(err: unknown): number | undefined {
  return err instanceof JetStreamApiError ? err.code : undefined;
}

/** The stream config this spec asks for, in server terms. */
function streamConfig(s: StreamSpec): Partial<StreamConfig> & { name: string } {
  return {
    name: s.name,
    description: s.description,
    subjects: [...s.subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: nanos(s.maxAgeMs),
    duplicate_window: nanos(s.duplicateWindowMs),
    max_msg_size: s.maxMsgSize,
    max_bytes: s.maxBytes,
    num_replicas: s.replicas,
  };
}

/** The consumer config this spec asks for, in server terms. */
function consumerConfig(c: ConsumerSpec): Partial<ConsumerConfig> {
  const cfg: Partial<ConsumerConfig> = {
    durable_name: c.durable,
    description: c.description,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
    ack_wait: nanos(c.ackWaitMs),
    max_deliver: c.maxDeliver,
    backoff: c.backoffMs.map((ms) => nanos(ms)),
    max_ack_pending: c.maxAckPending,
  };
  if (c.filterSubject !== undefined) cfg.filter_subject = c.filterSubject;
  return cfg;
}

/** Compares the fields we declare; the server fills in many others we do not care about. */
function diff(want: Record<string, unknown>, have: Record<string, unknown>): string[] {
  const changed: string[] = [];
  for (const [k, v] of Object.entries(want)) {
    const h = have[k];
    const same = Array.isArray(v)
      ? Array.isArray(h) && v.length === h.length && v.every((x, i) => x === h[i])
      : // The server omits empty strings and zero-valued optional fields from its JSON.
        v === h || ((v === '' || v === undefined) && (h === undefined || h === ''));
    if (!same) changed.push(k);
  }
  return changed;
}

/** Settings the server refuses to change in place; a difference needs an operator. */
const IMMUTABLE_STREAM_FIELDS = new Set(['storage', 'retention']);
const IMMUTABLE_CONSUMER_FIELDS = new Set(['ack_policy', 'deliver_policy', 'replay_policy', 'durable_name']);

/**
 * Turns a server refusal into an operator-facing error. Replica counts the server cannot
 * honour (e.g. 3 on a single server) are the common case and have a known fix.
 */
function refusal(what: string, err: unknown): StartupError {
  const msg = err instanceof Error ? err.message : String(err);
  if (/replicas/i.test(msg)) {
    return new StartupError(`NATS refused ${what}: ${msg} (set nats.replicas to 1 for a single server)`, 'nats.replicas', { cause: err });
  }
  return new StartupError(`NATS refused ${what}: ${msg}`, 'nats.url', { cause: err });
}

async function ensureStream(jsm: JetStreamManager, s: StreamSpec, logger: Logger): Promise<EnsureAction> {
  const want = streamConfig(s);
  let have: StreamConfig | undefined;
  try {
    have = (await jsm.streams.info(s.name)).config;
  } catch (err) {
    if (apiCode(err) !== STREAM_NOT_FOUND) throw err;
  }
  if (have === undefined) {
    try {
      await jsm.streams.add(want);
      logger.info({ stream: s.name }, 'bus: stream created');
      return { kind: 'stream', name: s.name, action: 'created', changed: [] };
    } catch (err) {
      // Another replica created it between our info and add: fall through to compare.
      if (apiCode(err) !== STREAM_NAME_IN_USE) throw refusal(`stream ${s.name}`, err);
      have = (await jsm.streams.info(s.name)).config;
    }
  }
  const changed = diff(want, have as unknown as Record<string, unknown>);
  if (changed.length === 0) return { kind: 'stream', name: s.name, action: 'unchanged', changed };
  const immutable = changed.filter((k) => IMMUTABLE_STREAM_FIELDS.has(k));
  if (immutable.length > 0) {
    throw new StartupError(
      `stream ${s.name} exists with different ${immutable.join(', ')}, which JetStream cannot change in place; migrate or delete the stream`,
      'nats.url',
    );
  }
  const { name: _name, storage: _s, retention: _r, ...update } = want;
  try {
    await jsm.streams.update(s.name, update as Partial<StreamUpdateConfig>);
  } catch (err) {
    throw refusal(`the update of stream ${s.name} (${changed.join(', ')})`, err);
  }
  logger.info({ stream: s.name, changed }, 'bus: stream updated');
  return { kind: 'stream', name: s.name, action: 'updated', changed };
}

async function ensureConsumer(jsm: JetStreamManager, c: ConsumerSpec, logger: Logger): Promise<EnsureAction> {
  const want = consumerConfig(c);
  let have: ConsumerConfig | undefined;
  try {
    have = (await jsm.consumers.info(c.stream, c.durable)).config;
  } catch (err) {
    if (apiCode(err) !== CONSUMER_NOT_FOUND) throw err;
  }
  if (have === undefined) {
    try {
      // Creating an identical durable is idempotent on the server, so a race with another
      // replica is harmless here.
      await jsm.consumers.add(c.stream, want);
    } catch (err) {
      throw refusal(`consumer ${c.durable} on ${c.stream}`, err);
    }
    logger.info({ stream: c.stream, consumer: c.durable }, 'bus: consumer created');
    return { kind: 'consumer', name: c.durable, action: 'created', changed: [] };
  }
  const changed = diff(want as Record<string, unknown>, have as unknown as Record<string, unknown>);
  if (changed.length === 0) return { kind: 'consumer', name: c.durable, action: 'unchanged', changed };
  const immutable = changed.filter((k) => IMMUTABLE_CONSUMER_FIELDS.has(k));
  if (immutable.length > 0) {
    throw new StartupError(
      `consumer ${c.durable} on ${c.stream} exists with different ${immutable.join(', ')}, which JetStream cannot change in place; delete the consumer to recreate it`,
      'nats.url',
    );
  }
  const update: Partial<ConsumerUpdateConfig> = {};
  for (const k of changed) (update as Record<string, unknown>)[k] = (want as Record<string, unknown>)[k];
  try {
    await jsm.consumers.update(c.stream, c.durable, update);
  } catch (err) {
    throw refusal(`the update of consumer ${c.durable} (${changed.join(', ')})`, err);
  }
  logger.info({ stream: c.stream, consumer: c.durable, changed }, 'bus: consumer updated');
  return { kind: 'consumer', name: c.durable, action: 'updated', changed };
}

/** Name of the stream backing a KV bucket (a JetStream convention). */
export function bucketStreamName(bucket: string): string {
  return `KV_${bucket}`;
}

async function ensureBucket(jsm: JetStreamManager, b: BucketSpec, logger: Logger): Promise<EnsureAction> {
  const streamName = bucketStreamName(b.bucket);
  let existed = true;
  try {
    await jsm.streams.info(streamName);
  } catch (err) {
    if (apiCode(err) !== STREAM_NOT_FOUND) throw err;
    existed = false;
  }
  if (!existed) {
    try {
      // Kvm.create knows the KV stream layout (subjects, rollups, direct get); let it
      // build the stream rather than re-deriving that here.
      await new Kvm(jsm.jetstream()).create(b.bucket, {
        description: b.description,
        history: b.history,
        replicas: b.replicas,
        storage: StorageType.File,
        ...(b.ttlMs > 0 ? { ttl: b.ttlMs } : {}),
      });
    } catch (err) {
      throw refusal(`KV bucket ${b.bucket}`, err);
    }
    logger.info({ bucket: b.bucket }, 'bus: KV bucket created');
    return { kind: 'bucket', name: b.bucket, action: 'created', changed: [] };
  }
  // Kvm.create never updates an existing bucket, so settings are reconciled on the
  // backing stream directly.
  const want: Record<string, unknown> = {
    description: b.description,
    max_msgs_per_subject: b.history,
    num_replicas: b.replicas,
    max_age: b.ttlMs > 0 ? nanos(b.ttlMs) : 0,
  };
  const have = (await jsm.streams.info(streamName)).config as unknown as Record<string, unknown>;
  const changed = diff(want, have);
  if (changed.length === 0) return { kind: 'bucket', name: b.bucket, action: 'unchanged', changed };
  try {
    await jsm.streams.update(streamName, want as Partial<StreamUpdateConfig>);
  } catch (err) {
    throw refusal(`the update of KV bucket ${b.bucket} (${changed.join(', ')})`, err);
  }
  logger.info({ bucket: b.bucket, changed }, 'bus: KV bucket updated');
  return { kind: 'bucket', name: b.bucket, action: 'updated', changed };
}

/**
 * Makes the server match `topology`: streams first (consumers need them), then consumers,
 * then buckets. Safe to run concurrently from several replicas and on every start.
 * Returns what it did to each item, in table order.
 */
export async function ensureTopology(jsm: JetStreamManager, topology: Topology, logger: Logger): Promise<EnsureAction[]> {
  const actions: EnsureAction[] = [];
  for (const s of topology.streams) actions.push(await ensureStream(jsm, s, logger));
  for (const c of topology.consumers) actions.push(await ensureConsumer(jsm, c, logger));
  for (const b of topology.buckets) actions.push(await ensureBucket(jsm, b, logger));
  return actions;
}
