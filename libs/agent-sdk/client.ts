/**
 * The agent SDK's client: samples in, acknowledged batches out, over the long-lived
 * bidirectional `telemesh.ingest.v1.IngestService/Stream` (gRPC over HTTP/2).
 *
 * - Batching: samples collect into a batch that is sealed when it holds `maxBatchSamples`
 *   samples or `maxBatchDelayMs` after its first sample, whichever comes first.
 * - Bounded buffer: sealed batches wait in a buffer bounded by `maxBufferedSamples`; when
 *   full, the overflow policy (`drop-oldest` or `reject-newest`) decides what is discarded,
 *   and every discarded sample is counted ({@link AgentClientStats.droppedSamples}).
 * - Window: up to `maxInflightBatches` batches are on the wire awaiting an acknowledgement.
 * - Retry and reconnect: a broken stream is reopened after an exponential backoff with full
 *   jitter; the backoff resets once a batch is acknowledged again.
 * - Replay: batches sent but not acknowledged when a stream broke are sent again on the
 *   next stream with the same `batch_id`. Ingestion publishes with that id as JetStream's
 *   `Nats-Msg-Id`, so a batch that was in fact stored before the break is stored once.
 */
import { randomBytes } from 'node:crypto';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Transport } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import type { Logger } from 'pino';
import type { MetricType, SeriesSchema } from '../contracts/telemesh/common/v1/common_pb.js';
import { HistogramSeriesSchema, SummarySeriesSchema, type HistogramSeries, type SummarySeries, type WriteResult } from '../contracts/telemesh/ingest/v1/ingest_pb.js';
import type { StreamRequest, StreamResponse } from '../contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { EncodedIngestService } from '../model/index.js';
import { AsyncQueue } from './async-queue.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { BatchBuffer, type Batch, type OverflowPolicy } from './buffer.js';
import { SeriesEncoder, type LabelInput, type SeriesInput } from './encode.js';

/** Timer functions; injectable so tests control time. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * A series as callers may give it: a generated `Series`, its init shape, or
 * {@link SeriesInput} (which also takes timestamps as numbers, sparing a BigInt each).
 */
export type SeriesInit = MessageInitShape<typeof SeriesSchema> | SeriesInput;
/** A histogram with explicit buckets, as callers may give it. */
export type HistogramInit = MessageInitShape<typeof HistogramSeriesSchema>;
/** A summary, as callers may give it. */
export type SummaryInit = MessageInitShape<typeof SummarySeriesSchema>;

/** Options of {@link AgentClient}. */
export interface AgentClientOptions {
  /** Identifies the agent; part of every batch id. */
  readonly agentId: string;
  /** gRPC (HTTP/2) URL of ingestion, e.g. `http://127.0.0.1:7401`. Ignored when `transport` is given. */
  readonly baseUrl?: string;
  /** A ready Connect transport (must support bidirectional streaming, i.e. HTTP/2). */
  readonly transport?: Transport;
  /** Bearer token, or a function returning a fresh one on every (re)connect. */
  readonly token?: string | (() => string | Promise<string>);
  /** Seal a batch at this many samples. Default 10 000. */
  readonly maxBatchSamples?: number;
  /** Seal a batch this long after its first sample, ms. Default 1 000. */
  readonly maxBatchDelayMs?: number;
  /** Bound on samples held (building, queued and in flight). Default 1 000 000. */
  readonly maxBufferedSamples?: number;
  /** What to discard when the buffer is full. Default `drop-oldest`. */
  readonly overflow?: OverflowPolicy;
  /** Batches on the wire awaiting acknowledgement. Default 4. */
  readonly maxInflightBatches?: number;
  /** Reconnect backoff. */
  readonly backoff?: BackoffOptions;
  /** Random source in [0, 1) for the jitter (tests pin it). */
  readonly random?: () => number;
  /** Timers (tests pass fakes). */
  readonly timers?: Timers;
  /** Distinguishes this process's batch ids from a previous run of the same agent. Default: start time + random. */
  readonly instanceId?: string;
  readonly logger?: Logger;
  /** Called for each acknowledged batch. */
  readonly onAck?: (ack: BatchAck) => void;
  /** Called when a stream breaks, with the delay before the next attempt. */
  readonly onError?: (err: ConnectError, attempt: number, delayMs: number) => void;
}

/** One acknowledgement. */
export interface BatchAck {
  readonly batchId: string;
  readonly samples: number;
  /** How many times the batch was sent before this acknowledgement (>1 after a replay). */
  readonly sends: number;
  readonly result: WriteResult | undefined;
}

/** Running totals, for self-metrics and tests. */
export interface AgentClientStats {
  /** Samples the caller handed in (including any dropped). */
  readonly addedSamples: number;
  readonly sealedBatches: number;
  readonly ackedBatches: number;
  /** Samples the server accepted (from acknowledgements). */
  readonly acceptedSamples: number;
  /** Samples the server rejected (partial success; not retried). */
  readonly rejectedSamples: number;
  /**
   * Batches the server refused whole as malformed (`invalid_argument`): sending them again
   * cannot succeed, so they are discarded and their samples counted here.
   */
  readonly refusedBatches: number;
  readonly refusedSamples: number;
  /** Samples discarded by the overflow policy. */
  readonly droppedSamples: number;
  /** Batches discarded whole by `drop-oldest`. */
  readonly droppedBatches: number;
  /** Sends of a batch after its first (replays after reconnects). */
  readonly replayedBatches: number;
  /** Streams opened after the first. */
  readonly reconnects: number;
  /** Samples held now (building, queued, in flight). */
  readonly bufferedSamples: number;
  /** True while a stream is open. */
  readonly connected: boolean;
}

/** Raised by {@link AgentClient.flush} and {@link AgentClient.close} when the deadline passes first. */
export class FlushTimeoutError extends Error {
  constructor(readonly unacknowledgedSamples: number) {
    super(`${unacknowledgedSamples} samples not acknowledged before the deadline`);
    this.name = 'FlushTimeoutError';
  }
}

/** A unique-per-process suffix for batch ids: start time plus randomness. */
function newInstanceId(): string {
  return `${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

/**
 * The agent SDK client. Create it, call {@link start}, {@link add} samples, and
 * {@link close} at the end (which flushes).
 */
export class AgentClient {
  readonly #opts: AgentClientOptions;
  readonly #timers: Timers;
  readonly #client: StreamClient;
  readonly #encoder = new SeriesEncoder();
  readonly #buffer: BatchBuffer;
  readonly #maxBatchSamples: number;
  readonly #maxBatchDelayMs: number;
  readonly #window: number;
  readonly #instanceId: string;

  // The batch being built: series encoded by addSeries, and per-label-set series for add()
  // (encoded when the batch is sealed).
  #pending: (Uint8Array | OpenSeries)[] = [];
  #pendingStarts: bigint[] = [];
  #pendingHasStarts = false;
  #pendingHistograms: HistogramSeries[] = [];
  #pendingSummaries: SummarySeries[] = [];
  #pendingIndex = new Map<string, OpenSeries>();
  // Label arrays of add()'s series by label key, so a series added batch after batch
  // reuses one array and its remembered encoding. Bounded; starts over when full.
  #labelSets = new Map<string, readonly LabelInput[]>();
  #pendingSamples = 0;
  #batchTimer: unknown;
  #seq = 0;

  #running: Promise<void> | undefined;
  #closing: Promise<AgentClientStats> | undefined;
  #stopping = false;
  #connected = false;
  #wake: (() => void) | undefined;
  #endStream: (() => void) | undefined;
  #abortStream: (() => void) | undefined;
  #sleepCancel: (() => void) | undefined;
  #drainWaiters: (() => void)[] = [];

  #added = 0;
  #sealed = 0;
  #acked = 0;
  #accepted = 0;
  #rejected = 0;
  #refusedBatches = 0;
  #refusedSamples = 0;
  #replayed = 0;
  #reconnects = 0;

  constructor(opts: AgentClientOptions) {
    if (!opts.agentId) throw new RangeError('agentId is required');
    this.#opts = opts;
    this.#timers = opts.timers ?? realTimers;
    this.#maxBatchSamples = opts.maxBatchSamples ?? 10_000;
    this.#maxBatchDelayMs = opts.maxBatchDelayMs ?? 1_000;
    this.#window = opts.maxInflightBatches ?? 4;
    const maxBuffered = opts.maxBufferedSamples ?? 1_000_000;
    if (!(this.#maxBatchSamples >= 1)) throw new RangeError(`maxBatchSamples must be at least 1, got ${this.#maxBatchSamples}`);
    if (!(this.#window >= 1)) throw new RangeError(`maxInflightBatches must be at least 1, got ${this.#window}`);
    if (maxBuffered < this.#maxBatchSamples) {
      throw new RangeError(`maxBufferedSamples (${maxBuffered}) must be at least maxBatchSamples (${this.#maxBatchSamples})`);
    }
    this.#buffer = new BatchBuffer(maxBuffered, opts.overflow ?? 'drop-oldest');
    this.#instanceId = opts.instanceId ?? newInstanceId();
    const transport =
      opts.transport ??
      createGrpcTransport({
        baseUrl: opts.baseUrl ?? 'http://127.0.0.1:7401',
        // HTTP/2 pings find a silently dead connection (host sleep, NAT drop) so it is replaced.
        pingIntervalMs: 15_000,
        pingTimeoutMs: 10_000,
      });
    // Stream requests carry each series as the bytes encoded when it was added.
    this.#client = createClient(EncodedIngestService, transport) as unknown as StreamClient;
  }

  /** Opens the stream (and keeps reopening it) until {@link close}. Idempotent. */
  start(): void {
    this.#running ??= this.#run();
  }

  /**
   * Adds one sample of the series `labels` (must include `__name__`). Samples of the same
   * series within a batch share one entry. `timestampMs` 0 means "when the server receives
   * it". Returns false when the overflow policy discarded it.
   */
  add(labels: Readonly<Record<string, string>>, value: number, timestampMs = 0, type?: MetricType): boolean {
    this.#added++;
    if (!this.#buffer.room(1, this.#pendingSamples)) return false;
    const key = labelKey(labels);
    let s = this.#pendingIndex.get(key);
    if (!s) {
      let set = this.#labelSets.get(key);
      if (set === undefined) {
        if (this.#labelSets.size >= MAX_LABEL_SETS) this.#labelSets.clear();
        set = Object.entries(labels).map(([name, v]) => ({ name, value: v }));
        this.#labelSets.set(key, set);
      }
      s = { labels: set, timestampsMs: [], values: [], type: type ?? 0 };
      this.#pendingIndex.set(key, s);
      this.#pending.push(s);
      this.#pendingStarts.push(0n);
    }
    s.timestampsMs.push(timestampMs);
    s.values.push(value);
    this.#grew(1);
    return true;
  }

  /**
   * Adds whole series (for callers that build them, e.g. a bridge). A series is not split
   * across batches. `startTimesMs` gives, by index, the start of each cumulative series
   * (counter reset or process start; 0 when unknown). Returns false when the overflow
   * policy discarded them.
   *
   * Each series is encoded now: its timestamps and values arrays are read and not kept
   * (the caller may reuse them), but its `labels` array is owned by the SDK from here on.
   * The SDK freezes it and its labels and remembers their encoding by the array's
   * identity, so passing the same array with every batch costs nothing, and a different
   * label set needs a different array.
   */
  addSeries(series: readonly SeriesInit[], startTimesMs?: readonly number[]): boolean {
    let samples = 0;
    for (const s of series) samples += s.values?.length ?? 0;
    this.#added += samples;
    if (!this.#buffer.room(samples, this.#pendingSamples)) return false;
    const encoded = this.#encoder.encodeAll(series as readonly SeriesInput[]);
    for (let i = 0; i < encoded.length; i++) {
      this.#pending.push(encoded[i]!);
      const st = startTimesMs?.[i] ?? 0;
      if (st !== 0) this.#pendingHasStarts = true;
      // The literal for the usual 0: BigInt(0) allocates each time.
      this.#pendingStarts.push(st === 0 ? 0n : BigInt(st));
    }
    this.#grew(samples);
    return true;
  }

  /**
   * Adds histograms with explicit buckets (ingestion stores them as classic Prometheus
   * `_bucket`/`_sum`/`_count` series). Each point counts as buckets + 3 samples toward
   * batch size and buffer bound, what it becomes in the store.
   */
  addHistograms(histograms: readonly HistogramInit[]): boolean {
    const hs = histograms.map((h) => create(HistogramSeriesSchema, h));
    let samples = 0;
    for (const h of hs) for (const p of h.points) samples += p.upperBounds.length + 3;
    this.#added += samples;
    if (!this.#buffer.room(samples, this.#pendingSamples)) return false;
    this.#pendingHistograms.push(...hs);
    this.#grew(samples);
    return true;
  }

  /** Adds summaries (stored as quantile series plus `_sum` and `_count`; each point counts as quantiles + 2 samples). */
  addSummaries(summaries: readonly SummaryInit[]): boolean {
    const ss = summaries.map((s) => create(SummarySeriesSchema, s));
    let samples = 0;
    for (const s of ss) for (const p of s.points) samples += p.quantiles.length + 2;
    this.#added += samples;
    if (!this.#buffer.room(samples, this.#pendingSamples)) return false;
    this.#pendingSummaries.push(...ss);
    this.#grew(samples);
    return true;
  }

  #grew(samples: number): void {
    const wasEmpty = this.#pendingSamples === 0;
    this.#pendingSamples += samples;
    if (this.#pendingSamples >= this.#maxBatchSamples) {
      this.#seal();
    } else if (wasEmpty) {
      this.#batchTimer = this.#timers.setTimeout(() => {
        this.#batchTimer = undefined;
        this.#seal();
      }, this.#maxBatchDelayMs);
    }
  }

  /** Moves the batch being built into the buffer. */
  #seal(): void {
    if (this.#batchTimer !== undefined) {
      this.#timers.clearTimeout(this.#batchTimer);
      this.#batchTimer = undefined;
    }
    if (this.#pendingSamples === 0) return;
    const seq = ++this.#seq;
    this.#buffer.push({
      seq,
      id: `${this.#opts.agentId}/${this.#instanceId}/${seq}`,
      series: this.#encodePending(),
      ...(this.#pendingHasStarts ? { seriesStartTimesMs: this.#pendingStarts } : {}),
      histograms: this.#pendingHistograms,
      summaries: this.#pendingSummaries,
      samples: this.#pendingSamples,
      state: 'queued',
      sends: 0,
    });
    this.#sealed++;
    this.#pending = [];
    this.#pendingStarts = [];
    this.#pendingHasStarts = false;
    this.#pendingHistograms = [];
    this.#pendingSummaries = [];
    this.#pendingIndex = new Map();
    this.#pendingSamples = 0;
    this.#wake?.();
  }

  /** The batch's series, encoding those add() built. */
  #encodePending(): Uint8Array[] {
    const open: OpenSeries[] = [];
    for (const s of this.#pending) if (!(s instanceof Uint8Array)) open.push(s);
    const encoded = this.#encoder.encodeAll(open);
    let k = 0;
    return this.#pending.map((s) => (s instanceof Uint8Array ? s : encoded[k++]!));
  }

  /** Totals so far. */
  stats(): AgentClientStats {
    const d = this.#buffer.drops;
    return {
      addedSamples: this.#added,
      sealedBatches: this.#sealed,
      ackedBatches: this.#acked,
      acceptedSamples: this.#accepted,
      rejectedSamples: this.#rejected,
      refusedBatches: this.#refusedBatches,
      refusedSamples: this.#refusedSamples,
      droppedSamples: d.droppedSamples,
      droppedBatches: d.droppedBatches,
      replayedBatches: this.#replayed,
      reconnects: this.#reconnects,
      bufferedSamples: this.#buffer.samples + this.#pendingSamples,
      connected: this.#connected,
    };
  }

  /**
   * Seals the batch being built and resolves when everything buffered is acknowledged
   * (or dropped). Rejects with {@link FlushTimeoutError} after `timeoutMs`.
   */
  async flush(timeoutMs = 30_000): Promise<void> {
    this.#seal();
    if (this.#buffer.length === 0) return;
    this.start();
    await new Promise<void>((resolve, reject) => {
      const timer = this.#timers.setTimeout(() => {
        this.#drainWaiters = this.#drainWaiters.filter((w) => w !== done);
        reject(new FlushTimeoutError(this.#buffer.samples));
      }, timeoutMs);
      const done = () => {
        this.#timers.clearTimeout(timer);
        resolve();
      };
      this.#drainWaiters.push(done);
    });
  }

  /**
   * Flushes (up to `timeoutMs`), then ends the stream. Resolves with the stats; samples
   * still unacknowledged at the deadline are counted in `bufferedSamples` and lost.
   * Idempotent: later calls share the first call's outcome.
   */
  close(timeoutMs = 30_000): Promise<AgentClientStats> {
    return (this.#closing ??= this.#close(timeoutMs));
  }

  async #close(timeoutMs: number): Promise<AgentClientStats> {
    try {
      await this.flush(timeoutMs);
    } catch (err) {
      if (!(err instanceof FlushTimeoutError)) throw err;
      this.#opts.logger?.warn({ unacknowledged: err.unacknowledgedSamples }, 'agent client closed with unacknowledged samples');
    } finally {
      this.#stopping = true;
      this.#sleepCancel?.();
      // Half-close: the server ends its side once it has answered what it received.
      this.#endStream?.();
      const running = this.#running;
      if (running) {
        let t: unknown;
        await Promise.race([running, new Promise<void>((r) => (t = this.#timers.setTimeout(r, 5_000)))]);
        this.#timers.clearTimeout(t);
        this.#abortStream?.();
        await running;
      }
      if (this.#batchTimer !== undefined) this.#timers.clearTimeout(this.#batchTimer);
    }
    return this.stats();
  }

  #checkDrained(): void {
    if (this.#buffer.length > 0) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }

  async #run(): Promise<void> {
    let attempt = 0;
    let first = true;
    while (!this.#stopping) {
      if (!first) this.#reconnects++;
      first = false;
      const { progressed, error, unacknowledged } = await this.#session();
      if (this.#stopping) break;
      if (progressed) attempt = 0;
      const ce = ConnectError.from(error);
      // The server's retry-after (rate limit, overload) is a floor under the jittered delay.
      const delay = Math.max(backoffDelay(attempt, this.#opts.backoff, this.#opts.random), retryAfterMs(ce));
      this.#opts.logger?.warn({ code: Code[ce.code], err: ce.rawMessage, unacknowledged, attempt, delayMs: delay }, 'ingest stream broke; reconnecting');
      this.#opts.onError?.(ce, attempt, delay);
      attempt++;
      await new Promise<void>((resolve) => {
        const t = this.#timers.setTimeout(resolve, delay);
        this.#sleepCancel = () => {
          this.#timers.clearTimeout(t);
          resolve();
        };
      });
      this.#sleepCancel = undefined;
    }
  }

  /** One stream, from open to break: whether any batch was acknowledged on it, and why it ended. */
  async #session(): Promise<{ progressed: boolean; error: unknown; unacknowledged: number }> {
    const ac = new AbortController();
    const outbox = new AsyncQueue<EncodedStreamRequest>();
    const sent = new Map<bigint, Batch>();
    let streamSeq = 0n;
    let progressed = false;
    let error: unknown;
    let unacknowledged = 0;
    const pump = () => {
      while (sent.size < this.#window) {
        const b = this.#buffer.nextQueued();
        if (!b) return;
        b.state = 'inflight';
        if (++b.sends > 1) this.#replayed++;
        streamSeq++;
        sent.set(streamSeq, b);
        outbox.push({
          $typeName: 'telemesh.ingest.v1.StreamRequest',
          batchSeq: streamSeq,
          batchId: b.id,
          series: b.series,
          seriesStartTimesMs: b.seriesStartTimesMs ?? [],
          histograms: b.histograms ?? [],
          summaries: b.summaries ?? [],
        });
      }
    };
    this.#endStream = () => outbox.close();
    this.#abortStream = () => ac.abort();
    try {
      const token = typeof this.#opts.token === 'function' ? await this.#opts.token() : this.#opts.token;
      const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
      const responses = this.#client.stream(outbox, { signal: ac.signal, headers });
      this.#connected = true;
      this.#wake = pump;
      pump();
      for await (const res of responses) {
        const b = sent.get(res.batchSeq);
        if (!b) throw new ConnectError(`acknowledgement for unknown batch_seq ${res.batchSeq}`, Code.Internal);
        sent.delete(res.batchSeq);
        progressed = true;
        if (this.#buffer.ack(b)) {
          this.#acked++;
          const r = res.result;
          this.#accepted += Number(r?.acceptedSamples ?? 0n);
          this.#rejected += Number(r?.rejectedSamples ?? 0n);
          this.#opts.onAck?.({ batchId: b.id, samples: b.samples, sends: b.sends, result: r });
        }
        pump();
        this.#checkDrained();
      }
      if (!this.#stopping) throw new ConnectError('stream ended by the server', Code.Unavailable);
    } catch (err) {
      error = err;
      unacknowledged = sent.size;
      // Acknowledgements come in batch order, so a batch refused as malformed is the oldest
      // one not acknowledged. Replaying it would fail forever: discard and count it.
      if (!this.#stopping && ConnectError.from(err).code === Code.InvalidArgument) {
        let oldest: Batch | undefined;
        for (const b of sent.values()) if (!oldest || b.seq < oldest.seq) oldest = b;
        if (oldest && this.#buffer.ack(oldest)) {
          this.#refusedBatches++;
          this.#refusedSamples += oldest.samples;
          this.#checkDrained();
        }
      }
    } finally {
      this.#connected = false;
      this.#wake = undefined;
      this.#endStream = undefined;
      this.#abortStream = undefined;
      outbox.close();
      ac.abort();
      // Everything unacknowledged is replayed, with the same batch ids, on the next stream.
      this.#buffer.requeueInflight();
    }
    return { progressed, error, unacknowledged };
  }
}

/** The `retry-after` header (seconds) of a failed call, in ms; 0 when absent. */
function retryAfterMs(err: ConnectError): number {
  const v = Number(err.metadata.get('retry-after'));
  return Number.isFinite(v) && v > 0 ? Math.min(v * 1000, 300_000) : 0;
}

/** Most label arrays {@link AgentClient.add} remembers (a few hundred bytes each). */
const MAX_LABEL_SETS = 100_000;

/** A series add() is building: encoded when its batch is sealed. */
interface OpenSeries {
  readonly labels: readonly LabelInput[];
  readonly timestampsMs: number[];
  readonly values: number[];
  readonly type: number;
}

/** A Stream request of {@link EncodedIngestService}: series as encoded bytes. */
type EncodedStreamRequest = Omit<StreamRequest, 'series'> & { series: Uint8Array[] };

/** The one method the client calls, typed for the encoded request. */
interface StreamClient {
  stream(requests: AsyncIterable<EncodedStreamRequest>, options: { signal: AbortSignal; headers: Record<string, string> }): AsyncIterable<StreamResponse>;
}

/** A map key for a label set, independent of the order labels were given in. */
function labelKey(labels: Readonly<Record<string, string>>): string {
  const names = Object.keys(labels).sort();
  let k = '';
  for (const n of names) k += `${n}\u0000${labels[n]}\u0001`;
  return k;
}
