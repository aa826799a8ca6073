/**
 * The agent SDK: a typed client for agents streaming metrics to Telemesh's ingestion
 * service, with batching, a bounded buffer, retry with backoff, reconnect and replay.
 */
export { AgentClient, FlushTimeoutError, type AgentClientOptions, type AgentClientStats, type BatchAck, type HistogramInit, type SeriesInit, type SummaryInit, type Timers } from './client.js';
export { SeriesEncoder, type LabelInput, type SeriesInput } from './encode.js';
export { BatchBuffer, type Batch, type BufferDrops, type OverflowPolicy } from './buffer.js';
export { backoffCap, backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
export { startHeartbeat, type HeartbeatHandle, type HeartbeatOptions } from './heartbeat.js';
