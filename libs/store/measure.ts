/**
 * Storage-efficiency measurement for the DuckDB store, shared by the store and query
 * benchmarks. Not used by the running service.
 */
import { stat } from 'node:fs/promises';
import { DuckDBInstance } from '@duckdb/node-api';

/** What {@link measureBytesPerSample} found. */
export interface StorageMeasurement {
  /** Size of the database file after a checkpoint, bytes (the WAL folded in). */
  readonly fileBytes: number;
  /**
   * Bytes in blocks the database uses. Lower than `fileBytes` after deletes (retention,
   * sealing): DuckDB keeps freed blocks in the file and reuses them for later writes
   * rather than shrinking it, so this is the size data settles at.
   */
  readonly usedBytes: number;
  /** Raw samples stored, as rows or sealed in chunks. */
  readonly samples: number;
  /** Of those, samples sealed in compressed chunks. */
  readonly sealedSamples: number;
  /** Encoded bytes of the sealed chunks (payload only), per sealed sample. */
  readonly sealedPayloadBytesPerSample: number;
  /** Rollup windows stored, all tiers (rows and sealed). */
  readonly rollupRows: number;
  /** Of those, windows sealed in compressed chunks. */
  readonly sealedWindows: number;
  /** Encoded bytes of the sealed rollup chunks (payload only), per sealed window. */
  readonly sealedWindowPayloadBytes: number | null;
  /** `usedBytes / samples`: everything stored (series, batch ids, rollups) per raw sample. */
  readonly bytesPerSample: number;
  /** `fileBytes / samples`. */
  readonly fileBytesPerSample: number;
  /** Compression DuckDB chose per column of `samples` (unsealed rows), with its segment count. */
  readonly compression: Record<string, Record<string, number>>;
}

/**
 * Opens the DuckDB store file at `path` (which must not be open elsewhere: close the store
 * first), checkpoints it, and reports bytes on disk per raw sample.
 */
export async function measureBytesPerSample(path: string): Promise<StorageMeasurement> {
  const instance = await DuckDBInstance.create(path);
  const c = await instance.connect();
  try {
    await c.run('CHECKPOINT');
    const count = async (table: string) =>
      Number((await c.runAndReadAll(`SELECT count(*)::DOUBLE FROM ${table}`)).getColumns()[0][0]);
    const [sealed, payload] = (
      await c.runAndReadAll('SELECT coalesce(sum(n), 0)::DOUBLE, coalesce(sum(octet_length(data)), 0)::DOUBLE FROM chunks')
    ).getRows()[0] as [number, number];
    const samples = (await count('samples')) + sealed;
    const [sealedWindows, windowPayload] = (
      await c.runAndReadAll('SELECT coalesce(sum(n), 0)::DOUBLE, coalesce(sum(octet_length(data)), 0)::DOUBLE FROM rollup_chunks')
    ).getRows()[0] as [number, number];
    const rollupRows = (await count('rollups')) + sealedWindows;
    const compression: Record<string, Record<string, number>> = {};
    const rows = await c.runAndReadAll(
      `SELECT column_name, compression, count(*)::INTEGER FROM pragma_storage_info('samples') GROUP BY ALL ORDER BY ALL`,
    );
    for (const [column, kind, segments] of rows.getRows() as [string, string, number][]) {
      (compression[column] ??= {})[kind] = segments;
    }
    const [size] = (await c.runAndReadAll('SELECT used_blocks::DOUBLE, block_size::DOUBLE FROM pragma_database_size()')).getRows() as [
      number,
      number,
    ][];
    c.closeSync();
    instance.closeSync();
    const fileBytes = (await stat(path)).size;
    const usedBytes = size[0] * size[1];
    const per = (bytes: number) => (samples === 0 ? NaN : bytes / samples);
    return {
      fileBytes,
      usedBytes,
      samples,
      sealedSamples: sealed,
      sealedPayloadBytesPerSample: sealed === 0 ? NaN : payload / sealed,
      rollupRows,
      sealedWindows,
      sealedWindowPayloadBytes: sealedWindows === 0 ? null : windowPayload / sealedWindows,
      bytesPerSample: per(usedBytes),
      fileBytesPerSample: per(fileBytes),
      compression,
    };
  } catch (err) {
    c.closeSync();
    instance.closeSync();
    throw err;
  }
}
