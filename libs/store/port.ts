/**
 * The `MetricStore` port: what the aggregation service needs from metric storage, with no
 * trace of the database behind it. Adapters (DuckDB embedded, MongoDB in production, an
 * in-memory fake for tests) all pass the one contract suite in `contract.ts`.
 */
import type { Matcher, SeriesSamples } from '../model/index.js';

/** Outcome of one `MetricStore.write`. */
export interface WriteResult {
  /** Samples stored by this call; 0 when the batch was a duplicate. */
  readonly samplesWritten: number;
  /** True when this (tenant, batch id) had already been stored, so nothing was written. */
  readonly duplicate: boolean;
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
}
