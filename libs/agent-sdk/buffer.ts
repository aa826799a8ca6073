/**
 * The SDK's bounded buffer of sealed, unacknowledged batches and its overflow policy.
 * A batch stays here from sealing until the server acknowledges it, so a batch that was
 * sent but not acknowledged when the connection broke is still here to be replayed.
 */
import type { HistogramSeries, SummarySeries } from '../contracts/telemesh/ingest/v1/ingest_pb.js';

/**
 * What happens when the buffer is full:
 * - `drop-oldest` discards the oldest batches not currently awaiting an acknowledgement,
 *   keeping the freshest data (what a monitoring agent usually wants after an outage);
 * - `reject-newest` refuses the new samples and keeps what is buffered.
 */
export type OverflowPolicy = 'drop-oldest' | 'reject-newest';

/** One sealed batch. */
export interface Batch {
  /** Order of sealing within this client, from 1. */
  readonly seq: number;
  /** Idempotency key sent as `batch_id`; stable across replays. */
  readonly id: string;
  /** Each series encoded as `telemesh.common.v1.Series` (encoded once, when added). */
  readonly series: Uint8Array[];
  /** Start time of each cumulative entry of `series` (by index; empty when none is known). */
  readonly seriesStartTimesMs?: bigint[];
  readonly histograms?: HistogramSeries[];
  readonly summaries?: SummarySeries[];
  /** Number of samples: values of `series`, plus the series each histogram or summary point expands to. */
  readonly samples: number;
  /** `queued`: to be sent (again); `inflight`: sent on the current stream, not yet acknowledged. */
  state: 'queued' | 'inflight';
  /** How many times it was sent (1 on the first send; more after replays). */
  sends: number;
}

/** Counts kept by the buffer. */
export interface BufferDrops {
  /** Samples discarded by the overflow policy. */
  readonly droppedSamples: number;
  /** Whole batches discarded by `drop-oldest`. */
  readonly droppedBatches: number;
}

/**
 * Sealed batches in sealing order, bounded by a number of samples. Acknowledged batches
 * leave it; everything else (queued or in flight) counts toward the bound.
 */
export class BatchBuffer {
  readonly #batches: Batch[] = [];
  #samples = 0;
  #droppedSamples = 0;
  #droppedBatches = 0;

  constructor(
    /** Upper bound on buffered samples (including the batch being built, see {@link room}). */
    readonly maxSamples: number,
    readonly policy: OverflowPolicy,
  ) {
    if (!(maxSamples >= 1)) throw new RangeError(`maxBufferedSamples must be at least 1, got ${maxSamples}`);
  }

  /** Samples held (queued and in flight). */
  get samples(): number {
    return this.#samples;
  }

  /** Batches held. */
  get length(): number {
    return this.#batches.length;
  }

  /** Batches in flight. */
  get inflight(): number {
    let n = 0;
    for (const b of this.#batches) if (b.state === 'inflight') n++;
    return n;
  }

  /** What the overflow policy discarded so far. */
  get drops(): BufferDrops {
    return { droppedSamples: this.#droppedSamples, droppedBatches: this.#droppedBatches };
  }

  /**
   * Makes room for `incoming` more samples when `pending` samples are already being built
   * outside the buffer. Returns true when they fit (after dropping old batches under
   * `drop-oldest`); false means the caller must drop the incoming samples, which are
   * then counted here.
   */
  room(incoming: number, pending: number): boolean {
    const fits = () => this.#samples + pending + incoming <= this.maxSamples;
    if (fits()) return true;
    if (this.policy === 'drop-oldest') {
      // In-flight batches may already be stored; dropping them would save nothing.
      for (let i = 0; i < this.#batches.length && !fits(); ) {
        const b = this.#batches[i]!;
        if (b.state === 'queued') {
          this.#batches.splice(i, 1);
          this.#samples -= b.samples;
          this.#droppedSamples += b.samples;
          this.#droppedBatches++;
        } else {
          i++;
        }
      }
      if (fits()) return true;
    }
    this.#droppedSamples += incoming;
    return false;
  }

  /** Adds a sealed batch (the caller made room first). */
  push(batch: Batch): void {
    this.#batches.push(batch);
    this.#samples += batch.samples;
  }

  /** The oldest queued batch, or undefined. */
  nextQueued(): Batch | undefined {
    for (const b of this.#batches) if (b.state === 'queued') return b;
    return undefined;
  }

  /** Removes an acknowledged batch. Returns false when it was not held (e.g. dropped). */
  ack(batch: Batch): boolean {
    const i = this.#batches.indexOf(batch);
    if (i < 0) return false;
    this.#batches.splice(i, 1);
    this.#samples -= batch.samples;
    return true;
  }

  /** After a broken stream: every in-flight batch is queued again, in sealing order, for replay. */
  requeueInflight(): number {
    let n = 0;
    for (const b of this.#batches) {
      if (b.state === 'inflight') {
        b.state = 'queued';
        n++;
      }
    }
    return n;
  }
}
