/**
 * The production `MetricStore` adapter: MongoDB 7.0+ through the official driver.
 *
 * Collections (see {@link buildCollectionSpecs}, which is unit-tested):
 * - `samples`: a time-series collection, `timeField` `ts`, `metaField` `m` = {t: tenant,
 *   s: series id}, granularity from config (`seconds` suits agents reporting every few
 *   seconds to a minute: MongoDB buckets up to an hour per series), `expireAfterSeconds` =
 *   raw retention. A measurement is {ts, m, ms, v, b}: `ms` is the exact millisecond
 *   timestamp (a BSON date cannot hold the contract's whole safe-integer range, so `ts` is
 *   clamped to the date range and `ms` decides), `v` is always a BSON double (the driver
 *   would send -0 as int32 0), and `b` the batch id, used only to undo a partial write.
 * - `series`: one document per (tenant, series): canonical labels, the metric name, `lk`
 *   (`name=value` strings, multikey-indexed: the series/label index) and the first/last
 *   sample time, so label look-ups never scan samples.
 * - `rollups_<resolutionMs>`: one per tier, one document per (tenant, series, window),
 *   unique on (t, s, w) so the compactor's upserts are idempotent, with a TTL index on the
 *   window end whose `expireAfterSeconds` is the tier's retention.
 * - `batches` (batch ids, TTL = raw retention) and `rollup_dirty` (windows to recompute).
 *
 * Exactly once in effect without transactions: MongoDB cannot write to time-series
 * collections inside a multi-document transaction, so a batch is claimed first: its id is
 * inserted into `batches` as `pending` with an owner and a lease; then series, samples and
 * dirty marks are written; then the id is marked `done`. A redelivery finds `done` and
 * skips. One that finds `pending` with an expired lease (the writer crashed between the
 * samples and `done`) takes the claim over, deletes the samples carrying that batch id and
 * writes them again, so nothing is counted twice; one that finds a live lease fails with
 * `UnavailableError`, and the consumer naks and retries later. This holds as long as a
 * write finishes within its lease (default 60 s; writes take well under a second).
 *
 * Reads use aggregation pipelines built by the exported `build*` functions (unit-tested as
 * plain objects). Matchers are applied in JS with `compileMatcher` after a pushed-down
 * prefilter, so regex semantics stay identical to every other component.
 *
 * The contract suite runs against a real server when `TELEMESH_TEST_MONGODB_URI` is set.
 */
import { randomUUID } from 'node:crypto';
import { Binary, Double, MongoClient, MongoServerError } from 'mongodb';
import type { AnyBulkWriteOperation, Collection, Db, Document, IndexDescription } from 'mongodb';
import type { Logger } from 'pino';
import { matchesAll, METRIC_NAME_LABEL } from '../model/index.js';
import type { Label, Matcher, SeriesSamples } from '../model/index.js';
import { UnavailableError } from '../runtime/errors.js';
import {
  checkTenant,
  compareLabels,
  compileMatchers,
  decodeLabels,
  LimitTracker,
  normalizeRange,
  prepareBatch,
  sortedLabelNames,
  sortedLabelValues,
  toColumns,
} from './common.js';
import type { PreparedBatch, TimeRange } from './common.js';
import { StoreClosedError, StoreInputError } from './errors.js';
import type { SelectLimits, SeriesColumns, WriteResult } from './port.js';
import { aggregateWindows, checkTier, DEFAULT_RETENTION, mergeWindows, pickTier, startRollupJobs, validateRetention, windowStart } from './rollup.js';
import type {
  CompactionResult,
  RetentionPolicy,
  RetentionResult,
  RollupSeries,
  RollupStore,
  RollupWindow,
} from './rollup.js';
import { seriesId } from './series-id.js';
import { QuantileSketch } from './sketch.js';

/** Granularity of the raw time-series collection. */
export type MongoGranularity = 'seconds' | 'minutes' | 'hours';

/** Options of {@link openMongoStore}. */
export interface MongoStoreOptions {
  /** Connection string (`mongodb://…`); a replica set in production. */
  readonly uri: string;
  /** Database holding the collections. */
  readonly database: string;
  /** Receives open/close and failure logs. */
  readonly logger: Logger;
  /** Raw retention and rollup tiers; {@link DEFAULT_RETENTION} when absent. */
  readonly retention?: RetentionPolicy;
  /** Granularity of the `samples` collection (default `seconds`). */
  readonly granularity?: MongoGranularity;
  /** Compactor interval, ms; 0 disables the timer. Default 60 s. */
  readonly compactionIntervalMs?: number;
  /** Retention interval, ms; 0 disables the timer. Default 1 h (TTL indexes also expire data). */
  readonly retentionIntervalMs?: number;
  /** How long a batch claim is honoured before another writer may take it over. Default 60 s. */
  readonly batchLeaseMs?: number;
  /** Clock, injectable for tests. */
  readonly now?: () => number;
}

/** A collection to create: its name, `createCollection` options and indexes. */
export interface CollectionSpec {
  readonly name: string;
  readonly options: Document;
  readonly indexes: IndexDescription[];
}

const SAMPLES = 'samples';
const SERIES = 'series';
const BATCHES = 'batches';
const DIRTY = 'rollup_dirty';

/** Name of the rollup collection of a tier. */
export function rollupCollection(resolutionMs: number): string {
  return `rollups_${resolutionMs}`;
}

/** Largest magnitude a BSON/JS date may hold, ms. */
const MAX_DATE_MS = 8_640_000_000_000_000;

/** The BSON date stored for a timestamp: exact inside the date range, clamped outside. */
export function clampDate(ms: number): Date {
  return new Date(Math.max(-MAX_DATE_MS, Math.min(MAX_DATE_MS, ms)));
}

/**
 * Every collection with its options and indexes. Pure, so the layout is unit-tested; the
 * adapter creates what is missing at open (existing collections keep their options;
 * changed retention is applied with `collMod`).
 */
export function buildCollectionSpecs(policy: RetentionPolicy, granularity: MongoGranularity): CollectionSpec[] {
  const seconds = (ms: number) => Math.ceil(ms / 1000);
  return [
    {
      name: SAMPLES,
      options: {
        timeseries: { timeField: 'ts', metaField: 'm', granularity },
        expireAfterSeconds: seconds(policy.rawRetentionMs),
      },
      // Series first, then time: every read names its series (from the series index).
      indexes: [{ key: { 'm.t': 1, 'm.s': 1, ts: 1 }, name: 'series_time' }],
    },
    {
      name: SERIES,
      options: {},
      indexes: [
        { key: { t: 1, s: 1 }, name: 'tenant_series', unique: true },
        { key: { t: 1, metric: 1 }, name: 'tenant_metric' },
        // Multikey over `name=value` strings: the label index for equality matchers.
        { key: { t: 1, lk: 1 }, name: 'tenant_labels' },
      ],
    },
    {
      name: BATCHES,
      options: {},
      // A batch id is remembered as long as raw samples are: JetStream redelivers for a day.
      indexes: [{ key: { at: 1 }, name: 'expire', expireAfterSeconds: seconds(policy.rawRetentionMs) }],
    },
    { name: DIRTY, options: {}, indexes: [] },
    ...policy.tiers.map((tier): CollectionSpec => ({
      name: rollupCollection(tier.resolutionMs),
      options: {},
      indexes: [
        { key: { t: 1, s: 1, w: 1 }, name: 'series_window', unique: true },
        { key: { end: 1 }, name: 'expire', expireAfterSeconds: seconds(tier.retentionMs) },
      ],
    })),
  ];
}

/**
 * The prefilter on `series` for a query: the tenant, the metric name when an `=` names it,
 * and every other non-empty `=` through the label index. Other matchers run in JS.
 */
export function buildSeriesFilter(tenant: string, matchers: readonly Matcher[]): Document {
  const filter: Document = { t: tenant };
  const lk: string[] = [];
  for (const m of matchers) {
    if (m.op !== '=' || m.value === '') continue;
    if (m.name === METRIC_NAME_LABEL) filter.metric = m.value;
    else lk.push(`${m.name}=${m.value}`);
  }
  if (lk.length > 0) filter.lk = { $all: lk };
  return filter;
}

/** The `$match` of samples of `ids` (hex series ids) in `range`. */
function samplesMatch(tenant: string, ids: readonly string[], range: TimeRange): Document {
  return {
    'm.t': tenant,
    'm.s': { $in: [...ids] },
    // The date bound uses the index; the exact `ms` bound decides at the clamped edges.
    ts: { $gte: clampDate(range.startMs), $lte: clampDate(range.endMs) },
    ms: { $gte: range.startMs, $lte: range.endMs },
  };
}

/**
 * Samples of the given series in range, ordered by series, time and insertion (`_id`
 * ObjectIds grow in write order), so equal timestamps keep their write order.
 */
export function buildSelectPipeline(tenant: string, ids: readonly string[], range: TimeRange): Document[] {
  return [
    { $match: samplesMatch(tenant, ids, range) },
    { $sort: { 'm.s': 1, ms: 1, _id: 1 } },
    { $project: { _id: 0, s: '$m.s', ms: 1, v: 1 } },
  ];
}

/** Which of the given series have at least one sample in range. */
export function buildSeriesWithSamplesPipeline(tenant: string, ids: readonly string[], range: TimeRange): Document[] {
  return [{ $match: samplesMatch(tenant, ids, range) }, { $group: { _id: '$m.s' } }];
}

/** Raw samples of windows `starts` of width `resolutionMs`, ordered for `aggregateWindows`. */
export function buildWindowSamplesPipeline(tenant: string, starts: readonly number[], resolutionMs: number): Document[] {
  const lo = Math.min(...starts);
  const hi = Math.max(...starts) + resolutionMs - 1;
  return [
    { $match: { 'm.t': tenant, ts: { $gte: clampDate(lo), $lte: clampDate(hi) }, ms: { $gte: lo, $lte: hi } } },
    {
      $match: {
        $expr: { $in: [{ $subtract: ['$ms', { $mod: [{ $add: [{ $mod: ['$ms', resolutionMs] }, resolutionMs] }, resolutionMs] }] }, [...starts]] },
      },
    },
    { $sort: { 'm.s': 1, ms: 1, _id: 1 } },
    { $project: { _id: 0, s: '$m.s', ms: 1, v: 1 } },
  ];
}

/** Rollup documents of the given series with window start in range, ordered. */
export function buildRollupPipeline(tenant: string, ids: readonly string[], startMs: number, endMs: number): Document[] {
  return [
    { $match: { t: tenant, s: { $in: [...ids] }, w: { $gte: startMs, $lte: endMs } } },
    { $sort: { s: 1, w: 1 } },
  ];
}

/** The stored form of a rollup window. */
export function rollupDocument(tenant: string, id: string, resolutionMs: number, w: RollupWindow): Document {
  return {
    t: tenant,
    s: id,
    w: w.startMs,
    end: clampDate(w.startMs + resolutionMs),
    min: new Double(w.min),
    max: new Double(w.max),
    sum: new Double(w.sum),
    count: w.count,
    last: new Double(w.last),
    lastMs: w.lastMs,
    sketch: new Binary(w.sketch.encode()),
  };
}

function documentToWindow(d: Document): RollupWindow {
  return {
    startMs: d.w as number,
    min: d.min as number,
    max: d.max as number,
    sum: d.sum as number,
    count: d.count as number,
    last: d.last as number,
    lastMs: d.lastMs as number,
    sketch: QuantileSketch.decode((d.sketch as Binary).buffer),
  };
}

const hex = (id: bigint) => id.toString(16).padStart(16, '0');

interface BatchDoc {
  _id: { t: string; b: string };
  state: 'pending' | 'done';
  owner: string;
  leaseUntil: number;
  at: Date;
  count?: number;
}

interface DirtyDoc {
  _id: { t: string; w: number };
  r: number;
}

interface SeriesDoc {
  readonly s: string;
  readonly k: string;
}

interface Candidate {
  readonly id: string;
  readonly labels: Label[];
}

class MongoMetricStore implements RollupStore {
  private writeTail: Promise<unknown> = Promise.resolve();
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly owner = randomUUID();
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly client: MongoClient,
    private readonly db: Db,
    private readonly log: Logger,
    readonly retention: RetentionPolicy,
    private readonly leaseMs: number,
    private readonly now: () => number,
  ) {}

  startJobs(compactionIntervalMs: number, retentionIntervalMs: number): void {
    this.timers.push(...startRollupJobs(this, this.log, compactionIntervalMs, retentionIntervalMs));
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

  async select(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
    limits?: SelectLimits,
  ): Promise<SeriesSamples[]> {
    const tracker = new LimitTracker(limits);
    const q = this.query(tenant, matchers, startMs, endMs);
    return this.track(async () => {
      if (q.range === undefined) return [];
      const candidates = await this.candidates(tenant, matchers, q.range);
      if (candidates.length === 0) return [];
      const byId = new Map(candidates.map((c) => [c.id, c]));
      const groups = new Map<string, SeriesSamples>();
      const cursor = this.db.collection(SAMPLES).aggregate(buildSelectPipeline(tenant, [...byId.keys()], q.range));
      try {
        // Streamed and counted as it arrives, so an oversized answer is never built.
        for await (const d of cursor) {
          const id = d.s as string;
          let g = groups.get(id);
          if (g === undefined) {
            tracker.addSeries();
            g = { labels: byId.get(id)?.labels ?? [], timestampsMs: [], values: [] };
            groups.set(id, g);
          }
          tracker.addSamples(1);
          (g.timestampsMs as number[]).push(d.ms as number);
          (g.values as number[]).push(d.v as number);
        }
      } finally {
        await cursor.close();
      }
      return [...groups.values()].sort((a, b) => compareLabels(a.labels, b.labels));
    });
  }

  async selectColumns(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
    limits?: SelectLimits,
  ): Promise<SeriesColumns[]> {
    return toColumns(await this.select(tenant, matchers, startMs, endMs, limits));
  }

  async series(tenant: string, matchers: readonly Matcher[], startMs: number, endMs: number, limits?: SelectLimits): Promise<Label[][]> {
    const tracker = new LimitTracker(limits);
    const q = this.query(tenant, matchers, startMs, endMs);
    return this.track(async () => {
      const found = await this.seriesInRange(tenant, matchers, q.range);
      found.sort((a, b) => compareLabels(a.labels, b.labels));
      return found.map((s) => {
        tracker.addSeries();
        return s.labels;
      });
    });
  }

  async labelNames(tenant: string, matchers: readonly Matcher[], startMs: number, endMs: number): Promise<string[]> {
    const q = this.query(tenant, matchers, startMs, endMs);
    return this.track(async () => sortedLabelNames(await this.seriesInRange(tenant, matchers, q.range)));
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
    return this.track(async () => sortedLabelValues(await this.seriesInRange(tenant, matchers, q.range), name));
  }

  pickTier(stepMs: number, rangeMs: number): number {
    return pickTier(this.retention, stepMs, rangeMs);
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
    return this.track(async () => {
      if (q.range === undefined) return [];
      const candidates = await this.candidates(tenant, matchers, undefined);
      if (candidates.length === 0) return [];
      const byId = new Map(candidates.map((c) => [c.id, c]));
      const out = new Map<string, RollupSeries>();
      const cursor = this.db
        .collection(rollupCollection(resolutionMs))
        .aggregate(buildRollupPipeline(tenant, [...byId.keys()], q.range.startMs, q.range.endMs));
      try {
        for await (const d of cursor) {
          let g = out.get(d.s as string);
          if (g === undefined) {
            tracker.addSeries();
            g = { labels: byId.get(d.s as string)?.labels ?? [], windows: [] };
            out.set(d.s as string, g);
          }
          tracker.addSamples(1);
          g.windows.push(documentToWindow(d));
        }
      } finally {
        await cursor.close();
      }
      return [...out.values()].sort((a, b) => compareLabels(a.labels, b.labels));
    });
  }

  async rollupsCompleteBefore(tenant: string): Promise<number> {
    if (this.closing) throw new StoreClosedError();
    checkTenant(tenant);
    // The oldest window still marked dirty bounds what the compactor has not yet seen.
    return this.track(async () => {
      const oldest = await this.db.collection<DirtyDoc>(DIRTY).find({ '_id.t': tenant }).sort({ '_id.w': 1 }).limit(1).toArray();
      return oldest[0]?._id.w ?? Infinity;
    });
  }

  compact(): Promise<CompactionResult> {
    return this.enqueue(() => this.compactNow());
  }

  applyRetention(): Promise<RetentionResult> {
    return this.enqueue(() => this.retainNow());
  }

  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private query(tenant: string, matchers: readonly Matcher[], startMs: number, endMs: number) {
    if (this.closing) throw new StoreClosedError();
    checkTenant(tenant);
    compileMatchers(matchers);
    return { range: normalizeRange(startMs, endMs) };
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new StoreClosedError());
    const run = this.writeTail.then(job);
    this.writeTail = run.catch(() => undefined);
    return run;
  }

  private track<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new StoreClosedError());
    const run = fn();
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.inflight.add(settled);
    void settled.then(() => this.inflight.delete(settled));
    return run;
  }

  /** Claims, writes and completes one batch (see the module comment for the protocol). */
  private async writeNow(tenant: string, batchId: string, batch: PreparedBatch): Promise<WriteResult> {
    const batches = this.db.collection<BatchDoc>(BATCHES);
    const _id = { t: tenant, b: batchId };
    const now = this.now();
    const ids = batch.series.map((s) => hex(seriesId(s.labels)));
    try {
      await batches.insertOne({ _id, state: 'pending', owner: this.owner, leaseUntil: now + this.leaseMs, at: new Date(now) });
    } catch (err) {
      if (!(err instanceof MongoServerError && err.code === 11000)) throw err;
      const found = await batches.findOne({ _id });
      if (found?.state === 'done') {
        this.log.debug({ tenant, batchId }, 'duplicate batch skipped');
        return { samplesWritten: 0, duplicate: true };
      }
      const taken = await batches.findOneAndUpdate(
        { _id, state: 'pending', leaseUntil: { $lte: now } },
        { $set: { owner: this.owner, leaseUntil: now + this.leaseMs } },
      );
      if (taken === null) throw new UnavailableError(`batch ${batchId} is being written by another replica; retry later`);
      // The previous writer died mid-batch: undo whatever of it reached the samples.
      await this.db.collection(SAMPLES).deleteMany({ 'm.t': tenant, 'm.s': { $in: ids }, b: batchId });
      this.log.warn({ tenant, batchId }, 'took over an abandoned batch write');
    }
    await this.upsertSeries(tenant, batch, ids);
    const docs: Document[] = [];
    batch.series.forEach((s, i) => {
      for (let j = 0; j < s.timestampsMs.length; j++) {
        const ms = s.timestampsMs[j];
        docs.push({ ts: clampDate(ms), m: { t: tenant, s: ids[i] }, ms, v: new Double(s.values[j]), b: batchId });
      }
    });
    if (docs.length > 0) await this.db.collection(SAMPLES).insertMany(docs, { ordered: true });
    await this.markDirty(tenant, batch);
    const done = await batches.updateOne({ _id, owner: this.owner }, { $set: { state: 'done', count: batch.sampleCount } });
    if (done.matchedCount !== 1) throw new UnavailableError(`batch ${batchId} lease was lost while writing; retry later`);
    return { samplesWritten: batch.sampleCount, duplicate: false };
  }

  private async upsertSeries(tenant: string, batch: PreparedBatch, ids: readonly string[]): Promise<void> {
    const ops: AnyBulkWriteOperation[] = batch.series.map((s, i) => {
      let first = Infinity;
      let last = -Infinity;
      for (const t of s.timestampsMs) {
        first = Math.min(first, t);
        last = Math.max(last, t);
      }
      return {
        updateOne: {
          filter: { t: tenant, s: ids[i] },
          update: {
            $setOnInsert: { metric: s.metric, k: s.key, lk: s.labels.map((l) => `${l.name}=${l.value}`) },
            $min: { first },
            $max: { last },
          },
          upsert: true,
        },
      };
    });
    if (ops.length > 0) await this.db.collection(SERIES).bulkWrite(ops, { ordered: false });
  }

  private async markDirty(tenant: string, batch: PreparedBatch): Promise<void> {
    const finest = this.retention.tiers[0];
    if (finest === undefined) return;
    const windows = new Set<number>();
    for (const s of batch.series) for (const t of s.timestampsMs) windows.add(windowStart(t, finest.resolutionMs));
    const ops: AnyBulkWriteOperation[] = [...windows].map((w) => ({
      updateOne: { filter: { _id: { t: tenant, w } }, update: { $set: { r: finest.resolutionMs } }, upsert: true },
    }));
    if (ops.length > 0) await this.db.collection(DIRTY).bulkWrite(ops, { ordered: false });
  }

  /**
   * Candidate series: the pushed-down prefilter, then every matcher in JS. With a range,
   * series whose first/last sample times cannot overlap it are skipped.
   */
  private async candidates(tenant: string, matchers: readonly Matcher[], range: TimeRange | undefined): Promise<Candidate[]> {
    const compiled = compileMatchers(matchers);
    const filter = buildSeriesFilter(tenant, matchers);
    if (range !== undefined) {
      filter.first = { $lte: range.endMs };
      filter.last = { $gte: range.startMs };
    }
    const out: Candidate[] = [];
    const docs = this.db.collection<SeriesDoc>(SERIES).find(filter, { projection: { _id: 0, s: 1, k: 1 } });
    for await (const d of docs) {
      const labels = decodeLabels(d.k);
      if (matchesAll(labels, compiled)) out.push({ id: d.s, labels });
    }
    return out;
  }

  private async seriesInRange(tenant: string, matchers: readonly Matcher[], range: TimeRange | undefined): Promise<Candidate[]> {
    if (range === undefined) return [];
    const candidates = await this.candidates(tenant, matchers, range);
    if (candidates.length === 0) return [];
    const present = new Set<string>();
    const cursor = this.db
      .collection(SAMPLES)
      .aggregate(buildSeriesWithSamplesPipeline(tenant, candidates.map((c) => c.id), range));
    for await (const d of cursor) present.add(d._id as string);
    return candidates.filter((c) => present.has(c.id));
  }

  /**
   * Recomputes dirty windows: the first tier from raw samples, each further tier by merging
   * the tier before, upserting one document per series and window (idempotent), and only
   * then removes the marks, so a crash midway just repeats the work.
   */
  private async compactNow(): Promise<CompactionResult> {
    const [finest, ...coarser] = this.retention.tiers;
    const dirty = this.db.collection<DirtyDoc>(DIRTY);
    const now = this.now();
    // Only windows that have ended (see the DuckDB adapter): open ones keep their marks.
    const marks = (await dirty.find({}).toArray()).filter((m) => m._id.w + m.r <= now);
    if (finest === undefined || marks.length === 0) {
      if (marks.length > 0) await dirty.deleteMany({ _id: { $in: marks.map((m) => m._id) } });
      return { windows: 0, rows: 0 };
    }
    const oldest = windowStart(now - this.retention.rawRetentionMs, finest.resolutionMs);
    const byTenant = new Map<string, Set<number>>();
    for (const m of marks) {
      const { t, w } = m._id;
      const r = m.r;
      let set = byTenant.get(t);
      if (set === undefined) byTenant.set(t, (set = new Set()));
      for (let x = windowStart(w, finest.resolutionMs); x < w + r; x += finest.resolutionMs) if (x >= oldest) set.add(x);
    }
    let windows = 0;
    let rows = 0;
    for (const [tenant, set] of byTenant) {
      const all = [...set].sort((a, b) => a - b);
      for (let i = 0; i < all.length; i += 256) {
        let starts = all.slice(i, i + 256);
        let prev = finest.resolutionMs;
        const bySeries = new Map<string, { ts: number[]; vs: number[] }>();
        for await (const d of this.db.collection(SAMPLES).aggregate(buildWindowSamplesPipeline(tenant, starts, prev))) {
          let g = bySeries.get(d.s as string);
          if (g === undefined) bySeries.set(d.s as string, (g = { ts: [], vs: [] }));
          g.ts.push(d.ms as number);
          g.vs.push(d.v as number);
        }
        const computed = new Map<string, RollupWindow[]>();
        for (const [id, g] of bySeries) computed.set(id, aggregateWindows(g.ts, g.vs, prev));
        rows += await this.upsertRollups(tenant, prev, computed);
        windows += starts.length;
        for (const tier of coarser) {
          starts = [...new Set(starts.map((w) => windowStart(w, tier.resolutionMs)))];
          const fine = new Map<string, RollupWindow[]>();
          const ranges = starts.map((w) => ({ w: { $gte: w, $lt: w + tier.resolutionMs } }));
          const cursor = this.db.collection(rollupCollection(prev)).find({ t: tenant, $or: ranges }).sort({ s: 1, w: 1 });
          for await (const d of cursor) {
            let list = fine.get(d.s as string);
            if (list === undefined) fine.set(d.s as string, (list = []));
            list.push(documentToWindow(d));
          }
          const merged = new Map<string, RollupWindow[]>();
          for (const [id, list] of fine) merged.set(id, mergeWindows(list, tier.resolutionMs));
          rows += await this.upsertRollups(tenant, tier.resolutionMs, merged);
          windows += starts.length;
          prev = tier.resolutionMs;
        }
      }
    }
    await dirty.deleteMany({ _id: { $in: marks.map((m) => m._id) } });
    return { windows, rows };
  }

  private async upsertRollups(tenant: string, res: number, bySeries: Map<string, RollupWindow[]>): Promise<number> {
    const ops: AnyBulkWriteOperation[] = [];
    for (const [id, list] of bySeries) {
      for (const w of list) {
        ops.push({ replaceOne: { filter: { t: tenant, s: id, w: w.startMs }, replacement: rollupDocument(tenant, id, res, w), upsert: true } });
      }
    }
    if (ops.length > 0) await this.db.collection(rollupCollection(res)).bulkWrite(ops, { ordered: false });
    return ops.length;
  }

  /**
   * Deletes expired data now. TTL indexes do the same in the background (within about a
   * minute of expiry); this run makes it exact and prunes series documents with no data.
   */
  private async retainNow(): Promise<RetentionResult> {
    const now = this.now();
    const rawCut = now - this.retention.rawRetentionMs;
    const samples = await this.db.collection(SAMPLES).deleteMany({ ts: { $lt: clampDate(rawCut) } });
    let rollupsDeleted = 0;
    for (const t of this.retention.tiers) {
      const r = await this.db.collection(rollupCollection(t.resolutionMs)).deleteMany({ end: { $lte: clampDate(now - t.retentionMs) } });
      rollupsDeleted += r.deletedCount;
    }
    await this.db.collection(BATCHES).deleteMany({ at: { $lt: new Date(rawCut) } });
    // A series with no sample newer than raw retention and no window in the longest-kept
    // tier holds nothing any more.
    const longest = this.retention.tiers.reduce((m, t) => Math.max(m, t.retentionMs), this.retention.rawRetentionMs);
    const series = await this.db.collection(SERIES).deleteMany({ last: { $lt: now - longest } });
    const result = { samplesDeleted: samples.deletedCount, rollupsDeleted, seriesDeleted: series.deletedCount };
    this.log.info(result, 'retention applied');
    return result;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    await this.writeTail;
    await Promise.all(this.inflight);
    await this.client.close();
    this.log.info('metric store closed');
  }
}

/** Creates missing collections and indexes, and applies changed TTLs with `collMod`. */
async function ensureCollections(db: Db, specs: readonly CollectionSpec[]): Promise<void> {
  const existing = new Map((await db.listCollections({}, { nameOnly: false }).toArray()).map((c) => [c.name, c]));
  for (const spec of specs) {
    const found = existing.get(spec.name);
    if (found === undefined) {
      await db.createCollection(spec.name, spec.options);
    } else if (spec.options.expireAfterSeconds !== undefined) {
      await db.command({ collMod: spec.name, expireAfterSeconds: spec.options.expireAfterSeconds });
    }
    const collection: Collection = db.collection(spec.name);
    for (const index of spec.indexes) {
      try {
        await collection.createIndexes([index]);
      } catch (err) {
        // An index of that name with another TTL: change the TTL in place.
        if (err instanceof MongoServerError && err.code === 85 && index.expireAfterSeconds !== undefined) {
          await db.command({ collMod: spec.name, index: { name: index.name, expireAfterSeconds: index.expireAfterSeconds } });
        } else {
          throw err;
        }
      }
    }
  }
}

/**
 * Connects to MongoDB 7.0+ and returns the store once every collection and index exists.
 * Fails (with the driver's error) when the server is unreachable within the driver's
 * server-selection timeout.
 */
export async function openMongoStore(options: MongoStoreOptions): Promise<RollupStore> {
  const log = options.logger.child({ component: 'metric-store', adapter: 'mongodb' });
  const retention = options.retention ?? DEFAULT_RETENTION;
  validateRetention(retention);
  if (options.uri === '') throw new StoreInputError('store.mongodbUri', 'must be set for the mongodb backend');
  const client = new MongoClient(options.uri, { serverSelectionTimeoutMS: 10_000 });
  try {
    await client.connect();
    const db = client.db(options.database);
    await ensureCollections(db, buildCollectionSpecs(retention, options.granularity ?? 'seconds'));
    const store = new MongoMetricStore(client, db, log, retention, options.batchLeaseMs ?? 60_000, options.now ?? Date.now);
    store.startJobs(options.compactionIntervalMs ?? 60_000, options.retentionIntervalMs ?? 3_600_000);
    log.info({ database: options.database }, 'metric store opened');
    return store;
  } catch (err) {
    await client.close().catch(() => undefined);
    throw err;
  }
}
