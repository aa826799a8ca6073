/**
 * The `MetricStore` port: what the aggregation service needs from metric storage, with no
 * trace of the database behind it. Adapters (DuckDB embedded, MongoDB in production, an
 * in-memory fake for tests) all pass the one contract suite in `contract.ts`.
 */
import type { Label, Labels, Matcher, SeriesSamples } from '../model/index.js';

/** Outcome of one `MetricStore.write`. */
export interface WriteResult {
  /** Samples stored by this call; 0 when the batch was a duplicate. */
  readonly samplesWritten: number;
  /** True when this (tenant, batch id) had already been stored, so nothing was written. */
  readonly duplicate: boolean;
}

/** A batch of samples as columns, one row per sample (see `MetricStore.writeColumns`). */
export interface SampleColumns {
  /** Rows in use: the arrays may be longer. */
  readonly rowCount: number;
  /** Label set of each row. */
  readonly labels: readonly Labels[];
  readonly timestampsMs: Float64Array;
  readonly values: Float64Array;
}

/**
 * Per-query ceilings. Crossing one makes `select` throw `StoreLimitError` naming the limit;
 * a result exactly at a limit is allowed. Absent means unlimited.
 */
export interface SelectLimits {
  /** Most series the answer may hold. */
  readonly maxSeries?: number;
  /** Most samples, summed over all series, the answer may hold. */
  readonly maxSamples?: number;
}

/**
 * One series as `selectColumns` answers it: `SeriesSamples` with the samples in typed
 * arrays. The arrays belong to the caller (the store keeps no reference to them), but may
 * be views of one buffer shared by the whole answer.
 */
export interface SeriesColumns {
  readonly labels: Label[];
  readonly timestampsMs: Float64Array;
  readonly values: Float64Array;
}

/**
 * Storage for metric time series, scoped by tenant. No method ever reads or writes another
 * tenant's data: the tenant is part of every key and every query.
 *
 * Series identity is the canonical label set (sorted by name, empty values dropped; see
 * `canonicalLabels` in libs/model). Matchers follow Prometheus: a missing label matches as
 * the empty string and regular expressions are anchored at both ends. Time ranges are
 * inclusive at both ends, in Unix milliseconds.
 *
 * Calls may overlap; adapters order them as needed. After `close()` every call rejects with
 * `StoreClosedError`.
 */
export interface MetricStore {
  /**
   * Stores one batch of samples atomically, exactly once per (tenant, batchId): a batch
   * redelivered after a crash (stored but never acknowledged) is recognised and skipped, so
   * no count or sum changes. Rejects with `StoreInputError` for a malformed batch.
   */
  write(tenant: string, batchId: string, series: readonly SeriesSamples[]): Promise<WriteResult>;

  /**
   * `write` for a batch held as columns: exactly what `write` does with one series per row
   * (`{ labels: labels[i], timestampsMs: [timestampsMs[i]], values: [values[i]] }`).
   * Optional: a caller uses it when present and falls back to `write`. Why: the sample
   * consumer decodes 10 000-series batches straight into these columns, and an adapter
   * that appends columns (DuckDB) then builds no object per series; label sets passed
   * frozen (the same array for the same series, batch after batch) are resolved to the
   * stored series once, not once per batch. The arrays are read before the promise
   * settles and are not kept.
   */
  writeColumns?(tenant: string, batchId: string, columns: SampleColumns): Promise<WriteResult>;

  /**
   * Series matching every matcher with their samples in `[startMs, endMs]`. Series without
   * samples in the range are left out. Series come sorted by label set, samples by time.
   * Rejects with `StoreLimitError` when an answer would cross a limit.
   */
  select(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
    limits?: SelectLimits,
  ): Promise<SeriesSamples[]>;

  /**
   * `select`, with each series' samples in `Float64Array`s: what the query engine reads,
   * which then keeps them as they are instead of copying every sample into arrays of its
   * own (and leaves the garbage collector one buffer instead of two growing arrays per
   * series). Same series, samples, order and limits as `select`.
   */
  selectColumns(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
    limits?: SelectLimits,
  ): Promise<SeriesColumns[]>;

  /**
   * `select` with the samples left in storage: the label sets of the series matching every
   * matcher that have a sample in `[startMs, endMs]`, sorted. Its cost follows the series,
   * not the samples, so only `limits.maxSeries` applies (rejects with `StoreLimitError`).
   */
  series(tenant: string, matchers: readonly Matcher[], startMs: number, endMs: number, limits?: SelectLimits): Promise<Label[][]>;

  /** Sorted distinct label names of the matching series with samples in `[startMs, endMs]`. */
  labelNames(tenant: string, matchers: readonly Matcher[], startMs: number, endMs: number): Promise<string[]>;

  /**
   * Sorted distinct non-empty values of label `name` over the matching series with samples
   * in `[startMs, endMs]`.
   */
  labelValues(
    tenant: string,
    name: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
  ): Promise<string[]>;

  /**
   * Waits for in-flight calls, makes everything written durable and releases the storage.
   * Idempotent: later calls return the same promise.
   */
  close(): Promise<void>;

  /** What the adapter reports about itself for self-metrics. Optional. */
  stats?(): StoreStats;
}

/** See `MetricStore.stats`. */
export interface StoreStats {
  /** Samples held in memory for queries over recent data (the DuckDB head). */
  readonly headSamples: number;
  /** How far back from now the head answers for, ms (0 when it answers for nothing). */
  readonly headCoverageMs: number;
  /** Sample reads (`select`/`selectColumns`) answered from the head alone. */
  readonly headReads: number;
  /** Sample reads that read stored rows and chunks. */
  readonly storedReads: number;
}
