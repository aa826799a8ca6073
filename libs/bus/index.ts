/**
 * libs/bus — Telemesh's NATS JetStream bus: the declared topology (streams, durable
 * consumers, KV buckets), typed protobuf publish/consume with W3C trace context in NATS
 * headers, and an embedded nats-server for local runs. Test helpers live in
 * `libs/bus/testing.ts` and are deliberately not exported here.
 */
export {
  connectBus,
  redactUrl,
  type Bus,
  type BusOptions,
  type ConsumeOptions,
  type ConsumerHandle,
  type DeliveryContext,
  type MessageHandler,
  type PublishAck,
  type PublishOptions,
} from './bus.js';
export { isTransientBusError, PoisonMessageError } from './errors.js';
export { findExecutable, NATS_INSTALL_HINT, startNatsServer, type NatsServer, type NatsServerOptions } from './nats-server.js';
export {
  AGENTS_SUBJECT_PREFIX,
  agentsSubject,
  ALERTS_SUBJECT_PREFIX,
  alertsSubject,
  assertSubjectToken,
  parseSubject,
  SAMPLES_SUBJECT_PREFIX,
  samplesSubject,
  SUBJECT_TOKEN_PATTERN,
  type ParsedSubject,
} from './subjects.js';
export {
  BUCKETS,
  bucketStreamName,
  CONSUMERS,
  declareTopology,
  ensureTopology,
  findConsumer,
  findStream,
  STREAMS,
  type BucketSpec,
  type ConsumerSpec,
  type EnsureAction,
  type StreamSpec,
  type Topology,
  type TopologyOptions,
} from './topology.js';
export type { KV, KvEntry } from '@nats-io/kv';
