/**
 * The embedded `MetricStore` adapter: one DuckDB file under the data directory, opened only
 * by the aggregation service.
 *
 * Layout (see `SCHEMA`): labels are stored once per series in `series`, keyed by
 * (tenant, series_id) where series_id is `seriesId(labels)`; `samples` is an append-only
 * table with no key (a primary key would have to be checked on every sample, too slow for
 * ingest); `batches` records every stored batch id, written in the same transaction as its
 * samples, which is what makes redelivered batches harmless.
 *
 * Rollups (schema version 2): each write also records, in its transaction, which windows
 * of the finest tier it touched (`rollup_dirty`); the periodic compactor (`compact`)
 * recomputes those windows once they have ended into `rollups` (one row per tier, series
 * and window, with a quantile sketch) and `applyRetention` deletes what each tier's
 * retention has expired. See rollup.ts for how queries use the tiers.
 *
 * Sealing: after rolling up, the compactor moves samples older than `sealAfterMs` (2 h),
 * whole 2-hour spans at a time (see `sealNow`), into `chunks`, one row per series and
 * span holding the samples encoded by chunk.ts (about 1.1 bytes per sample against about
 * 9 as rows). Reads merge sealed chunks and rows; a late sample for a sealed span stays a
 * row until the next seal. Rollup windows are sealed the same way (schema version 3,
 * `sealRollupsNow`) into `rollup_chunks`, 24 windows per row, encoded by rollup-chunk.ts;
 * recomputing a sealed window first puts its chunk back into rows (`unsealWindows`).
 *
 * Concurrency: writes run one at a time on a dedicated connection (a promise queue), so
 * transactions never interleave; reads use a small pool of other connections and see only
 * committed batches (DuckDB's MVCC), never half of one.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import duckdbBindings from '@duckdb/node-bindings';
import {
  BIGINT,
  DOUBLE,
  DuckDBDataChunk,
  DuckDBDoubleVector,
  DuckDBInstance,
  DuckDBIntegerVector,
  LIST,
  listValue,
  UBIGINT,
  VARCHAR,
} from '@duckdb/node-api';
import type {
  DuckDBAppender,
  DuckDBBigIntVector,
  DuckDBBlobValue,
  DuckDBConnection,
  DuckDBPreparedStatement,
  DuckDBType,
  DuckDBUBigIntVector,
  DuckDBValue,
  DuckDBVarCharVector,
} from '@duckdb/node-api';
import type { Logger } from 'pino';
import { matchesAll } from '../model/index.js';
import type { CompiledMatcher, Label, Labels, Matcher, SeriesSamples } from '../model/index.js';
import { StartupError } from '../runtime/errors.js';
import {
  checkColumns,
  checkTenant,
  compareLabels,
  compileMatchers,
  decodeLabels,
  fromColumns,
  identityOf,
  labelValue,
  LimitTracker,
  metricNameEquality,
  normalizeRange,
  prepareBatch,
  sortedLabelNames,
  sortedLabelValues,
} from './common.js';
import type { PreparedBatch, TimeRange } from './common.js';
import { StoreClosedError, StoreInputError } from './errors.js';
import type { SampleColumns, SelectLimits, SeriesColumns, StoreStats, WriteResult } from './port.js';
import { aggregateWindows, checkTier, DEFAULT_RETENTION, mergeWindows, pickTier, startRollupJobs, validateRetention, windowStart } from './rollup.js';
import type {
  CompactionResult,
  RetentionPolicy,
  RetentionResult,
  RollupSeries,
  RollupStore,
  RollupWindow,
} from './rollup.js';
import { decodeChunk, encodeChunk } from './chunk.js';
import { decodeWindows, encodeWindows } from './rollup-chunk.js';
import { seriesId } from './series-id.js';
import { Head, type HeadRef, type HeadSeries } from './head.js';
import { QuantileSketch } from './sketch.js';

/** Schema version this build writes and understands. Bump with a migration step. */
export const DUCKDB_SCHEMA_VERSION = 3;

/**
 * The schema, version 1. Timestamps are BIGINT milliseconds rather than TIMESTAMP so they
 * round-trip exactly with no unit conversion; values are DOUBLE, which keeps NaN and ±Inf.
 */
const SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS series (
     tenant    VARCHAR NOT NULL,
     series_id UBIGINT NOT NULL,
     metric    VARCHAR NOT NULL,
     labels    VARCHAR NOT NULL,
     PRIMARY KEY (tenant, series_id)
   )`,
  `CREATE TABLE IF NOT EXISTS samples (
     tenant    VARCHAR NOT NULL,
     series_id UBIGINT NOT NULL,
     ts_ms     BIGINT  NOT NULL,
     value     DOUBLE  NOT NULL
   )`,
  `CREATE TABLE IF NOT EXISTS batches (
     tenant        VARCHAR NOT NULL,
     batch_id      VARCHAR NOT NULL,
     sample_count  BIGINT  NOT NULL,
     written_at_ms BIGINT  NOT NULL,
     PRIMARY KEY (tenant, batch_id)
   )`,
  // Version 2: rollup tiers. One row per (tier, series, window); no key for the same reason
  // as samples, and because the compactor deletes a window's rows before rewriting them.
  `CREATE TABLE IF NOT EXISTS rollups (
     tenant        VARCHAR NOT NULL,
     resolution_ms BIGINT  NOT NULL,
     series_id     UBIGINT NOT NULL,
     window_start  BIGINT  NOT NULL,
     min           DOUBLE  NOT NULL,
     max           DOUBLE  NOT NULL,
     sum           DOUBLE  NOT NULL,
     count         BIGINT  NOT NULL,
     last          DOUBLE  NOT NULL,
     last_ms       BIGINT  NOT NULL,
     sketch        BLOB    NOT NULL
   )`,
  // Sealed chunks: one series' older samples over up to CHUNK_SPAN_MS, encoded by chunk.ts
  // (about 1.5 bytes per sample instead of about 9.5 as rows). `seq` orders chunks sealed
  // by different runs, so samples sharing a timestamp keep their write order.
  `CREATE TABLE IF NOT EXISTS chunks (
     tenant    VARCHAR NOT NULL,
     series_id UBIGINT NOT NULL,
     start_ms  BIGINT  NOT NULL,
     end_ms    BIGINT  NOT NULL,
     seq       BIGINT  NOT NULL,
     n         INTEGER NOT NULL,
     data      BLOB    NOT NULL
   )`,
  // Version 3: sealed rollup windows, one row per tier, series and span of
  // ROLLUP_SPAN_WINDOWS windows, encoded by rollup-chunk.ts (about 7 bytes per 5-minute
  // window against about 30 as a `rollups` row). `start_ms`/`end_ms` are the first and last
  // window starts held. A window is either a row or in one chunk, never both.
  `CREATE TABLE IF NOT EXISTS rollup_chunks (
     tenant        VARCHAR NOT NULL,
     resolution_ms BIGINT  NOT NULL,
     series_id     UBIGINT NOT NULL,
     start_ms      BIGINT  NOT NULL,
     end_ms        BIGINT  NOT NULL,
     n             INTEGER NOT NULL,
     data          BLOB    NOT NULL
   )`,
  // Windows of the finest tier that writes touched since the last compaction. Duplicates
  // are allowed (the compactor reads DISTINCT): checking a key on every write costs more.
  `CREATE TABLE IF NOT EXISTS rollup_dirty (
     tenant        VARCHAR NOT NULL,
     resolution_ms BIGINT  NOT NULL,
     window_start  BIGINT  NOT NULL
   )`,
];

/**
 * Joins samples to a list of wanted series ids, returning the 1-based position of each id
 * in the list instead of the id, so no 64-bit id has to be turned into a JS BigInt per row.
 * `ts_ms::DOUBLE` is exact for every safe-integer timestamp and avoids BigInt as well.
 * Unordered: rows are bucketed by position in JS and sorted by time only where a series'
 * rows did not arrive in order, which costs far less than DuckDB sorting every row
 * (measured on 290k rows, 2 cores: about 25 ms against 52 ms with ORDER BY).
 */
const SELECT_SAMPLES = `
  WITH wanted AS (SELECT unnest($ids) AS series_id, generate_subscripts($ids, 1)::INTEGER AS idx)
  SELECT w.idx, s.ts_ms::DOUBLE AS ts_ms, s.value
  FROM samples s JOIN wanted w ON s.series_id = w.series_id
  WHERE s.tenant = $tenant AND s.ts_ms BETWEEN $start AND $end`;

/**
 * `SELECT_SAMPLES` in (time, write order), for the few series holding samples that share a
 * timestamp: those keep their write order (rowid), as in the in-memory fake. Ordering by
 * value instead would also turn -0 into 0 (DuckDB's sort keys normalise it).
 */
const SELECT_SAMPLES_ORDERED = `${SELECT_SAMPLES}
  ORDER BY w.idx, s.ts_ms, s.rowid`;

/** `SELECT_SAMPLES` with at most `$limit` rows. */
const SELECT_SAMPLES_LIMITED = `${SELECT_SAMPLES}
  LIMIT $limit`;

/**
 * `SELECT_SAMPLES_LIMITED` without the tenant test, for ids no other tenant has (see
 * `OTHER_TENANT_HAS_IDS`): comparing the tenant string on every scanned row cost about a
 * third of the whole read (measured on 522k rows, 2 cores: 21 ms CPU against 32 ms).
 * Still tenant-safe: a sample row always has its series row (retention deletes a series
 * only once nothing of it is left), so an id that only this tenant's series table holds
 * can only match this tenant's samples. `$tenant` stays bound so both share parameters.
 */
const SELECT_SAMPLES_OWN_IDS = `
  WITH wanted AS (SELECT unnest($ids) AS series_id, generate_subscripts($ids, 1)::INTEGER AS idx)
  SELECT w.idx, s.ts_ms::DOUBLE AS ts_ms, s.value
  FROM samples s JOIN wanted w ON s.series_id = w.series_id
  WHERE s.ts_ms BETWEEN $start AND $end AND $tenant IS NOT NULL
  LIMIT $limit`;

/** Whether another tenant has a series with one of the wanted ids (same labels, same id). */
const OTHER_TENANT_HAS_IDS = `
  SELECT 1 FROM series WHERE tenant <> $tenant AND series_id IN (SELECT unnest($ids)) LIMIT 1`;

/** Sealed chunks of the wanted series overlapping the range, by position, then seal order. */
const SELECT_CHUNKS = `
  WITH wanted AS (SELECT unnest($ids) AS series_id, generate_subscripts($ids, 1)::INTEGER AS idx)
  SELECT w.idx, c.start_ms::DOUBLE, c.end_ms::DOUBLE, c.data
  FROM chunks c JOIN wanted w ON c.series_id = w.series_id
  WHERE c.tenant = $tenant AND c.end_ms >= $start AND c.start_ms <= $end
  ORDER BY w.idx, c.seq, c.start_ms`;

/** Span of time one sealed chunk covers at most: 2 hours, 480 samples at 15 s. */
const CHUNK_SPAN_MS = 7_200_000;

/**
 * Positions (as in `SELECT_SAMPLES`) of the wanted series that have a sample in range: the
 * distinct ids in range first, then joined to the wanted ones, which measured twice as
 * fast as a correlated EXISTS per wanted series (522k rows, 2 cores: 12 ms CPU against
 * 19 ms; 9 ms without the tenant test, see `SELECT_SAMPLES_OWN_IDS` for when that is safe).
 */
const SERIES_WITH_SAMPLES = (ownIds: boolean) => `
  WITH wanted AS (SELECT unnest($ids) AS series_id, generate_subscripts($ids, 1)::INTEGER AS idx),
  present AS (
    SELECT DISTINCT series_id FROM samples
    WHERE ${ownIds ? '$tenant IS NOT NULL' : 'tenant = $tenant'} AND ts_ms BETWEEN $start AND $end)
  SELECT w.idx FROM wanted w JOIN present p ON p.series_id = w.series_id`;

const RANGE_TYPES = { ids: LIST(UBIGINT), start: BIGINT, end: BIGINT };

/** Rollup columns in the order `rowToWindow` reads them (after one leading column). */
const ROLLUP_COLUMNS =
  'window_start::DOUBLE, min, max, sum, count::DOUBLE, last, last_ms::DOUBLE, sketch';

/** Windows of tier `$res` for wanted series, in the order of `SELECT_SAMPLES`. */
const SELECT_ROLLUPS = `
  WITH wanted AS (SELECT unnest($ids) AS series_id, generate_subscripts($ids, 1)::INTEGER AS idx)
  SELECT w.idx, r.window_start::DOUBLE, r.min, r.max, r.sum, r.count::DOUBLE, r.last, r.last_ms::DOUBLE, r.sketch
  FROM rollups r JOIN wanted w ON r.series_id = w.series_id
  WHERE r.tenant = $tenant AND r.resolution_ms = $res AND r.window_start BETWEEN $start AND $end
  ORDER BY w.idx, r.window_start`;

/**
 * Rows of the tenant whose column `col` falls in one of the windows `$windows` of width
 * `$res`. The BETWEEN bound lets DuckDB skip row groups by their min/max before the exact
 * membership test (floor division written out, as `%` keeps the dividend's sign).
 */
/** Sealed windows of tier `$res` for wanted series overlapping the range, by position. */
const SELECT_ROLLUP_CHUNKS = `
  WITH wanted AS (SELECT unnest($ids) AS series_id, generate_subscripts($ids, 1)::INTEGER AS idx)
  SELECT w.idx, r.data
  FROM rollup_chunks r JOIN wanted w ON r.series_id = w.series_id
  WHERE r.tenant = $tenant AND r.resolution_ms = $res AND r.end_ms >= $start AND r.start_ms <= $end
  ORDER BY w.idx, r.start_ms`;

/**
 * Windows per sealed rollup chunk: 2 hours of 5-minute windows, a day of hourly ones
 * (sealed over 2 hours first, see `sealRollupsNow`). Fewer windows per chunk pay the row
 * and the encoding's column headers more often.
 */
const ROLLUP_SPAN_WINDOWS = 24;

const SPAN_TYPES = { tenant: VARCHAR, res: BIGINT, lo: BIGINT, hi: BIGINT };

/** Most (tenant, span) pairs one compaction run seals or merges per tier. */
const SEAL_SPANS_PER_RUN = 64;

/**
 * The span a tier's windows are first sealed over: about 2 hours (as samples), whole
 * windows, and a divisor of the tier's ROLLUP_SPAN_WINDOWS span so short chunks merge into
 * exactly one long one.
 */
function shortSpan(res: number): number {
  const fit = Math.max(1, Math.floor(CHUNK_SPAN_MS / res));
  const k = [24, 12, 8, 6, 4, 3, 2, 1].find((d) => d <= fit)!;
  return res * k;
}

const IN_WINDOWS = (col: string) =>
  `tenant = $tenant AND ${col} BETWEEN $lo AND $hi AND
   (${col} - ((${col} % $res) + $res) % $res) IN (SELECT unnest($windows))`;

const WINDOW_TYPES = { tenant: VARCHAR, res: BIGINT, lo: BIGINT, hi: BIGINT, windows: LIST(BIGINT) };

/**
 * Finest-tier windows recomputed per query (4 hours at 5 minutes), bounding the samples held
 * in memory at once, e.g. when the first compaction after an upgrade rolls up 15 days.
 */
const COMPACTION_CHUNK = 48;

function windowParams(tenant: string, starts: readonly number[], res: number) {
  return {
    tenant,
    res: BigInt(res),
    lo: BigInt(Math.min(...starts)),
    hi: BigInt(Math.max(...starts) + res - 1),
    windows: listValue(starts.map(BigInt)),
  };
}

/**
 * A rollup row (columns `ROLLUP_COLUMNS` starting at `at`) as a window. The sketch is
 * decoded on first use: most queries read only the numeric aggregates, and decoding a
 * sketch per window dominated reading a month of hourly windows.
 */
function rowToWindow(row: readonly DuckDBValue[], at: number): RollupWindow {
  const bytes = (row[at + 7] as DuckDBBlobValue).bytes;
  let sketch: QuantileSketch | undefined;
  return {
    startMs: row[at] as number,
    min: row[at + 1] as number,
    max: row[at + 2] as number,
    sum: row[at + 3] as number,
    count: row[at + 4] as number,
    last: row[at + 5] as number,
    lastMs: row[at + 6] as number,
    get sketch() {
      sketch ??= QuantileSketch.decode(bytes);
      return sketch;
    },
  };
}

/**
 * Runs `fn` in a transaction on `c`: committed if it resolves, rolled back if it throws,
 * so a pooled or writer connection is never left inside a transaction.
 */
async function inTransaction<T>(c: DuckDBConnection, fn: () => Promise<T>): Promise<T> {
  await c.run('BEGIN TRANSACTION');
  try {
    const out = await fn();
    await c.run('COMMIT');
    return out;
  } catch (err) {
    await c.run('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Deletes the rows of `chunks` or `rollup_chunks` matching `where`; returns how many
 * samples or windows they held (their `n`), which is what retention reports.
 */
async function deleteChunks(
  c: DuckDBConnection,
  table: 'chunks' | 'rollup_chunks',
  where: string,
  values: Record<string, DuckDBValue>,
  types: Record<string, DuckDBType>,
): Promise<number> {
  const held = await c.runAndReadAll(`SELECT coalesce(sum(n), 0)::DOUBLE FROM ${table} WHERE ${where}`, values, types);
  await c.run(`DELETE FROM ${table} WHERE ${where}`, values, types);
  return held.getColumns()[0][0] as number;
}

/** One `rollup_chunks` row holding `windows` (one series', oldest first). */
function appendWindowChunk(appender: DuckDBAppender, tenant: string, res: number, id: bigint, windows: readonly RollupWindow[]): void {
  appender.appendVarchar(tenant);
  appender.appendBigInt(BigInt(res));
  appender.appendUBigInt(id);
  appender.appendBigInt(BigInt(windows[0].startMs));
  appender.appendBigInt(BigInt(windows[windows.length - 1].startMs));
  appender.appendInteger(windows.length);
  appender.appendBlob(encodeWindows(windows, res));
  appender.endRow();
}

function appendRollup(appender: DuckDBAppender, tenant: string, res: number, id: bigint, w: RollupWindow): void {
  appender.appendVarchar(tenant);
  appender.appendBigInt(BigInt(res));
  appender.appendUBigInt(id);
  appender.appendBigInt(BigInt(w.startMs));
  appender.appendDouble(w.min);
  appender.appendDouble(w.max);
  appender.appendDouble(w.sum);
  appender.appendBigInt(BigInt(w.count));
  appender.appendDouble(w.last);
  appender.appendBigInt(BigInt(w.lastMs));
  appender.appendBlob(w.sketch.encode());
  appender.endRow();
}

/** Idle read connections kept for reuse; more may exist while reads overlap. */
const MAX_IDLE_READERS = 4;

/** Options of `openDuckDbStore`. */
export interface DuckDbStoreOptions {
  /** Database file; parent directories are created. `:memory:` for a throwaway store. */
  readonly path: string;
  /** Receives open/close and failure logs; the store never writes to the console. */
  readonly logger: Logger;
  /**
   * Most (tenant, series) pairs remembered as already stored, so steady-state writes skip
   * hashing and the series-table lookup. Each entry holds the encoded label set (roughly
   * 150–200 bytes in all), so the default of 250,000 bounds the cache near 50 MB. Past it
   * the cache is forgotten and rebuilt, costing one lookup per series.
   */
  readonly seriesCacheSize?: number;
  /** Raw retention and rollup tiers; {@link DEFAULT_RETENTION} when absent. */
  readonly retention?: RetentionPolicy;
  /**
   * How often the compactor recomputes the rollup windows that writes touched, ms; 0
   * disables the timer (tests call `compact()` directly). Default 60 s: rollups lag raw
   * data by at most this much.
   */
  readonly compactionIntervalMs?: number;
  /** How often expired data is deleted, ms; 0 disables the timer. Default 1 h. */
  readonly retentionIntervalMs?: number;
  /** Clock for retention and batch bookkeeping; injectable so tests can move time. */
  readonly now?: () => number;
  /**
   * Raw samples older than this (ms) are sealed into compressed per-series chunks by the
   * compactor; 0 never seals. Default 2 h: recent data stays in plain rows, where writes
   * append cheaply and late samples land.
   */
  readonly sealAfterMs?: number;
  /**
   * Most samples the in-memory head holds (see head.ts): queries whose range it covers
   * in full read no sample rows. About 16 bytes per sample, up to twice that while
   * arrays grow. Default 4,000,000 (64 MB); 0 turns the head off.
   */
  readonly headSamples?: number;
  /** How far back the head covers at most, ms. Default 6 hours, Grafana's default range. */
  readonly headMaxAgeMs?: number;
}

/** Statements the write path runs on every batch, prepared once on the writer connection. */
interface WriteStatements {
  /** Row when the (tenant, batch id) is already stored. */
  readonly seen: DuckDBPreparedStatement;
  /** Records a stored batch id. */
  readonly record: DuckDBPreparedStatement;
  /** Marks finest-tier windows as touched, for the compactor. */
  readonly dirty: DuckDBPreparedStatement;
}

async function prepareWriteStatements(c: DuckDBConnection): Promise<WriteStatements> {
  return {
    seen: await c.prepare('SELECT 1 FROM batches WHERE tenant = $tenant AND batch_id = $batch'),
    record: await c.prepare('INSERT INTO batches VALUES ($tenant, $batch, $count, $at)'),
    dirty: await c.prepare('INSERT INTO rollup_dirty SELECT $tenant, $res, unnest($windows)'),
  };
}

interface Candidate {
  readonly id: bigint;
  readonly labels: Label[];
}

/** A label set resolved to its stored series, for `writeColumns`. */
interface ResolvedSeries {
  readonly id: bigint;
  /** The id's low and high 32 bits, written into the appended vector without a BigInt per row. */
  readonly lo: number;
  readonly hi: number;
  readonly key: string;
  readonly metric: string;
  /** `seriesEpoch` when the series was last known to be in the series table; -1 if never. */
  storedEpoch: number;
  /** Last batch that listed it as possibly missing (dedupes within a batch). */
  mark: number;
  /** Its entry in the head, once written there. */
  head?: HeadSeries;
}

/** A checked columnar batch with each row's series resolved. */
interface ResolvedColumns {
  readonly rowCount: number;
  readonly rows: readonly ResolvedSeries[];
  readonly timestampsMs: Float64Array;
  readonly values: Float64Array;
  readonly minTs: number;
  readonly maxTs: number;
}

class DuckDbMetricStore implements RollupStore {
  private writeTail: Promise<unknown> = Promise.resolve();
  private readonly reads = new Set<Promise<unknown>>();
  private readonly idleReaders: DuckDBConnection[] = [];
  /** Per tenant: encoded label set → id, for series known to be in the series table. */
  private readonly knownSeries = new Map<string, Map<string, bigint>>();
  private knownSeriesCount = 0;
  /**
   * Per tenant: frozen label set (by object) → its resolved series, so a consumer that
   * interns label sets pays one Map lookup per row. Bounded by `seriesCacheSize` too.
   */
  private readonly resolvedSeries = new Map<string, Map<Labels, ResolvedSeries>>();
  private resolvedCount = 0;
  /** Bumped when retention deletes series: every `storedEpoch` before it is stale. */
  private seriesEpoch = 0;
  private columnBatches = 0;
  private closing = false;
  private closed: Promise<void> | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  /**
   * No sealed chunk holds a sample after this time (an upper bound: raised before a seal
   * commits, never lowered), so reads of newer ranges skip the chunk query.
   */
  private sealedUntil = Infinity;
  /** Sample reads answered by the head alone, and those that read rows and chunks. */
  private headReads = 0;
  private storedReads = 0;
  /** Per tier, the cut up to which no sealed rollup chunks are left to merge (see `sealRollupsNow`). */
  private readonly mergedUpTo = new Map<number, number>();

  constructor(
    private readonly instance: DuckDBInstance,
    private readonly writer: DuckDBConnection,
    private readonly statements: WriteStatements,
    private readonly log: Logger,
    private readonly seriesCacheSize: number,
    readonly retention: RetentionPolicy,
    private readonly now: () => number,
    private readonly sealAfterMs: number,
    private chunkSeq: number,
    private readonly head: Head,
  ) {}

  /** Starts the periodic compactor and retention jobs; their failures are logged, not thrown. */
  startJobs(compactionIntervalMs: number, retentionIntervalMs: number): void {
    this.timers.push(...startRollupJobs(this, this.log, compactionIntervalMs, retentionIntervalMs));
  }

  pickTier(stepMs: number, rangeMs: number): number {
    return pickTier(this.retention, stepMs, rangeMs);
  }

  /** Raises the bound on sealed samples (see `sealedUntil`); `-Infinity` when none are sealed. */
  noteSealed(untilMs: number): void {
    this.sealedUntil = this.sealedUntil === Infinity ? untilMs : Math.max(this.sealedUntil, untilMs);
  }

  compact(): Promise<CompactionResult> {
    return this.enqueue(async () => {
      // Rollups first: they read the samples of ended windows while still plain rows.
      const result = await this.compactNow();
      await this.sealNow();
      await this.sealRollupsNow();
      this.head.age();
      return result;
    });
  }

  applyRetention(): Promise<RetentionResult> {
    return this.enqueue(() => this.retainNow());
  }

  async selectRollup(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
    resolutionMs: number,
    limits?: SelectLimits,
  ): Promise<RollupSeries[]> {
    const tracker = new LimitTracker(limits);
    const q = this.query(tenant, matchers, startMs, endMs);
    checkTier(this.retention, resolutionMs);
    return this.read(async (c) => {
      if (q.range === undefined) return [];
      const candidates = await this.candidates(c, tenant, q.matchers, q.metric);
      if (candidates.length === 0) return [];
      candidates.sort((a, b) => compareLabels(a.labels, b.labels));
      const params = { ...rangeParams(tenant, candidates, q.range), res: BigInt(resolutionMs) };
      const types = { ...RANGE_TYPES, res: BIGINT };
      // Sealed windows (older) and rows (newer, or put back by a recomputation), per series.
      const byIdx = new Map<number, RollupWindow[]>();
      const sealed = await c.runAndReadAll(SELECT_ROLLUP_CHUNKS, params, types);
      const { startMs: start, endMs: end } = q.range;
      for (const [idx, blob] of sealed.getRows() as [number, DuckDBBlobValue][]) {
        let windows = byIdx.get(idx);
        if (windows === undefined) byIdx.set(idx, (windows = []));
        for (const w of decodeWindows(blob.bytes)) if (w.startMs >= start && w.startMs <= end) windows.push(w);
      }
      const rows = await c.runAndReadAll(SELECT_ROLLUPS, params, types);
      const mixed = new Set<number>();
      for (const row of rows.getRows()) {
        const idx = row[0] as number;
        let windows = byIdx.get(idx);
        if (windows === undefined) byIdx.set(idx, (windows = []));
        else if (windows.length > 0) mixed.add(idx);
        windows.push(rowToWindow(row, 1));
      }
      const out: RollupSeries[] = [];
      for (const idx of [...byIdx.keys()].sort((a, b) => a - b)) {
        const windows = byIdx.get(idx)!;
        if (windows.length === 0) continue;
        if (mixed.has(idx)) windows.sort((a, b) => a.startMs - b.startMs);
        tracker.addSeries();
        tracker.addSamples(windows.length);
        out.push({ labels: candidates[idx - 1].labels, windows });
      }
      return out;
    });
  }

  async rollupsCompleteBefore(tenant: string): Promise<number> {
    if (this.closing) throw new StoreClosedError();
    checkTenant(tenant);
    // Dirty marks are written in the same transaction as their samples, so the oldest
    // mark bounds what the compactor has not yet seen.
    return this.read(async (c) => {
      const reader = await c.runAndReadAll('SELECT min(window_start)::DOUBLE FROM rollup_dirty WHERE tenant = $tenant', { tenant });
      const oldest = reader.getColumns()[0]?.[0] as number | null | undefined;
      return oldest === null || oldest === undefined ? Infinity : oldest;
    });
  }

  write(tenant: string, batchId: string, series: readonly SeriesSamples[]): Promise<WriteResult> {
    if (this.closing) return Promise.reject(new StoreClosedError());
    let batch: PreparedBatch;
    try {
      batch = prepareBatch(tenant, batchId, series);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(() => this.writeNow(tenant, batchId, batch));
  }

  writeColumns(tenant: string, batchId: string, columns: SampleColumns): Promise<WriteResult> {
    if (this.closing) return Promise.reject(new StoreClosedError());
    let batch: ResolvedColumns;
    try {
      batch = this.resolveColumns(tenant, batchId, columns);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(() => this.writeColumnsNow(tenant, batchId, batch));
  }

  /** Checks a columnar batch and resolves each row's label set (cached per frozen set). */
  private resolveColumns(tenant: string, batchId: string, columns: SampleColumns): ResolvedColumns {
    const { minTs, maxTs } = checkColumns(tenant, batchId, columns);
    let cache = this.resolvedSeries.get(tenant);
    const n = columns.rowCount;
    const rows: ResolvedSeries[] = new Array(n);
    let prevLabels: Labels | undefined;
    let prev: ResolvedSeries | undefined;
    for (let i = 0; i < n; i++) {
      const labels = columns.labels[i]!;
      if (labels === prevLabels) {
        rows[i] = prev!;
        continue;
      }
      let r = cache?.get(labels);
      if (r === undefined) {
        const ident = identityOf(labels, `columns.labels[${i}]`);
        const id = this.knownSeries.get(tenant)?.get(ident.key) ?? seriesId(ident.labels);
        r = { id, lo: Number(id & 0xffffffffn), hi: Number(id >> 32n), key: ident.key, metric: ident.metric, storedEpoch: -1, mark: -1, head: undefined };
        // Only frozen sets are remembered by object: an unfrozen one could change under us.
        if (Object.isFrozen(labels)) {
          if (this.resolvedCount >= this.seriesCacheSize) {
            this.resolvedSeries.clear();
            this.resolvedCount = 0;
          }
          if (cache === undefined || !this.resolvedSeries.has(tenant)) {
            cache = new Map();
            this.resolvedSeries.set(tenant, cache);
          }
          cache.set(labels, r);
          this.resolvedCount++;
        }
      }
      rows[i] = r;
      prevLabels = labels;
      prev = r;
    }
    return { rowCount: n, rows, timestampsMs: columns.timestampsMs, values: columns.values, minTs, maxTs };
  }

  /** `writeNow` for a resolved columnar batch: the same ledger, series rows and dirty marks. */
  private writeColumnsNow(tenant: string, batchId: string, batch: ResolvedColumns): Promise<WriteResult> {
    return this.inWriteTransaction(tenant, batchId, async (c) => {
      // Series not known to be stored, each once; checked here, in the queue, so a
      // retention run between resolving and writing is seen.
      const mark = ++this.columnBatches;
      const epoch = this.seriesEpoch;
      const known = this.knownSeries.get(tenant);
      const unsure: ResolvedSeries[] = [];
      for (let i = 0; i < batch.rowCount; i++) {
        const r = batch.rows[i]!;
        if (r.storedEpoch === epoch || r.mark === mark) continue;
        r.mark = mark;
        if (known?.get(r.key) === r.id) r.storedEpoch = epoch;
        else unsure.push(r);
      }
      if (unsure.length > 0) {
        const existing = await c.runAndReadAll(
          'SELECT series_id FROM series WHERE tenant = $tenant AND series_id IN (SELECT unnest($ids))',
          { tenant, ids: listValue(unsure.map((r) => r.id)) },
          { ids: LIST(UBIGINT) },
        );
        const stored = new Set(existing.getRows().map(([id]) => id as bigint));
        const fresh = unsure.filter((r) => !stored.has(r.id));
        if (fresh.length > 0) {
          const appender = await c.createAppender('series');
          appendAll(appender, () => {
            for (const r of fresh) {
              appender.appendVarchar(tenant);
              appender.appendUBigInt(r.id);
              appender.appendVarchar(r.metric);
              appender.appendVarchar(r.key);
              appender.endRow();
            }
          });
        }
      }
      if (batch.rowCount > 0) {
        const samples = await c.createAppender('samples');
        appendAll(samples, () => appendColumns(samples, tenant, batch));
      }
      await this.markDirtyRange(tenant, batch.rowCount, batch.minTs, batch.maxTs, () => batch.timestampsMs.subarray(0, batch.rowCount));
      return {
        count: batch.rowCount,
        committed: () => {
          for (const r of unsure) r.storedEpoch = epoch;
          this.rememberSeries(tenant, unsure.map((r) => [r.key, r.id]));
          this.head.defer(tenant, batch.rows, batch.timestampsMs, batch.values, batch.rowCount, batch.maxTs);
        },
      };
    });
  }

  /** Mirrors a committed batch of series into the head, as columns. */
  private mirrorSeries(tenant: string, batch: PreparedBatch, ids: readonly bigint[]): void {
    if (!this.head.enabled) return;
    const n = batch.sampleCount;
    const rows: HeadRef[] = new Array(n);
    const ts = new Float64Array(n);
    const vs = new Float64Array(n);
    let k = 0;
    batch.series.forEach((s, i) => {
      const ref: HeadRef = { id: ids[i]! };
      for (let j = 0; j < s.timestampsMs.length; j++, k++) {
        rows[k] = ref;
        ts[k] = s.timestampsMs[j]!;
        vs[k] = s.values[j]!;
      }
    });
    this.head.defer(tenant, rows, ts, vs, k, batch.maxTs);
  }

  /** Runs `job` on the writer connection after every earlier write or job. */
  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new StoreClosedError());
    const run = this.writeTail.then(job);
    // The queue must survive a failed job; the caller still sees the failure via `run`.
    this.writeTail = run.catch(() => undefined);
    return run;
  }

  async select(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
    limits?: SelectLimits,
  ): Promise<SeriesSamples[]> {
    return fromColumns(await this.selectColumns(tenant, matchers, startMs, endMs, limits));
  }

  async selectColumns(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
    limits?: SelectLimits,
  ): Promise<SeriesColumns[]> {
    const tracker = new LimitTracker(limits);
    const q = this.query(tenant, matchers, startMs, endMs);
    return this.read(async (c) => {
      if (q.range === undefined) return [];
      const candidates = await this.candidates(c, tenant, q.matchers, q.metric);
      if (candidates.length === 0) return [];
      candidates.sort((a, b) => compareLabels(a.labels, b.labels));
      const range = q.range;
      this.head.noteQuery();
      if (this.head.covers(range.startMs)) {
        this.headReads++;
        return this.readHead(tenant, candidates, range, tracker);
      }
      this.storedReads++;
      const params = rangeParams(tenant, candidates, range);
      // Both reads in one snapshot: a seal committing between them would otherwise move
      // samples from rows to chunks unseen by either.
      return inTransaction(c, () => this.readSamples(c, tenant, candidates, range, params, tracker, limits?.maxSamples ?? Infinity));
    });
  }

  /** `selectColumns` for a range the head covers: no sample rows are read. */
  private readHead(tenant: string, candidates: readonly Candidate[], range: TimeRange, tracker: LimitTracker): SeriesColumns[] {
    const out: SeriesColumns[] = [];
    for (const cand of candidates) {
      const run = this.head.read(tenant, cand.id, range.startMs, range.endMs);
      if (run === undefined) continue;
      tracker.addSeries();
      tracker.addSamples(run.ts.length);
      out.push({ labels: cand.labels, timestampsMs: run.ts, values: run.vs });
    }
    return out;
  }

  /** The body of `selectColumns`, inside its read transaction. */
  private async readSamples(
    c: DuckDBConnection,
    tenant: string,
    candidates: readonly Candidate[],
    range: TimeRange,
    params: ReturnType<typeof rangeParams>,
    tracker: LimitTracker,
    maxSamples: number,
  ): Promise<SeriesColumns[]> {
    // Sealed chunks are compact, so all of the answer's are fetched first.
    const sealed = new Map<number, Uint8Array[]>();
    if (range.startMs <= this.sealedUntil) {
      for (const row of (await c.runAndReadAll(SELECT_CHUNKS, params, RANGE_TYPES)).getRows()) {
        const idx = row[0] as number;
        let list = sealed.get(idx);
        if (list === undefined) sealed.set(idx, (list = []));
        list.push((row[3] as DuckDBBlobValue).bytes);
      }
    }
    const shared = await idsShared(c, params);
    // Materialized rather than streamed: DuckDB then runs the scan on all its threads
    // instead of producing one chunk per fetch (measured: about 15 ms against 25 ms for
    // 290k rows). LIMIT bounds what it holds when the answer is over the sample limit.
    const result = await c.run(shared ? SELECT_SAMPLES_LIMITED : SELECT_SAMPLES_OWN_IDS, { ...params, limit: BigInt(Math.min(maxSamples, Number.MAX_SAFE_INTEGER - 1) + 1) }, { ...RANGE_TYPES, limit: BIGINT });
    // Rows come unordered (see SELECT_SAMPLES). A first pass counts them per series, a
    // second places each series' rows in its own slice of one buffer for the whole
    // answer: one allocation, where growing two arrays per series left the collector
    // about a sixth of the query's time.
    const counts = new Int32Array(candidates.length + 2);
    const chunks: DuckDBDataChunk[] = [];
    let rowCount = 0;
    for (let ci = 0; ci < result.chunkCount; ci++) {
      const chunk = result.getChunk(ci);
      // rowCount is a native call: read it once per chunk, not per row.
      const n = chunk.rowCount;
      const idxs = numbers(column(chunk, 0, DuckDBIntegerVector), n);
      for (let r = 0; r < n; r++) counts[idxs[r]]++;
      chunks.push(chunk);
      rowCount += n;
      // Stop reading an answer that is over the sample limit anyway; the accounting
      // below, in label order, then reports it.
      if (rowCount > maxSamples) break;
    }
    const starts = new Int32Array(candidates.length + 2);
    for (let idx = 1; idx <= candidates.length; idx++) starts[idx + 1] = starts[idx] + counts[idx];
    const fill = starts.slice();
    const times = new Float64Array(rowCount);
    const values = new Float64Array(rowCount);
    // Per series: DISORDERED when its rows did not arrive in time order (parallel scans
    // may interleave row groups), TIED when two share a timestamp, whose write order only
    // the ordered query can tell.
    const flags = new Uint8Array(candidates.length + 2);
    const tied: number[] = [];
    for (const chunk of chunks) {
      const n = chunk.rowCount;
      const idxs = numbers(column(chunk, 0, DuckDBIntegerVector), n);
      const ts = numbers(column(chunk, 1, DuckDBDoubleVector), n);
      const vs = numbers(column(chunk, 2, DuckDBDoubleVector), n);
      for (let r = 0; r < n; r++) {
        const idx = idxs[r];
        const t = ts[r];
        const p = fill[idx];
        if (p > starts[idx]) {
          const lt = times[p - 1];
          if (!(t > lt)) {
            if (t === lt) {
              if ((flags[idx] & TIED) === 0) tied.push(idx);
              flags[idx] |= TIED;
            } else {
              flags[idx] |= DISORDERED;
            }
          }
        }
        times[p] = t;
        values[p] = vs[r];
        fill[idx] = p + 1;
      }
    }
    const ordered = tied.length > 0 && rowCount <= maxSamples ? await this.readOrdered(c, tenant, candidates, tied, range) : undefined;
    // Series are counted before their samples and in label order, as the in-memory fake
    // does, so both report the same limit when a query crosses two.
    const out: SeriesColumns[] = [];
    for (let idx = 1; idx <= candidates.length; idx++) {
      const n = counts[idx];
      const blobs = sealed.get(idx);
      if (n === 0 && blobs === undefined) continue;
      const sealedRun = blobs === undefined ? undefined : decodeRange(blobs, range);
      if (n === 0 && (sealedRun === undefined || sealedRun.ts.length === 0)) continue;
      tracker.addSeries();
      let ts: Float64Array;
      let vs: Float64Array;
      const reread = ordered?.get(idx);
      if (reread !== undefined) {
        ts = reread.ts;
        vs = reread.vs;
      } else {
        ts = times.subarray(starts[idx], starts[idx] + n);
        vs = values.subarray(starts[idx], starts[idx] + n);
        if ((flags[idx] & DISORDERED) !== 0) sortByTime(ts, vs);
      }
      if (sealedRun !== undefined && sealedRun.ts.length > 0) {
        // Rows come after sealed samples (written earlier); re-sort only if both exist.
        for (let i = 0; i < ts.length; i++) {
          sealedRun.ts.push(ts[i]);
          sealedRun.vs.push(vs[i]);
        }
        if (ts.length > 0) sealedRun.unsorted = true;
        finishRun(sealedRun);
        ts = Float64Array.from(sealedRun.ts);
        vs = Float64Array.from(sealedRun.vs);
      }
      tracker.addSamples(ts.length);
      out.push({ labels: candidates[idx - 1].labels, timestampsMs: ts, values: vs });
    }
    if (rowCount > maxSamples) tracker.addSamples(rowCount);
    return out;
  }

  /** Re-reads the rows of series `idxs` (positions in `candidates`) in (time, write order). */
  private async readOrdered(
    c: DuckDBConnection,
    tenant: string,
    candidates: readonly Candidate[],
    idxs: readonly number[],
    range: TimeRange,
  ): Promise<Map<number, { ts: Float64Array; vs: Float64Array }>> {
    const sorted = [...idxs].sort((a, b) => a - b);
    const reader = await c.runAndReadAll(
      SELECT_SAMPLES_ORDERED,
      rangeParams(tenant, sorted.map((i) => candidates[i - 1]), range),
      RANGE_TYPES,
    );
    const runs = new Map<number, { ts: number[]; vs: number[] }>();
    for (const idx of sorted) runs.set(idx, { ts: [], vs: [] });
    if (reader.currentRowCount > 0) {
      const [pos, times, values] = reader.getColumns() as [number[], number[], number[]];
      for (let i = 0; i < pos.length; i++) {
        const run = runs.get(sorted[pos[i] - 1]) as { ts: number[]; vs: number[] };
        run.ts.push(times[i]);
        run.vs.push(values[i]);
      }
    }
    const out = new Map<number, { ts: Float64Array; vs: Float64Array }>();
    for (const [idx, run] of runs) out.set(idx, { ts: Float64Array.from(run.ts), vs: Float64Array.from(run.vs) });
    return out;
  }

  async series(tenant: string, matchers: readonly Matcher[], startMs: number, endMs: number, limits?: SelectLimits): Promise<Label[][]> {
    const tracker = new LimitTracker(limits);
    const q = this.query(tenant, matchers, startMs, endMs);
    return this.read(async (c) => {
      const found = await this.seriesInRange(c, tenant, q);
      found.sort((a, b) => compareLabels(a.labels, b.labels));
      return found.map((s) => {
        tracker.addSeries();
        return s.labels;
      });
    });
  }

  async labelNames(tenant: string, matchers: readonly Matcher[], startMs: number, endMs: number): Promise<string[]> {
    const q = this.query(tenant, matchers, startMs, endMs);
    return this.read(async (c) => sortedLabelNames(await this.seriesInRange(c, tenant, q)));
  }

  async labelValues(
    tenant: string,
    name: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
  ): Promise<string[]> {
    if (typeof name !== 'string') throw new StoreInputError('name', 'must be a string');
    const q = this.query(tenant, matchers, startMs, endMs);
    // Series without the label cannot contribute a value: drop them before the range scan.
    return this.read(async (c) => sortedLabelValues(await this.seriesInRange(c, tenant, q, (labels) => labelValue(labels, name) !== ''), name));
  }

  stats(): StoreStats {
    return { headSamples: this.head.samples, headCoverageMs: this.head.coverageMs, headReads: this.headReads, storedReads: this.storedReads };
  }

  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  /** Validates the common query arguments before any I/O, so bad input never queues. */
  private query(tenant: string, matchers: readonly Matcher[], startMs: number, endMs: number) {
    if (this.closing) throw new StoreClosedError();
    checkTenant(tenant);
    return {
      matchers: compileMatchers(matchers),
      metric: metricNameEquality(matchers),
      range: normalizeRange(startMs, endMs),
    };
  }

  private writeNow(tenant: string, batchId: string, batch: PreparedBatch): Promise<WriteResult> {
    return this.inWriteTransaction(tenant, batchId, async (c) => {
      const { ids, unsure, fresh } = await this.resolveSeries(c, tenant, batch);
      if (fresh.length > 0) {
        const appender = await c.createAppender('series');
        appendAll(appender, () => {
          for (const i of fresh) {
            appender.appendVarchar(tenant);
            appender.appendUBigInt(ids[i]);
            appender.appendVarchar(batch.series[i].metric);
            appender.appendVarchar(batch.series[i].key);
            appender.endRow();
          }
        });
      }
      const samples = await c.createAppender('samples');
      appendAll(samples, () => appendSamples(samples, tenant, batch, ids));
      await this.markDirty(tenant, batch);
      return {
        count: batch.sampleCount,
        committed: () => {
          this.rememberSeries(tenant, unsure.map((i) => [batch.series[i].key, ids[i]]));
          this.mirrorSeries(tenant, batch, ids);
        },
      };
    });
  }

  /**
   * One batch's write transaction on the writer connection: skips a batch the ledger has
   * seen, runs `write`, records the batch in the ledger and commits, then calls
   * `committed` (only after COMMIT: a rolled-back series row must not be remembered as
   * stored). Rolls back and rethrows on any failure.
   */
  private async inWriteTransaction(
    tenant: string,
    batchId: string,
    write: (c: DuckDBConnection) => Promise<{ count: number; committed: () => void }>,
  ): Promise<WriteResult> {
    const c = this.writer;
    await c.run('BEGIN TRANSACTION');
    try {
      this.statements.seen.bind({ tenant, batch: batchId });
      if ((await this.statements.seen.runAndReadAll()).currentRowCount > 0) {
        await c.run('ROLLBACK');
        this.log.debug({ tenant, batchId }, 'duplicate batch skipped');
        return { samplesWritten: 0, duplicate: true };
      }
      const { count, committed } = await write(c);
      this.statements.record.bind({ tenant, batch: batchId, count: BigInt(count), at: BigInt(this.now()) });
      await this.statements.record.run();
      await c.run('COMMIT');
      committed();
      return { samplesWritten: count, duplicate: false };
    } catch (err) {
      try {
        await c.run('ROLLBACK');
      } catch (rollbackErr) {
        // A failed COMMIT already ends the transaction; anything else is worth a look.
        this.log.debug({ err: rollbackErr }, 'rollback after failed write');
      }
      this.log.warn({ err, tenant, batchId }, 'batch write failed');
      throw err;
    }
  }

  /**
   * Series ids of a batch (aligned with `batch.series`), which series were not in the
   * cache (`unsure`) and which of those are missing from the series table (`fresh`). Runs
   * inside the write transaction. Cached series skip both hashing and the table lookup,
   * which is most series of most batches.
   */
  private async resolveSeries(
    c: DuckDBConnection,
    tenant: string,
    batch: PreparedBatch,
  ): Promise<{ ids: bigint[]; unsure: number[]; fresh: number[] }> {
    const known = this.knownSeries.get(tenant);
    const ids: bigint[] = [];
    const unsure: number[] = [];
    batch.series.forEach((s, i) => {
      const cached = known?.get(s.key);
      if (cached === undefined) unsure.push(i);
      ids.push(cached ?? seriesId(s.labels));
    });
    if (unsure.length === 0) return { ids, unsure, fresh: [] };
    const existing = await c.runAndReadAll(
      'SELECT series_id FROM series WHERE tenant = $tenant AND series_id IN (SELECT unnest($ids))',
      { tenant, ids: listValue(unsure.map((i) => ids[i])) },
      { ids: LIST(UBIGINT) },
    );
    const stored = new Set(existing.getRows().map(([id]) => id as bigint));
    return { ids, unsure, fresh: unsure.filter((i) => !stored.has(ids[i])) };
  }

  private rememberSeries(tenant: string, entries: readonly (readonly [string, bigint])[]): void {
    if (entries.length === 0) return;
    if (this.knownSeriesCount + entries.length > this.seriesCacheSize) {
      // Forgetting everything is crude but bounded; the cost is one lookup per series later.
      this.knownSeries.clear();
      this.knownSeriesCount = 0;
    }
    let known = this.knownSeries.get(tenant);
    if (known === undefined) {
      known = new Map();
      this.knownSeries.set(tenant, known);
    }
    for (const [key, id] of entries) {
      if (!known.has(key)) {
        known.set(key, id);
        this.knownSeriesCount++;
      }
    }
  }

  /**
   * The tenant's series accepted by every matcher. `=` on `__name__` is applied in SQL (it
   * is nearly always present and most selective); the rest run in JS through
   * `compileMatcher`, which keeps regex semantics identical to every other component.
   */
  private async candidates(
    c: DuckDBConnection,
    tenant: string,
    matchers: readonly CompiledMatcher[],
    metric: string | undefined,
    extra?: (labels: Label[]) => boolean,
  ): Promise<Candidate[]> {
    const reader =
      metric === undefined
        ? await c.runAndReadAll('SELECT series_id, labels FROM series WHERE tenant = $tenant', { tenant })
        : await c.runAndReadAll('SELECT series_id, labels FROM series WHERE tenant = $tenant AND metric = $metric', {
            tenant,
            metric,
          });
    const out: Candidate[] = [];
    // An empty result has no chunks, and so no columns either.
    if (reader.currentRowCount === 0) return out;
    const [ids, texts] = reader.getColumns();
    for (let i = 0; i < ids.length; i++) {
      const labels = decodeLabels(texts[i] as string);
      if (matchesAll(labels, matchers) && (extra === undefined || extra(labels))) {
        out.push({ id: ids[i] as bigint, labels });
      }
    }
    return out;
  }

  /** Matching series that have at least one sample in the query's range. */
  private async seriesInRange(
    c: DuckDBConnection,
    tenant: string,
    q: { matchers: CompiledMatcher[]; metric: string | undefined; range: TimeRange | undefined },
    extra?: (labels: Label[]) => boolean,
  ): Promise<Candidate[]> {
    if (q.range === undefined) return [];
    const candidates = await this.candidates(c, tenant, q.matchers, q.metric, extra);
    if (candidates.length === 0) return [];
    const range = q.range;
    const params = rangeParams(tenant, candidates, range);
    const present = new Set<number>();
    const reader = await c.runAndReadAll(SERIES_WITH_SAMPLES(!(await idsShared(c, params))), params, RANGE_TYPES);
    if (reader.currentRowCount > 0) for (const idx of reader.getColumns()[0]) present.add(idx as number);
    // As in `readSamples`: no sealed chunk can hold a sample after `sealedUntil`.
    const chunkRows = range.startMs <= this.sealedUntil ? (await c.runAndReadAll(SELECT_CHUNKS, params, RANGE_TYPES)).getRows() : [];
    for (const row of chunkRows) {
      const [idx, start, end] = row as [number, number, number];
      if (present.has(idx)) continue;
      // A chunk inside the range surely has a sample in it; one straddling an edge is read.
      if ((start >= range.startMs && end <= range.endMs) || decodeRange([(row[3] as DuckDBBlobValue).bytes], range).ts.length > 0) {
        present.add(idx);
      }
    }
    return [...present].sort((a, b) => a - b).map((idx) => candidates[idx - 1]);
  }

  /**
   * Records which finest-tier windows the batch touched, in the write transaction, so a
   * batch and its dirty marks commit together: the compactor can never miss a window.
   */
  private markDirty(tenant: string, batch: PreparedBatch): Promise<void> {
    return this.markDirtyRange(tenant, batch.sampleCount, batch.minTs, batch.maxTs, function* () {
      for (const s of batch.series) yield* s.timestampsMs;
    });
  }

  /** `markDirty` given a batch's sample count, bounds and (walked only when needed) timestamps. */
  private async markDirtyRange(tenant: string, sampleCount: number, minTs: number, maxTs: number, timestamps: () => Iterable<number>): Promise<void> {
    const finest = this.retention.tiers[0];
    if (finest === undefined) return;
    const windows = new Set<number>();
    if (sampleCount > 0) {
      // Agents send recent samples: the whole batch usually lies in one window or two
      // adjacent ones, which its bounds name without walking every timestamp.
      const first = windowStart(minTs, finest.resolutionMs);
      const last = windowStart(maxTs, finest.resolutionMs);
      if (last - first <= finest.resolutionMs) {
        windows.add(first);
        windows.add(last);
      } else {
        for (const t of timestamps()) windows.add(windowStart(t, finest.resolutionMs));
      }
    }
    this.statements.dirty.bind(
      { tenant, res: BigInt(finest.resolutionMs), windows: listValue([...windows].map(BigInt)) },
      { tenant: VARCHAR, res: BIGINT, windows: LIST(BIGINT) },
    );
    await this.statements.dirty.run();
  }

  /**
   * Recomputes every ended window marked dirty, in one transaction on the writer connection (so
   * no write interleaves). The first tier is computed from raw samples, each further tier
   * by merging the windows of the tier before it; a window's rows are deleted and written
   * anew, so recomputing is idempotent and a late sample simply makes its windows dirty
   * again. Rollups are a pure function of the raw samples, which are stored exactly once;
   * that is why redelivered batches cannot change them either.
   *
   * Why a periodic compactor rather than updating rollups on every write: the write path
   * stays an append (measured ingest rate matters most), and a window is computed once per
   * interval instead of once per batch that touches it.
   */
  private async compactNow(): Promise<CompactionResult> {
    const c = this.writer;
    const [finest, ...coarser] = this.retention.tiers;
    if (finest === undefined) {
      await c.run('DELETE FROM rollup_dirty');
      return { windows: 0, rows: 0 };
    }
    // Only windows that have ended: an open window would be recomputed on every run while
    // it fills (five times over for 5-minute windows and a 1-minute interval). Its marks
    // stay until it has ended; a sample arriving after that marks it again.
    const now = this.now();
    const marks = await c.runAndReadAll(
      `SELECT DISTINCT tenant, resolution_ms::DOUBLE, window_start::DOUBLE FROM rollup_dirty
       WHERE window_start + resolution_ms <= $now ORDER BY 1, 3`,
      { now: BigInt(now) },
    );
    // Raw samples older than this are gone, so their windows can no longer be recomputed.
    const oldest = windowStart(now - this.retention.rawRetentionMs, finest.resolutionMs);
    const byTenant = new Map<string, Set<number>>();
    for (const [tenant, res, start] of marks.getRows() as [string, number, number][]) {
      let set = byTenant.get(tenant);
      if (set === undefined) byTenant.set(tenant, (set = new Set()));
      // Marks left by an older configuration may use another resolution: cover their span.
      for (let w = windowStart(start, finest.resolutionMs); w < start + res; w += finest.resolutionMs) {
        if (w >= oldest) set.add(w);
      }
    }
    let windows = 0;
    let rows = 0;
    await inTransaction(c, async () => {
      for (const [tenant, set] of byTenant) {
        const all = [...set].sort((a, b) => a - b);
        for (let i = 0; i < all.length; i += COMPACTION_CHUNK) {
          let starts = all.slice(i, i + COMPACTION_CHUNK);
          let prev = finest.resolutionMs;
          let computed = await this.rollupFromRaw(c, tenant, starts, prev);
          windows += starts.length;
          rows += computed;
          for (const tier of coarser) {
            starts = [...new Set(starts.map((w) => windowStart(w, tier.resolutionMs)))];
            computed = await this.rollupFromTier(c, tenant, starts, prev, tier.resolutionMs);
            windows += starts.length;
            rows += computed;
            prev = tier.resolutionMs;
          }
        }
      }
      await c.run('DELETE FROM rollup_dirty WHERE window_start + resolution_ms <= $now', { now: BigInt(now) });
    });
    if (windows > 0) this.log.debug({ windows, rows }, 'rollup windows recomputed');
    return { windows, rows };
  }

  /** Recomputes windows `starts` of tier `res` from raw samples; returns rows written. */
  private async rollupFromRaw(c: DuckDBConnection, tenant: string, starts: number[], res: number): Promise<number> {
    const params = windowParams(tenant, starts, res);
    const wanted = new Set(starts);
    await this.unsealWindows(c, tenant, res, params.lo, params.hi, wanted);
    await c.run(`DELETE FROM rollups WHERE resolution_ms = $res AND ${IN_WINDOWS('window_start')}`, params, WINDOW_TYPES);
    const reader = await c.runAndReadAll(
      `SELECT series_id, ts_ms::DOUBLE, value FROM samples WHERE ${IN_WINDOWS('ts_ms')} ORDER BY series_id, ts_ms, rowid`,
      params,
      WINDOW_TYPES,
    );
    // Sealed samples of these windows first (a late sample may touch a sealed span), then
    // rows, each series' in write order; runs are re-sorted by time only when mixed.
    const bySeries = new Map<bigint, SampleRun>();
    const sealedRows = await c.runAndReadAll(
      `SELECT series_id, data FROM chunks WHERE tenant = $tenant AND end_ms >= $lo AND start_ms <= $hi
       ORDER BY series_id, seq, start_ms`,
      { tenant, lo: params.lo, hi: params.hi },
      { tenant: VARCHAR, lo: BIGINT, hi: BIGINT },
    );
    for (const [id, blob] of sealedRows.getRows() as [bigint, DuckDBBlobValue][]) {
      const { timestampsMs, values } = decodeChunk(blob.bytes);
      let run = bySeries.get(id);
      for (let i = 0; i < timestampsMs.length; i++) {
        if (!wanted.has(windowStart(timestampsMs[i], res))) continue;
        if (run === undefined) bySeries.set(id, (run = { idx: 0, ts: [], vs: [], unsorted: false }));
        else if (run.ts.length > 0 && timestampsMs[i] < run.ts[run.ts.length - 1]) run.unsorted = true;
        run.ts.push(timestampsMs[i]);
        run.vs.push(values[i]);
      }
    }
    if (reader.currentRowCount > 0) {
      const [ids, times, values] = reader.getColumns() as [bigint[], number[], number[]];
      for (let i = 0; i < ids.length; i++) {
        let run = bySeries.get(ids[i]);
        if (run === undefined) bySeries.set(ids[i], (run = { idx: 0, ts: [], vs: [], unsorted: false }));
        else if (run.ts.length > 0 && times[i] < run.ts[run.ts.length - 1]) run.unsorted = true;
        run.ts.push(times[i]);
        run.vs.push(values[i]);
      }
    }
    if (bySeries.size === 0) return 0;
    const appender = await c.createAppender('rollups');
    let written = 0;
    appendAll(appender, () => {
      for (const [id, run] of bySeries) {
        finishRun(run);
        for (const w of aggregateWindows(run.ts, run.vs, res)) {
          appendRollup(appender, tenant, res, id, w);
          written++;
        }
      }
    });
    return written;
  }

  /** Recomputes windows `starts` of tier `res` by merging tier `finer`; returns rows written. */
  private async rollupFromTier(
    c: DuckDBConnection,
    tenant: string,
    starts: number[],
    finer: number,
    res: number,
  ): Promise<number> {
    const params = windowParams(tenant, starts, res);
    const wanted = new Set(starts);
    await this.unsealWindows(c, tenant, res, params.lo, params.hi, wanted);
    await c.run(`DELETE FROM rollups WHERE resolution_ms = $res AND ${IN_WINDOWS('window_start')}`, params, WINDOW_TYPES);
    // The finer windows of these, sealed or rows (a recomputation puts back only the
    // finer tier's chunks it touched, not necessarily all of a coarser window).
    const bySeries = new Map<bigint, RollupWindow[]>();
    const mixed = new Set<bigint>();
    const sealed = await c.runAndReadAll(
      `SELECT series_id, data FROM rollup_chunks
       WHERE tenant = $tenant AND resolution_ms = $finer AND end_ms >= $lo AND start_ms <= $hi ORDER BY series_id, start_ms`,
      { tenant, finer: BigInt(finer), lo: params.lo, hi: params.hi },
      { tenant: VARCHAR, finer: BIGINT, lo: BIGINT, hi: BIGINT },
    );
    for (const [id, blob] of sealed.getRows() as [bigint, DuckDBBlobValue][]) {
      let list = bySeries.get(id);
      if (list === undefined) bySeries.set(id, (list = []));
      for (const w of decodeWindows(blob.bytes)) if (wanted.has(windowStart(w.startMs, res))) list.push(w);
    }
    const reader = await c.runAndReadAll(
      `SELECT series_id, ${ROLLUP_COLUMNS} FROM rollups
       WHERE resolution_ms = $finer AND ${IN_WINDOWS('window_start')} ORDER BY series_id, window_start`,
      { ...params, finer: BigInt(finer) },
      { ...WINDOW_TYPES, finer: BIGINT },
    );
    for (const row of reader.getRows()) {
      const id = row[0] as bigint;
      let list = bySeries.get(id);
      if (list === undefined) bySeries.set(id, (list = []));
      else if (list.length > 0) mixed.add(id);
      list.push(rowToWindow(row, 1));
    }
    if (bySeries.size === 0) return 0;
    const appender = await c.createAppender('rollups');
    let written = 0;
    appendAll(appender, () => {
      for (const [id, fine] of bySeries) {
        if (fine.length === 0) continue;
        if (mixed.has(id)) fine.sort((a, b) => a.startMs - b.startMs);
        for (const w of mergeWindows(fine, res)) {
          appendRollup(appender, tenant, res, id, w);
          written++;
        }
      }
    });
    return written;
  }

  /**
   * Takes the sealed windows of tier `res` in chunks overlapping `[lo, hi]` out of their
   * chunks, before windows `recompute` of them are written anew: the others go back as
   * rows (the next seal run seals them again), those are dropped. A chunk is never
   * patched in place, so a window lives in exactly one place. Returns windows dropped.
   */
  private async unsealWindows(
    c: DuckDBConnection,
    tenant: string,
    res: number,
    lo: bigint,
    hi: bigint,
    recompute: ReadonlySet<number>,
  ): Promise<number> {
    return this.unseal(c, res, 'tenant = $tenant AND end_ms >= $lo AND start_ms <= $hi', { tenant, lo, hi }, { tenant: VARCHAR, lo: BIGINT, hi: BIGINT }, (start) =>
      !recompute.has(start),
    );
  }

  /** Unseals the chunks of tier `res` matching `where`, keeping as rows the windows `keep` accepts; returns windows dropped. */
  private async unseal(
    c: DuckDBConnection,
    res: number,
    where: string,
    values: Record<string, DuckDBValue>,
    types: Record<string, DuckDBType>,
    keep: (startMs: number) => boolean,
  ): Promise<number> {
    const params = { ...values, res: BigInt(res) };
    const allTypes = { ...types, res: BIGINT };
    const found = await c.runAndReadAll(
      `SELECT tenant, series_id, data FROM rollup_chunks WHERE resolution_ms = $res AND ${where}`,
      params,
      allTypes,
    );
    if (found.currentRowCount === 0) return 0;
    await c.run(`DELETE FROM rollup_chunks WHERE resolution_ms = $res AND ${where}`, params, allTypes);
    let dropped = 0;
    const appender = await c.createAppender('rollups');
    appendAll(appender, () => {
      for (const [tenant, id, blob] of found.getRows() as [string, bigint, DuckDBBlobValue][]) {
        for (const w of decodeWindows(blob.bytes)) {
          if (keep(w.startMs)) appendRollup(appender, tenant, res, id, w);
          else dropped++;
        }
      }
    });
    return dropped;
  }

  /**
   * Seals each tier's windows into `rollup_chunks` once they are `sealAfterMs` old, in two
   * steps, one transaction per tenant and span:
   * 1. rows → chunks over short spans (2 hours, or ROLLUP_SPAN_WINDOWS windows if fewer),
   *    whole spans only, as `sealNow` does for samples;
   * 2. for coarser tiers, those short chunks → one chunk per ROLLUP_SPAN_WINDOWS windows
   *    (a day of hourly windows) once that span has ended.
   * Why not seal a day of hourly windows straight from rows: DuckDB reclaims a row group's
   * space only once every row in it is deleted, and hourly rows are appended among the
   * 5-minute ones, so rows living a day kept a day of every tier's deleted rows on disk
   * (measured: 68,240 rows stored for 2,000 live ones, 2.6 MB for 1,000 series).
   * A late sample for a sealed span unseals it again (`unsealWindows`).
   */
  private async sealRollupsNow(): Promise<void> {
    if (this.sealAfterMs <= 0) return;
    const c = this.writer;
    let sealed = 0;
    let merged = 0;
    for (const tier of this.retention.tiers) {
      const res = tier.resolutionMs;
      const span = res * ROLLUP_SPAN_WINDOWS;
      const short = shortSpan(res);
      const sealedBefore = sealed;
      const now = this.now() - this.sealAfterMs;
      const shortCut = Math.floor(now / short) * short;
      const cut = Math.floor(now / span) * span;
      // Windows of spans that have already ended go straight into their final chunk (after
      // an upgrade, or compaction paused for a while); at most SEAL_SPANS_PER_RUN spans per
      // run, so a backlog is worked off over several runs instead of holding up writes.
      const spans = await c.runAndReadAll(
        `SELECT DISTINCT tenant, (window_start - ((window_start % $span) + $span) % $span)::DOUBLE AS s, $span::DOUBLE FROM rollups
         WHERE resolution_ms = $res AND window_start < $cut
         UNION
         SELECT DISTINCT tenant, (window_start - ((window_start % $short) + $short) % $short)::DOUBLE AS s, $short::DOUBLE FROM rollups
         WHERE resolution_ms = $res AND window_start >= $cut AND window_start < $shortCut
         ORDER BY 2, 1 LIMIT ${SEAL_SPANS_PER_RUN}`,
        { span: BigInt(span), short: BigInt(short), res: BigInt(res), cut: BigInt(cut), shortCut: BigInt(shortCut) },
      );
      for (const [tenant, spanStart, width] of spans.getRows() as [string, number, number][]) {
        const bounds = { tenant, res: BigInt(res), lo: BigInt(spanStart), hi: BigInt(spanStart + width) };
        const inSpan = 'tenant = $tenant AND resolution_ms = $res AND window_start >= $lo AND window_start < $hi';
        await inTransaction(c, async () => {
          const reader = await c.runAndReadAll(
            `SELECT series_id, ${ROLLUP_COLUMNS} FROM rollups WHERE ${inSpan} ORDER BY series_id, window_start`,
            bounds,
            SPAN_TYPES,
          );
          const rows = reader.getRows();
          const appender = await c.createAppender('rollup_chunks');
          appendAll(appender, () => {
            let from = 0;
            for (let i = 1; i <= rows.length; i++) {
              if (i < rows.length && rows[i][0] === rows[from][0]) continue;
              appendWindowChunk(appender, tenant, res, rows[from][0] as bigint, rows.slice(from, i).map((row) => rowToWindow(row, 1)));
              from = i;
            }
          });
          sealed += rows.length;
          await c.run(`DELETE FROM rollups WHERE ${inSpan}`, bounds, SPAN_TYPES);
        });
      }
      // Looking for chunks to merge reads every chunk row of the tier: only when this run
      // sealed some, the cut has moved on, or the last look left work for later.
      if (short === span || (sealed === sealedBefore && this.mergedUpTo.get(res) === cut)) continue;
      const toMerge = await c.runAndReadAll(
        `SELECT DISTINCT tenant, (start_ms - ((start_ms % $span) + $span) % $span)::DOUBLE AS s FROM rollup_chunks
         WHERE resolution_ms = $res AND start_ms < $cut GROUP BY tenant, series_id, s HAVING count(*) > 1
         ORDER BY 2, 1 LIMIT ${SEAL_SPANS_PER_RUN}`,
        { span: BigInt(span), res: BigInt(res), cut: BigInt(cut) },
      );
      if (toMerge.currentRowCount < SEAL_SPANS_PER_RUN) this.mergedUpTo.set(res, cut);
      else this.mergedUpTo.delete(res);
      for (const [tenant, spanStart] of toMerge.getRows() as [string, number][]) {
        const bounds = { tenant, res: BigInt(res), lo: BigInt(spanStart), hi: BigInt(spanStart + span) };
        const inSpan = 'tenant = $tenant AND resolution_ms = $res AND start_ms >= $lo AND start_ms < $hi';
        await inTransaction(c, async () => {
          const reader = await c.runAndReadAll(`SELECT series_id, data FROM rollup_chunks WHERE ${inSpan} ORDER BY series_id, start_ms`, bounds, SPAN_TYPES);
          const rows = reader.getRows() as [bigint, DuckDBBlobValue][];
          // Read into memory, so the old chunks can go before their merged form is added.
          await c.run(`DELETE FROM rollup_chunks WHERE ${inSpan}`, bounds, SPAN_TYPES);
          const appender = await c.createAppender('rollup_chunks');
          appendAll(appender, () => {
            let from = 0;
            for (let i = 1; i <= rows.length; i++) {
              if (i < rows.length && rows[i][0] === rows[from][0]) continue;
              appendWindowChunk(appender, tenant, res, rows[from][0], rows.slice(from, i).flatMap(([, blob]) => decodeWindows(blob.bytes)));
              from = i;
            }
          });
          merged += rows.length;
        });
      }
    }
    if (sealed + merged > 0) this.log.debug({ windows: sealed, chunksMerged: merged }, 'rollup windows sealed into chunks');
  }


  /**
   * Seals raw samples older than `sealAfterMs` into one compressed chunk per series and
   * 2-hour span (chunk.ts), in one transaction per tenant and span so memory holds one
   * span's samples at a time; the rows are deleted in the same transaction, so a reader
   * sees each sample exactly once. Samples that arrive late for a sealed span stay rows
   * until the next run seals them into another chunk with a higher `seq`.
   *
   * Only whole spans are sealed: the cut is rounded down to a span boundary. Sealing up
   * to the exact cut made every run (each minute) seal the minute of samples that had
   * just aged past it, i.e. chunks of about four samples, each with its own header and
   * row: measured over 24 hours with the compactor running as it does in service, 3.09
   * bytes per sealed sample against 1.49 for whole spans. Rows then live 2 to 4 hours.
   */
  private async sealNow(): Promise<void> {
    if (this.sealAfterMs <= 0) return;
    const c = this.writer;
    const cut = Math.floor((this.now() - this.sealAfterMs) / CHUNK_SPAN_MS) * CHUNK_SPAN_MS;
    const spans = await c.runAndReadAll(
      `SELECT DISTINCT tenant, (ts_ms - ((ts_ms % $span) + $span) % $span)::DOUBLE FROM samples
       WHERE ts_ms < $cut ORDER BY 1, 2`,
      { span: BigInt(CHUNK_SPAN_MS), cut: BigInt(cut) },
    );
    const rows = spans.getRows() as [string, number][];
    if (rows.length === 0) return;
    const seq = ++this.chunkSeq;
    let sealed = 0;
    for (const [tenant, spanStart] of rows) {
      const bounds = { tenant, lo: BigInt(spanStart), hi: BigInt(Math.min(spanStart + CHUNK_SPAN_MS, cut)) };
      const types = { tenant: VARCHAR, lo: BIGINT, hi: BIGINT };
      await inTransaction(c, async () => {
        const reader = await c.runAndReadAll(
          `SELECT series_id, ts_ms::DOUBLE, value FROM samples WHERE tenant = $tenant AND ts_ms >= $lo AND ts_ms < $hi
           ORDER BY series_id, ts_ms, rowid`,
          bounds,
          types,
        );
        if (reader.currentRowCount > 0) {
          const [ids, times, values] = reader.getColumns() as [bigint[], number[], number[]];
          const appender = await c.createAppender('chunks');
          appendAll(appender, () => {
            let from = 0;
            for (let i = 1; i <= ids.length; i++) {
              if (i < ids.length && ids[i] === ids[from]) continue;
              const ts = times.slice(from, i);
              appender.appendVarchar(tenant);
              appender.appendUBigInt(ids[from]);
              appender.appendBigInt(BigInt(ts[0]));
              appender.appendBigInt(BigInt(ts[ts.length - 1]));
              appender.appendBigInt(BigInt(seq));
              appender.appendInteger(ts.length);
              appender.appendBlob(encodeChunk(ts, values.slice(from, i)));
              appender.endRow();
              from = i;
            }
          });
          sealed += ids.length;
        }
        await c.run('DELETE FROM samples WHERE tenant = $tenant AND ts_ms >= $lo AND ts_ms < $hi', bounds, types);
        // Before the commit, so no read that can see these chunks skips them.
        this.noteSealed(Number(bounds.hi));
      });
    }
    this.log.debug({ samples: sealed, spans: rows.length }, 'samples sealed into chunks');
  }

  /**
   * Deletes what each tier's retention has expired, in one transaction: raw samples,
   * rollup windows that ended before their tier's cut-off (and tiers no longer
   * configured), dirty marks that can no longer be recomputed, batch ids older than raw
   * retention (JetStream keeps sample batches for a day, so no redelivery can be that old),
   * and series left with no data. Then checkpoints so the freed blocks are reused.
   */
  private async retainNow(): Promise<RetentionResult> {
    const c = this.writer;
    const now = this.now();
    const rawCut = BigInt(now - this.retention.rawRetentionMs);
    // Before the deletion commits, so the head never answers for what it removes.
    this.head.raise(Number(rawCut));
    const { samplesDeleted, rollupsDeleted, seriesDeleted } = await inTransaction(c, async () => {
      let samplesDeleted = (await c.run('DELETE FROM samples WHERE ts_ms < $cut', { cut: rawCut })).rowsChanged;
      // A sealed chunk goes once all of it has expired (it covers at most CHUNK_SPAN_MS).
      samplesDeleted += await deleteChunks(c, 'chunks', 'end_ms < $cut', { cut: rawCut }, { cut: BIGINT });
      let rollupsDeleted = 0;
      for (const t of this.retention.tiers) {
        const cut = now - t.retentionMs;
        const gone = { res: BigInt(t.resolutionMs), cut: BigInt(cut) };
        const goneTypes = { res: BIGINT, cut: BIGINT };
        rollupsDeleted += (await c.run('DELETE FROM rollups WHERE resolution_ms = $res AND window_start + $res <= $cut', gone)).rowsChanged;
        // Sealed windows: whole chunks once their newest window has expired, the expired
        // windows of a chunk that straddles the cut-off by unsealing it.
        rollupsDeleted += await deleteChunks(c, 'rollup_chunks', 'resolution_ms = $res AND end_ms + $res <= $cut', gone, goneTypes);
        rollupsDeleted += await this.unseal(c, t.resolutionMs, 'start_ms + $res <= $cut', { cut: gone.cut }, { cut: BIGINT }, (start) =>
          start + t.resolutionMs > cut,
        );
      }
      const tiers = { tiers: listValue(this.retention.tiers.map((t) => BigInt(t.resolutionMs))) };
      const tierTypes = { tiers: LIST(BIGINT) };
      rollupsDeleted += (await c.run('DELETE FROM rollups WHERE NOT list_contains($tiers, resolution_ms)', tiers, tierTypes)).rowsChanged;
      rollupsDeleted += await deleteChunks(c, 'rollup_chunks', 'NOT list_contains($tiers, resolution_ms)', tiers, tierTypes);
      await c.run('DELETE FROM rollup_dirty WHERE window_start + resolution_ms <= $cut', { cut: rawCut });
      await c.run('DELETE FROM batches WHERE written_at_ms < $cut', { cut: rawCut });
      const seriesDeleted = (
        await c.run(`DELETE FROM series s WHERE
           NOT EXISTS (SELECT 1 FROM samples x WHERE x.tenant = s.tenant AND x.series_id = s.series_id) AND
           NOT EXISTS (SELECT 1 FROM chunks k WHERE k.tenant = s.tenant AND k.series_id = s.series_id) AND
           NOT EXISTS (SELECT 1 FROM rollups r WHERE r.tenant = s.tenant AND r.series_id = s.series_id) AND
           NOT EXISTS (SELECT 1 FROM rollup_chunks q WHERE q.tenant = s.tenant AND q.series_id = s.series_id)`)
      ).rowsChanged;
      return { samplesDeleted, rollupsDeleted, seriesDeleted };
    });
    if (seriesDeleted > 0) {
      // Deleted series must be written to the series table again if they come back.
      this.knownSeries.clear();
      this.knownSeriesCount = 0;
      this.seriesEpoch++;
    }
    await c.run('CHECKPOINT');
    const result = { samplesDeleted, rollupsDeleted, seriesDeleted };
    this.log.info(result, 'retention applied');
    return result;
  }

  /** Runs a read on a pooled connection, tracked so `close` can wait for it. */
  private read<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new StoreClosedError());
    const run = (async () => {
      const c = this.idleReaders.pop() ?? (await this.instance.connect());
      try {
        return await fn(c);
      } finally {
        if (this.closing || this.idleReaders.length >= MAX_IDLE_READERS) c.closeSync();
        else this.idleReaders.push(c);
      }
    })();
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.reads.add(settled);
    void settled.then(() => this.reads.delete(settled));
    return run;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    await this.writeTail;
    await Promise.all(this.reads);
    let failure: unknown;
    try {
      // Folds the WAL into the database file so the file alone holds every batch.
      await this.writer.run('CHECKPOINT');
    } catch (err) {
      failure = err;
      this.log.error({ err }, 'checkpoint on close failed; the WAL still holds the data');
    }
    for (const c of this.idleReaders.splice(0)) c.closeSync();
    this.statements.seen.destroySync();
    this.statements.record.destroySync();
    this.statements.dirty.destroySync();
    this.writer.closeSync();
    this.instance.closeSync();
    this.log.info('metric store closed');
    if (failure !== undefined) throw failure;
  }
}

/** One series' samples being assembled; `unsorted` when sources may interleave in time. */
interface SampleRun {
  idx: number;
  ts: number[];
  vs: number[];
  unsorted: boolean;
}

/** `readSamples` flags per series: rows arrived out of time order; two rows share a time. */
const DISORDERED = 1;
const TIED = 2;

/** Puts a series' rows (with no two sharing a timestamp) in time order, in place. */
function sortByTime(ts: Float64Array, vs: Float64Array): void {
  const order = Array.from({ length: ts.length }, (_, i) => i).sort((a, b) => ts[a] - ts[b]);
  const t2 = Float64Array.from(order, (i) => ts[i]);
  const v2 = Float64Array.from(order, (i) => vs[i]);
  ts.set(t2);
  vs.set(v2);
}

/** Samples of `blobs` (in seal order) within `range`; flagged unsorted when chunks interleave. */
function decodeRange(blobs: readonly Uint8Array[] | undefined, range: TimeRange): SampleRun {
  const run: SampleRun = { idx: 0, ts: [], vs: [], unsorted: false };
  for (const blob of blobs ?? []) {
    const { timestampsMs, values } = decodeChunk(blob);
    for (let i = 0; i < timestampsMs.length; i++) {
      const t = timestampsMs[i];
      if (t < range.startMs || t > range.endMs) continue;
      if (run.ts.length > 0 && t < run.ts[run.ts.length - 1]) run.unsorted = true;
      run.ts.push(t);
      run.vs.push(values[i]);
    }
  }
  return run;
}

/**
 * Puts a run in time order if needed. The sort is stable, so samples sharing a timestamp
 * keep their order: sealed before rows, older seal runs before newer, rows by rowid.
 */
function finishRun(run: SampleRun): void {
  if (!run.unsorted) return;
  const order = run.ts.map((_, i) => i).sort((a, b) => run.ts[a] - run.ts[b]);
  const ts = order.map((i) => run.ts[i]);
  const vs = order.map((i) => run.vs[i]);
  // Assigned in place (callers hold these arrays); no spread, which overflows on big runs.
  for (let i = 0; i < ts.length; i++) {
    run.ts[i] = ts[i];
    run.vs[i] = vs[i];
  }
  run.unsorted = false;
}

/** Whether another tenant has a series with one of `params.ids` (`OTHER_TENANT_HAS_IDS`). */
async function idsShared(c: DuckDBConnection, params: ReturnType<typeof rangeParams>): Promise<boolean> {
  const reader = await c.runAndReadAll(OTHER_TENANT_HAS_IDS, { tenant: params.tenant, ids: params.ids }, { ids: RANGE_TYPES.ids });
  return reader.currentRowCount > 0;
}

function rangeParams(tenant: string, candidates: readonly Candidate[], range: TimeRange) {
  return {
    tenant,
    ids: listValue(candidates.map((c) => c.id)),
    start: BigInt(range.startMs),
    end: BigInt(range.endMs),
  };
}

/** Rows per appended data chunk: DuckDB's vector size, the most one chunk may hold. */
const CHUNK_ROWS = 2048;
const SAMPLE_COLUMNS = [VARCHAR, UBIGINT, BIGINT, DOUBLE];

/**
 * Appends a batch's samples as column-wise data chunks. Measured on 2 cores, 100 batches
 * of 10k rows, one transaction each: chunks ≈0.83–1.05M rows/s, row-at-a-time appending
 * ≈0.6–0.73M, INSERT … SELECT unnest(list parameters) ≈160k, one multi-row
 * INSERT … VALUES ≈35k. Through the whole `write` path chunks stay ahead of rows, and both
 * are 3–4× faster than the INSERT.
 */
function appendSamples(appender: DuckDBAppender, tenant: string, batch: PreparedBatch, ids: readonly bigint[]): void {
  // Rows go straight into the chunk's typed vectors: no per-row arrays to build and
  // convert again (setColumns), measured about 10% cheaper per appended row.
  let chunk = DuckDBDataChunk.create(SAMPLE_COLUMNS, CHUNK_ROWS);
  let tenants = chunk.getColumnVector(0) as DuckDBVarCharVector;
  let seriesIds = chunk.getColumnVector(1) as DuckDBUBigIntVector;
  let times = chunk.getColumnVector(2) as DuckDBBigIntVector;
  let values = chunk.getColumnVector(3) as DuckDBDoubleVector;
  let row = 0;
  const flush = () => {
    chunk.rowCount = row;
    setTenant(tenants, tenant, row);
    seriesIds.flush();
    times.flush();
    values.flush();
    appender.appendDataChunk(chunk);
    chunk = DuckDBDataChunk.create(SAMPLE_COLUMNS, CHUNK_ROWS);
    tenants = chunk.getColumnVector(0) as DuckDBVarCharVector;
    seriesIds = chunk.getColumnVector(1) as DuckDBUBigIntVector;
    times = chunk.getColumnVector(2) as DuckDBBigIntVector;
    values = chunk.getColumnVector(3) as DuckDBDoubleVector;
    row = 0;
  };
  for (let i = 0; i < batch.series.length; i++) {
    const s = batch.series[i];
    const id = ids[i];
    for (let j = 0; j < s.timestampsMs.length; j++) {
      seriesIds.setItem(row, id);
      times.setItem(row, BigInt(s.timestampsMs[j]));
      values.setItem(row, s.values[j]);
      if (++row === CHUNK_ROWS) flush();
    }
  }
  if (row > 0) flush();
}

/**
 * Appends a columnar batch in chunks, writing ids, timestamps and values straight into the
 * vectors' typed arrays: 64-bit integers as two 32-bit halves (exact for safe integers),
 * so no BigInt is made per row, and values as one copy. Only the tenant goes through
 * `setItem`. Falls back to `setItem` should a client version keep its arrays elsewhere.
 */
function appendColumns(appender: DuckDBAppender, tenant: string, batch: ResolvedColumns): void {
  for (let start = 0; start < batch.rowCount; start += CHUNK_ROWS) {
    const rows = Math.min(CHUNK_ROWS, batch.rowCount - start);
    const chunk = DuckDBDataChunk.create(SAMPLE_COLUMNS, rows);
    const tenants = chunk.getColumnVector(0) as DuckDBVarCharVector;
    const seriesIds = chunk.getColumnVector(1) as DuckDBUBigIntVector;
    const times = chunk.getColumnVector(2) as DuckDBBigIntVector;
    const values = chunk.getColumnVector(3) as DuckDBDoubleVector;
    setTenant(tenants, tenant, rows);
    const idWords = int32Words(seriesIds, rows);
    const tsWords = int32Words(times, rows);
    const valueItems = (values as unknown as { items?: unknown }).items;
    if (idWords !== undefined && tsWords !== undefined && valueItems instanceof Float64Array && valueItems.length >= rows) {
      for (let j = 0; j < rows; j++) {
        const r = batch.rows[start + j]!;
        idWords[2 * j] = r.lo;
        idWords[2 * j + 1] = r.hi;
        const t = batch.timestampsMs[start + j]!;
        // Safe integers only (checked): the low word modulo 2^32, the high word floored.
        const hi = Math.floor(t / 4294967296);
        tsWords[2 * j] = t - hi * 4294967296;
        tsWords[2 * j + 1] = hi;
      }
      valueItems.set(batch.values.subarray(start, start + rows));
    } else {
      for (let j = 0; j < rows; j++) {
        seriesIds.setItem(j, batch.rows[start + j]!.id);
        times.setItem(j, BigInt(batch.timestampsMs[start + j]!));
        values.setItem(j, batch.values[start + j]!);
      }
    }
    seriesIds.flush();
    times.flush();
    values.flush();
    appender.appendDataChunk(chunk);
  }
}

/**
 * Fills the tenant column of a chunk's first `rows` rows. Every row of a batch has the
 * same tenant, so the vector is made a constant vector when its native vector is
 * reachable (a non-public field of @duckdb/node-api; row by row otherwise): setting it
 * row by row crossed into native code once per row, about 7% of the aggregation
 * service's busy time at 10,000-series batches. The appender copies a constant vector
 * like any other.
 */
function setTenant(vector: DuckDBVarCharVector, tenant: string, rows: number): void {
  const raw = (vector as unknown as { vector?: unknown }).vector;
  if (raw !== undefined && raw !== null) {
    duckdbBindings.vector_reference_value(raw as Parameters<typeof duckdbBindings.vector_reference_value>[0], duckdbBindings.create_varchar(tenant));
    return;
  }
  for (let j = 0; j < rows; j++) vector.setItem(j, tenant);
  vector.flush();
}

/** A little-endian view of a 64-bit vector's items as 32-bit words, if reachable. */
function int32Words(vector: DuckDBUBigIntVector | DuckDBBigIntVector, rows: number): Int32Array | undefined {
  const items = (vector as unknown as { items?: unknown }).items;
  if (!littleEndian || !(items instanceof BigInt64Array || items instanceof BigUint64Array) || items.length < rows) return undefined;
  return new Int32Array(items.buffer, items.byteOffset, rows * 2);
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Runs `fill` against an appender and closes it (which flushes into the open transaction). */
function appendAll(appender: DuckDBAppender, fill: () => void): void {
  try {
    fill();
  } catch (err) {
    // Drop the half-appended rows so closing does not flush them; the caller rolls back.
    appender.clear();
    appender.closeSync();
    throw err;
  }
  appender.closeSync();
}

type VectorClass<V> = abstract new (...args: never[]) => V;

/** A result column as its expected vector class; a mismatch is a bug in this file's SQL. */
function column<V>(chunk: DuckDBDataChunk, index: number, kind: VectorClass<V>): V {
  const vector = chunk.getColumnVector(index);
  if (!(vector instanceof kind)) throw new TypeError(`column ${index} is ${vector.type.toString()}, not ${kind.name}`);
  return vector;
}

/**
 * The first `n` values of a never-NULL numeric column, read straight from the typed array
 * the vector wraps. Why: `getItem` tests a validity bit with BigInt arithmetic on every
 * call, which made turning 290k sampled rows into arrays cost more than the query itself.
 * The typed array is not part of the client's public API; should a later version keep it
 * elsewhere, this falls back to `getItem`. Callers copy the values out before the chunk
 * goes (the array views DuckDB's memory).
 */
function numbers(vector: DuckDBDoubleVector | DuckDBIntegerVector, n: number): ArrayLike<number> {
  const items = (vector as unknown as { items?: unknown }).items;
  if ((items instanceof Float64Array || items instanceof Int32Array) && items.length >= n) return items;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = vector.getItem(i) ?? NaN;
  return out;
}

async function migrate(c: DuckDBConnection, log: Logger, finestMs: number | undefined): Promise<void> {
  await inTransaction(c, async () => {
    await c.run('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at_ms BIGINT NOT NULL)');
    const reader = await c.runAndReadAll('SELECT max(version) FROM schema_version');
    const found = reader.getColumns()[0][0] as number | null;
    if (found !== null && found > DUCKDB_SCHEMA_VERSION) {
      throw new StartupError(
        `metric store file has schema version ${found}, newer than this build's ${DUCKDB_SCHEMA_VERSION}`,
      );
    }
    for (const ddl of SCHEMA) await c.run(ddl);
    if (found === null) {
      await c.run('INSERT INTO schema_version VALUES ($v, $at)', { v: DUCKDB_SCHEMA_VERSION, at: BigInt(Date.now()) });
      log.info({ schemaVersion: DUCKDB_SCHEMA_VERSION }, 'metric store schema created');
    } else if (found < DUCKDB_SCHEMA_VERSION) {
      // Version 1 → 2 added rollups: mark every window holding samples dirty, so the first
      // compaction builds the rollups of the data written before the upgrade. Version 2 → 3
      // added `rollup_chunks` (created above), which starts empty.
      if (found < 2 && finestMs !== undefined) {
        await c.run(
          `INSERT INTO rollup_dirty SELECT DISTINCT tenant, $res, ts_ms - ((ts_ms % $res) + $res) % $res FROM samples`,
          { res: BigInt(finestMs) },
        );
      }
      await c.run('INSERT INTO schema_version VALUES ($v, $at)', { v: DUCKDB_SCHEMA_VERSION, at: BigInt(Date.now()) });
      log.info({ from: found, schemaVersion: DUCKDB_SCHEMA_VERSION }, 'metric store schema migrated');
    }
  });
}

/**
 * Opens (creating if absent) the DuckDB metric store at `options.path`. The returned store
 * owns the file until `close()`, which waits for in-flight calls and checkpoints.
 */
export async function openDuckDbStore(options: DuckDbStoreOptions): Promise<RollupStore> {
  const log = options.logger.child({ component: 'metric-store', adapter: 'duckdb' });
  const cacheSize = options.seriesCacheSize ?? 250_000;
  const retention = options.retention ?? DEFAULT_RETENTION;
  validateRetention(retention);
  if (options.path !== ':memory:') await mkdir(dirname(options.path), { recursive: true });
  const instance = await DuckDBInstance.create(options.path);
  let writer: DuckDBConnection | undefined;
  let statements: WriteStatements;
  try {
    writer = await instance.connect();
    await migrate(writer, log, retention.tiers[0]?.resolutionMs);
    statements = await prepareWriteStatements(writer);
  } catch (err) {
    writer?.closeSync();
    instance.closeSync();
    throw err;
  }
  log.info({ path: options.path, schemaVersion: DUCKDB_SCHEMA_VERSION }, 'metric store opened');
  const seqReader = await writer.runAndReadAll('SELECT coalesce(max(seq), 0)::DOUBLE, max(end_ms)::DOUBLE FROM chunks');
  // The head starts covering just after the newest stored sample: nothing newer exists.
  const newest = (await writer.runAndReadAll('SELECT max(ts_ms)::DOUBLE FROM samples')).getColumns()[0][0] as number | null;
  const sealedEnd = seqReader.getColumns()[1][0] as number | null;
  const now = options.now ?? Date.now;
  const head = new Head({
    from: Math.max(newest ?? -Infinity, sealedEnd ?? -Infinity) + 1,
    maxSamples: options.headSamples ?? 4_000_000,
    maxAgeMs: options.headMaxAgeMs ?? 6 * 3_600_000,
    now,
  });
  const store = new DuckDbMetricStore(
    instance,
    writer,
    statements,
    log,
    cacheSize,
    retention,
    now,
    options.sealAfterMs ?? 7_200_000,
    seqReader.getColumns()[0][0] as number,
    head,
  );
  store.noteSealed(sealedEnd ?? -Infinity);
  store.startJobs(options.compactionIntervalMs ?? 60_000, options.retentionIntervalMs ?? 3_600_000);
  return store;
}
