/**
 * The one ingestion path every protocol shares (native Write and Stream, OTLP,
 * remote_write): request limits → rate limit → privacy scrubbing → validation →
 * active-series cap → publish to JetStream (bounded in-flight) → self-metrics. It
 * resolves only after JetStream acknowledged every accepted sample.
 */
import { randomUUID } from 'node:crypto';
import { create, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { FieldViolationSchema } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import type { Counter, Gauge, Registry } from 'prom-client';
import { LabelSchema, type Label, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { SampleBatchSchema, type SampleBatch } from '../../libs/contracts/telemesh/events/v1/events_pb.js';
import { SeriesRejectionSchema, type SeriesRejection } from '../../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import {
  canonicalLabels,
  EncodedLabelTable,
  MalformedSeriesError,
  metricName,
  readLabels,
  SampleBatchFrameSchema,
  SeriesScanner,
  type SampleBatchFrame,
} from '../../libs/model/index.js';
import { InvalidArgumentError, LimitExceededError, UnavailableError } from '../../libs/runtime/errors.js';
import { counter, gauge } from '../../libs/runtime/metrics.js';
import { parseTenantOverrides, type IngestLimits } from './config.js';
import { ActiveSeries, InflightGate, seriesKey, TokenBucket, type ActiveEntry } from './limits.js';
import { createScrubber, type Scrubber, type ScrubReason } from './scrub.js';
import { checkLabels, isCanonical, sampleWindow, timestampProblem, type Problem, type RejectReason } from './validate.js';
import { decodeSeriesMessage, encodeLabelFields, encodeSeries, encodeSeriesMessage, readValues } from './wire.js';

/** What ingestion needs from the bus: a typed publish that resolves on JetStream's ack. */
export interface SamplePublisher {
  publish<D extends DescMessage>(subject: string, schema: D, message: MessageShape<D>, opts: { msgId: string; timeoutMs?: number }): Promise<unknown>;
  /** Largest message the bus accepts, bytes. */
  readonly maxPayloadBytes: number;
}

/** Dependencies of {@link Ingester}. */
export interface IngesterDeps {
  readonly publisher: SamplePublisher;
  readonly subjectFor: (tenant: string) => string;
  readonly limits: IngestLimits;
  readonly registry: Registry;
  readonly now?: () => number;
}

/** One request's worth of series, from any protocol. */
export interface IngestInput {
  readonly series: readonly Series[];
  /** Start time per series, Unix ms (0 = unknown); parallel to `series`. */
  readonly startTimesMs?: readonly bigint[];
  /** Field path of series `i` in the protocol's own request, for rejection messages. */
  readonly fieldOf?: (i: number) => string;
  /**
   * Idempotency key from the client (request or batch id). A replay with the same key is
   * acknowledged but stored once (JetStream's duplicate window).
   */
  readonly idempotencyKey?: string;
  /** Protocol label of the self-metrics: `native`, `otlp`, `remote_write`. */
  readonly protocol: string;
}

/** {@link IngestInput} with each series still in its wire encoding (`telemesh.common.v1.Series`). */
export interface EncodedIngestInput extends Omit<IngestInput, 'series'> {
  readonly series: readonly Uint8Array[];
}

/** What happened to one request. */
export interface IngestOutcome {
  readonly acceptedSamples: number;
  readonly rejectedSamples: number;
  readonly rejections: SeriesRejection[];
}

/** Too many samples are waiting for the bus in this process: `unavailable` over RPC, 429 over HTTP. */
export class OverloadedError extends UnavailableError {}

interface TenantState {
  readonly limits: IngestLimits;
  readonly bucket: TokenBucket;
  readonly active: ActiveSeries;
  /** Verdicts on label sets, by their encoding. */
  readonly verdicts: EncodedLabelTable<LabelVerdict>;
}

/**
 * Everything ingestion decides about one encoded label set: validity, scrubbing, canonical
 * order, identity. It depends only on the bytes, the tenant's limits and the scrub
 * settings, so it is computed once per distinct label set and looked up afterwards.
 */
interface LabelVerdict {
  /** Why the series is refused (field relative to the series), if it is. */
  readonly problem: Problem | undefined;
  /** One entry per label scrubbing changed, replayed into the counter per series. */
  readonly scrubbed: readonly ScrubReason[];
  /** The labels are canonical and untouched: the series may be published byte for byte. */
  readonly forward: boolean;
  /** Canonical (scrubbed) labels as Series field-1 entries, for series that are re-encoded. */
  readonly labelFields: Uint8Array;
  /** Active-series key ({@link seriesKey} of the canonical labels). */
  readonly key: number;
  readonly metric: string;
  /** The series' active-series entry once admitted (see ActiveSeries.admit). */
  active: ActiveEntry | undefined;
}

/**
 * Distinct label sets remembered per tenant. Each verdict holds the encoded labels twice
 * (a few hundred bytes in all), so this bounds the table near 50 MB per busy tenant;
 * past it the table starts over, costing one full check per series once.
 */
const MAX_VERDICTS = 200_000;

/** Runs the shared ingestion path. One per process. */
export class Ingester {
  readonly #deps: IngesterDeps;
  readonly #limits: IngestLimits;
  readonly #now: () => number;
  readonly #scrubber: Scrubber;
  readonly #scanner = new SeriesScanner();
  readonly #tenants = new Map<string, TenantState>();
  readonly #overrides: Map<string, IngestLimits>;
  readonly #inflight: InflightGate;
  readonly #samples: Counter<'tenant' | 'outcome' | 'protocol'>;
  readonly #rejected: Counter<'tenant' | 'reason'>;
  readonly #batches: Counter<'tenant'>;
  readonly #scrubbed: Counter<'tenant' | 'reason' | 'action'>;
  readonly #refused: Counter<'tenant' | 'reason'>;
  readonly #utilisation: Gauge<'tenant' | 'limit'>;
  readonly #activeGauge: Gauge<'tenant'>;
  readonly #inflightGauge: Gauge;
  #purgeTimer: NodeJS.Timeout | undefined;

  constructor(deps: IngesterDeps) {
    this.#deps = deps;
    this.#limits = deps.limits;
    this.#now = deps.now ?? Date.now;
    this.#scrubber = createScrubber(deps.limits);
    this.#overrides = parseTenantOverrides(deps.limits);
    this.#inflight = new InflightGate(deps.limits.maxInflightSamples);
    const r = deps.registry;
    this.#samples = counter(r, {
      name: 'telemesh_ingestion_samples_total',
      help: 'Samples received by ingestion, by tenant, outcome (accepted, rejected) and protocol.',
      labelNames: ['tenant', 'outcome', 'protocol'],
    });
    this.#rejected = counter(r, {
      name: 'telemesh_ingestion_rejected_samples_total',
      help: 'Samples rejected by validation or a per-series limit, by tenant and reason.',
      labelNames: ['tenant', 'reason'],
    });
    this.#batches = counter(r, {
      name: 'telemesh_ingestion_batches_published_total',
      help: 'Sample batches published to the bus, by tenant.',
      labelNames: ['tenant'],
    });
    this.#scrubbed = counter(r, {
      name: 'telemesh_ingestion_scrubbed_labels_total',
      help: 'Labels hashed or dropped by privacy scrubbing, by tenant, what looked sensitive (name, value) and action.',
      labelNames: ['tenant', 'reason', 'action'],
    });
    this.#refused = counter(r, {
      name: 'telemesh_ingestion_refused_requests_total',
      help: 'Whole requests refused before publishing, by tenant and reason (rate_limited, overloaded, bus_unavailable, too_large).',
      labelNames: ['tenant', 'reason'],
    });
    this.#utilisation = gauge(r, {
      name: 'telemesh_ingestion_limit_utilisation_ratio',
      help: 'How close each tenant is to each limit, 0 to 1 (ingestion_rate: burst in use; active_series; samples_per_request and series_per_request: of the last request).',
      labelNames: ['tenant', 'limit'],
    });
    this.#activeGauge = gauge(r, {
      name: 'telemesh_ingestion_active_series',
      help: 'Series with a sample within ingestion.activeSeriesWindowMs, by tenant (this replica).',
      labelNames: ['tenant'],
    });
    this.#inflightGauge = gauge(r, {
      name: 'telemesh_ingestion_inflight_samples',
      help: 'Samples being published to the bus right now (capped by ingestion.maxInflightSamples).',
    });
    const every = Math.min(60_000, Math.max(1000, Math.floor(deps.limits.activeSeriesWindowMs / 4)));
    this.#purgeTimer = setInterval(() => this.purge(), every);
    this.#purgeTimer.unref();
  }

  /** Forgets idle series and refreshes the utilisation gauges. */
  purge(): void {
    const now = this.#now();
    for (const [tenant, st] of this.#tenants) {
      st.active.purge(now);
      this.#activeGauge.set({ tenant }, st.active.size);
      if (st.limits.maxActiveSeries > 0) this.#utilisation.set({ tenant, limit: 'active_series' }, st.active.size / st.limits.maxActiveSeries);
      this.#utilisation.set({ tenant, limit: 'ingestion_rate' }, st.bucket.utilisation(now));
    }
  }

  /** Stops the purge timer. Idempotent. */
  close(): void {
    if (this.#purgeTimer) clearInterval(this.#purgeTimer);
    this.#purgeTimer = undefined;
  }

  #tenant(tenant: string, now: number): TenantState {
    let st = this.#tenants.get(tenant);
    if (!st) {
      const limits = this.#overrides.get(tenant) ?? this.#limits;
      st = {
        limits,
        bucket: new TokenBucket(limits.ratePerSecond, limits.burstSamples, now),
        active: new ActiveSeries(limits.maxActiveSeries, limits.activeSeriesWindowMs),
        verdicts: new EncodedLabelTable(MAX_VERDICTS),
      };
      this.#tenants.set(tenant, st);
    }
    return st;
  }

  /**
   * Ingests one request for `tenant`. Rejected series and samples are reported in the
   * outcome (the rest is stored); whole-request failures throw: {@link InvalidArgumentError}
   * (request limits, undecodable series), {@link LimitExceededError} (rate),
   * {@link UnavailableError} (bus unavailable or too much in flight), each with a retry
   * hint where retrying helps.
   */
  ingest(tenant: string, input: IngestInput): Promise<IngestOutcome> {
    // Protocols that build messages (OTLP, remote_write, expanded histograms) join the
    // encoded path here, so every protocol gets the same checks and the same batches.
    const encoded: Uint8Array[] = new Array(input.series.length);
    for (let i = 0; i < encoded.length; i++) encoded[i] = encodeSeriesMessage(input.series[i]!);
    return this.ingestEncoded(tenant, { ...input, series: encoded });
  }

  /** {@link ingest} for series still in their wire encoding (the native protocol). */
  async ingestEncoded(tenant: string, input: EncodedIngestInput): Promise<IngestOutcome> {
    const now = this.#now();
    const st = this.#tenant(tenant, now);
    const limits = st.limits;
    const series = input.series;
    const fieldOf = input.fieldOf ?? defaultField;
    if (series.length > limits.maxSeriesPerRequest) {
      this.#refused.inc({ tenant, reason: 'too_large' });
      throw new InvalidArgumentError(`series: ${series.length} series in one request, more than ingestion.maxSeriesPerRequest = ${limits.maxSeriesPerRequest}`, [
        { field: 'series', description: `more than ingestion.maxSeriesPerRequest = ${limits.maxSeriesPerRequest}` },
      ]);
    }
    const scanned = this.#scanAll(series, fieldOf);
    const total = scanned.totalValues;
    if (total > limits.maxSamplesPerRequest) {
      this.#refused.inc({ tenant, reason: 'too_large' });
      throw new InvalidArgumentError(`series: ${total} samples in one request, more than ingestion.maxSamplesPerRequest = ${limits.maxSamplesPerRequest}`, [
        { field: 'series', description: `more than ingestion.maxSamplesPerRequest = ${limits.maxSamplesPerRequest}` },
      ]);
    }
    this.#utilisation.set({ tenant, limit: 'series_per_request' }, series.length / limits.maxSeriesPerRequest);
    this.#utilisation.set({ tenant, limit: 'samples_per_request' }, total / limits.maxSamplesPerRequest);

    const wait = st.bucket.take(total, now);
    this.#utilisation.set({ tenant, limit: 'ingestion_rate' }, st.bucket.utilisation(now));
    if (wait > 0) {
      this.#refused.inc({ tenant, reason: 'rate_limited' });
      if (wait === Infinity) {
        throw new InvalidArgumentError(`series: ${total} samples in one request, more than the burst ingestion.burstSamples = ${limits.burstSamples}`, [
          { field: 'series', description: `more than ingestion.burstSamples = ${limits.burstSamples}` },
        ]);
      }
      throw new LimitExceededError(
        `ingestion rate limit of tenant ${tenant} reached (ingestion.ratePerSecond = ${limits.ratePerSecond}, ingestion.burstSamples = ${limits.burstSamples}); retry in ${wait} ms`,
        wait,
      );
    }

    const v = this.#validate(tenant, st, scanned, input.startTimesMs, fieldOf, now);
    if (v.rejectedSamples > 0) st.bucket.refund(v.rejectedSamples);
    const maxActive = limits.maxActiveSeries;
    if (maxActive > 0) this.#utilisation.set({ tenant, limit: 'active_series' }, st.active.size / maxActive);
    this.#activeGauge.set({ tenant }, st.active.size);

    if (v.series.length > 0) {
      if (!this.#inflight.tryAcquire(v.acceptedSamples)) {
        st.bucket.refund(v.acceptedSamples);
        this.#refused.inc({ tenant, reason: 'overloaded' });
        throw new OverloadedError(`ingestion is overloaded: ingestion.maxInflightSamples = ${limits.maxInflightSamples} samples are waiting for the bus; retry shortly`, 1000);
      }
      this.#inflightGauge.set(this.#inflight.inflight);
      try {
        const batchId = input.idempotencyKey ? input.idempotencyKey : randomUUID();
        await this.#publish(tenant, batchId, v.series, input.startTimesMs ? v.startTimesMs : [], now);
      } catch (err) {
        st.bucket.refund(v.acceptedSamples);
        if (err instanceof UnavailableError) this.#refused.inc({ tenant, reason: 'bus_unavailable' });
        throw err;
      } finally {
        this.#inflight.release(v.acceptedSamples);
        this.#inflightGauge.set(this.#inflight.inflight);
      }
    }
    const protocol = input.protocol;
    if (v.acceptedSamples > 0) this.#samples.inc({ tenant, outcome: 'accepted', protocol }, v.acceptedSamples);
    if (v.rejectedSamples > 0) {
      this.#samples.inc({ tenant, outcome: 'rejected', protocol }, v.rejectedSamples);
      v.rejections.forEach((r, i) => this.#rejected.inc({ tenant, reason: v.reasons[i]! }, r.rejectedSamples));
    }
    return { acceptedSamples: v.acceptedSamples, rejectedSamples: v.rejectedSamples, rejections: v.rejections };
  }

  /**
   * Scans every series once (before the rate limit, which needs the sample count), keeping
   * what validation needs in flat arrays. An undecodable series fails the whole request,
   * as an undecodable request always did.
   */
  #scanAll(series: readonly Uint8Array[], fieldOf: (i: number) => string): Scanned {
    const n = series.length;
    const sc = this.#scanner;
    const bufs: Uint8Array[] = new Array(n);
    const labelsStart = new Int32Array(n);
    const labelsEnd = new Int32Array(n);
    const tsFrom = new Int32Array(n + 1);
    const valueCount = new Int32Array(n);
    const type = new Int32Array(n);
    const ts: number[] = [];
    let totalValues = 0;
    for (let i = 0; i < n; i++) {
      let buf = series[i]!;
      try {
        sc.scan(buf);
        if (sc.scattered) {
          // Labels interleaved with samples: re-encode once so they are contiguous.
          buf = encodeSeriesMessage(decodeSeriesMessage(buf));
          sc.scan(buf);
        }
      } catch (err) {
        if (!(err instanceof MalformedSeriesError)) throw err;
        throw new InvalidArgumentError(`${fieldOf(i)}: not a valid Series: ${err.message}`, [{ field: fieldOf(i), description: `not a valid Series: ${err.message}` }]);
      }
      bufs[i] = buf;
      labelsStart[i] = sc.labelsStart;
      labelsEnd[i] = sc.labelsEnd;
      tsFrom[i] = ts.length;
      for (let j = 0; j < sc.tsCount; j++) ts.push(sc.ts[j]!);
      valueCount[i] = sc.valueCount;
      type[i] = sc.type;
      totalValues += sc.valueCount;
    }
    tsFrom[n] = ts.length;
    return { bufs, labelsStart, labelsEnd, tsFrom, ts, valueCount, type, totalValues };
  }

  /** The verdict on the labels of `buf[start, end)` for this tenant, from the table or computed. */
  #verdict(st: TenantState, buf: Uint8Array, start: number, end: number, field: string): LabelVerdict {
    const known = st.verdicts.find(buf, start, end);
    if (known !== undefined) return known;
    let labelsIn: Label[];
    try {
      labelsIn = readLabels(buf, start, end, makeLabel);
    } catch (err) {
      if (!(err instanceof MalformedSeriesError)) throw err;
      throw new InvalidArgumentError(`${field}.labels: ${err.message}`, [{ field: `${field}.labels`, description: err.message }]);
    }
    const scrubbed: ScrubReason[] = [];
    const labels = this.#scrubber.scrub(labelsIn, (reason) => scrubbed.push(reason));
    const problem = checkLabels(labels, 0, st.limits, () => '');
    const canonical = isCanonical(labels) ? labels : canonicalLabels(labels);
    return st.verdicts.add(buf, start, end, {
      problem,
      scrubbed,
      forward: labels === labelsIn && canonical === labels,
      labelFields: encodeLabelFields(canonical),
      key: seriesKey(canonical),
      metric: metricName(canonical),
      active: undefined,
    });
  }

  /**
   * Validation, privacy scrubbing and the active-series cap over scanned series, with the
   * rules of validate.ts. Series that pass unchanged keep their bytes.
   */
  #validate(tenant: string, st: TenantState, sc: Scanned, startTimesMs: readonly bigint[] | undefined, fieldOf: (i: number) => string, now: number): EncodedValidated {
    const limits = st.limits;
    const out: Uint8Array[] = [];
    const outStarts: bigint[] = [];
    const rejections: SeriesRejection[] = [];
    const reasons: RejectReason[] = [];
    let accepted = 0;
    let rejected = 0;
    const reject = (index: number, count: number, field: string, description: string, reason: RejectReason) => {
      rejected += count;
      reasons.push(reason);
      rejections.push(create(SeriesRejectionSchema, { seriesIndex: index, rejectedSamples: count, violation: create(FieldViolationSchema, { field, description }) }));
    };
    const { minTs, maxTs } = sampleWindow(limits, now);
    const action = limits.scrubAction;
    const ts = sc.ts;
    for (let i = 0; i < sc.bufs.length; i++) {
      const buf = sc.bufs[i]!;
      const from = sc.tsFrom[i]!;
      const tsCount = sc.tsFrom[i + 1]! - from;
      const valueCount = sc.valueCount[i]!;
      const n = Math.max(tsCount, valueCount);
      if (tsCount !== valueCount) {
        reject(i, n, `${fieldOf(i)}.values`, `has ${valueCount} values for ${tsCount} timestamps; they must pair up`, 'malformed');
        continue;
      }
      if (n === 0) continue;
      const verdict = this.#verdict(st, buf, sc.labelsStart[i]!, sc.labelsEnd[i]!, fieldOf(i));
      for (let k = 0; k < verdict.scrubbed.length; k++) this.#scrubbed.inc({ tenant, reason: verdict.scrubbed[k]!, action });
      if (verdict.problem !== undefined) {
        reject(i, n, fieldOf(i) + verdict.problem.field, verdict.problem.description, verdict.problem.reason);
        continue;
      }
      let clean = true;
      for (let j = from; j < from + n; j++) {
        const t = ts[j]!;
        if (t === 0 || t < minTs || t > maxTs) {
          clean = false;
          break;
        }
      }
      let keptTs: number[] | undefined;
      let keptValues: number[] | undefined;
      let count = n;
      if (!clean) {
        const values = readValues(buf);
        keptTs = [];
        keptValues = [];
        let firstBad: Problem | undefined;
        let bad = 0;
        for (let j = 0; j < n; j++) {
          let t = ts[from + j]!;
          if (t === 0) t = now;
          if (t < minTs || t > maxTs) {
            bad++;
            firstBad ??= timestampProblem(t, j, fieldOf(i), limits, now);
            continue;
          }
          keptTs.push(t);
          keptValues.push(values[j]!);
        }
        if (bad > 0) reject(i, bad, firstBad!.field, bad > 1 ? `${firstBad!.description} (and ${bad - 1} more samples of this series)` : firstBad!.description, firstBad!.reason);
        count = keptTs.length;
        if (count === 0) continue;
      }
      const active = st.active.admit(verdict.key, now, verdict.active);
      if (active === undefined) {
        reject(i, count, `${fieldOf(i)}.labels`, `series of metric ${JSON.stringify(verdict.metric)} not accepted: tenant ${tenant} has reached ingestion.maxActiveSeries = ${limits.maxActiveSeries} active series`, 'active_series');
        continue;
      }
      verdict.active = active;
      accepted += count;
      if (keptTs === undefined && verdict.forward) {
        out.push(buf);
      } else {
        out.push(encodeSeries(verdict.labelFields, keptTs ?? ts.slice(from, from + n), keptValues ?? readValues(buf), sc.type[i]!));
      }
      if (startTimesMs) outStarts.push(startTimesMs[i] ?? 0n);
    }
    return { series: out, startTimesMs: outStarts, acceptedSamples: accepted, rejectedSamples: rejected, rejections, reasons };
  }

  /**
   * Publishes the series as one or more batches that each fit the bus's payload limit;
   * resolves when every part is acknowledged. The Nats-Msg-Id is `<tenant>:<batch id>`
   * (ids come from clients, so two tenants may pick the same one), and part ids derive
   * from the batch id, so a retried request dedupes part by part.
   */
  async #publish(tenant: string, batchId: string, series: Uint8Array[], startTimesMs: bigint[], nowMs: number): Promise<void> {
    const subject = this.#deps.subjectFor(tenant);
    const parts = splitFrame({ tenant, batchId, series, receivedAtMs: BigInt(nowMs), startTimesMs }, Math.floor(this.#deps.publisher.maxPayloadBytes * 0.9));
    const timeoutMs = this.#limits.publishTimeoutMs;
    await Promise.all(
      parts.map((b) =>
        this.#deps.publisher.publish(subject, SampleBatchFrameSchema, { $typeName: SampleBatchFrameSchema.typeName, ...b } as MessageShape<DescMessage>, { msgId: `${tenant}:${b.batchId}`, timeoutMs }),
      ),
    );
    this.#batches.inc({ tenant }, parts.length);
  }
}

const defaultField = (i: number) => `series[${i}]`;

/** What {@link Ingester} keeps of a request's series after scanning them. */
interface Scanned {
  readonly bufs: Uint8Array[];
  readonly labelsStart: Int32Array;
  readonly labelsEnd: Int32Array;
  /** Series `i` has timestamps `ts[tsFrom[i] .. tsFrom[i + 1])`. */
  readonly tsFrom: Int32Array;
  readonly ts: number[];
  readonly valueCount: Int32Array;
  readonly type: Int32Array;
  readonly totalValues: number;
}

/** The outcome of validating encoded series. */
interface EncodedValidated {
  readonly series: Uint8Array[];
  readonly startTimesMs: bigint[];
  readonly acceptedSamples: number;
  readonly rejectedSamples: number;
  readonly rejections: SeriesRejection[];
  readonly reasons: RejectReason[];
}

const makeLabel = (name: string, value: string): Label => create(LabelSchema, { name, value });

/**
 * Splits a batch of encoded series into parts whose encoding fits `maxBytes`; sizes are
 * exact here (the series are already bytes). A series too big for one part is split by
 * samples through {@link splitBatch}. Part ids are `<id>/<n>` when split.
 */
export function splitFrame(batch: SampleBatchFrame, maxBytes: number): SampleBatchFrame[] {
  const withStart = batch.startTimesMs.length > 0;
  const budget = maxBytes - (40 + utf8Bound(batch.tenant) + utf8Bound(batch.batchId));
  const frameBound = (s: Uint8Array) => 1 + vlen(s.length) + s.length + (withStart ? 10 : 0);
  let fits = true;
  for (const s of batch.series) if (frameBound(s) > budget) fits = false;
  if (!fits) {
    // Rare (one series of tens of thousands of samples): take the message route.
    const parts = splitBatch(create(SampleBatchSchema, { ...batch, series: batch.series.map(decodeSeriesMessage) }), maxBytes);
    return parts.map((p) => ({ tenant: p.tenant, batchId: p.batchId, series: p.series.map(encodeSeriesMessage), receivedAtMs: p.receivedAtMs, startTimesMs: p.startTimesMs }));
  }
  const parts = packParts(batch, budget, frameBound);
  if (parts.length <= 1) return parts.length === 1 ? parts : [{ ...batch }];
  return parts.map((p, i) => ({ ...p, batchId: `${batch.batchId}/${i}` }));
}

/**
 * Packs `batch.series` in order into parts of at most `budget` bytes, each series
 * costing `sizeOf(series)`; start times stay with their series. A series larger than
 * `budget` is cut by `split` and each piece goes out in a part of its own.
 */
function packParts<S, B extends { readonly series: S[]; readonly startTimesMs: bigint[] }>(
  batch: B,
  budget: number,
  sizeOf: (s: S) => number,
  split: (s: S) => S[] = (s) => [s],
): B[] {
  const withStart = batch.startTimesMs.length > 0;
  const parts: B[] = [];
  let series: S[] = [];
  let starts: bigint[] = [];
  let used = 0;
  const flush = () => {
    if (series.length === 0) return;
    parts.push({ ...batch, series, startTimesMs: starts });
    series = [];
    starts = [];
    used = 0;
  };
  for (let i = 0; i < batch.series.length; i++) {
    const s = batch.series[i]!;
    const start = withStart ? (batch.startTimesMs[i] ?? 0n) : undefined;
    const size = sizeOf(s);
    if (size <= budget) {
      if (used + size > budget) flush();
      series.push(s);
      if (start !== undefined) starts.push(start);
      used += size;
      continue;
    }
    const pieces = split(s);
    flush();
    for (const piece of pieces) {
      series.push(piece);
      if (start !== undefined) starts.push(start);
      flush();
    }
  }
  flush();
  return parts;
}

/** UTF-8 bytes of `s`, at most: 1 per ASCII unit, 3 otherwise (a surrogate pair is 4 for 2 units). */
function utf8Bound(str: string): number {
  let n = str.length;
  for (let i = 0; i < str.length; i++) if (str.charCodeAt(i) > 0x7f) n += 2;
  return n;
}

/** Bytes of a varint length prefix of `n` (n < 2^35). */
function vlen(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

/** Bytes of an int64 varint, at most (exact below 2^53). */
function varint64(t: bigint): number {
  const n = Number(t);
  if (n < 0) return 10;
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  if (n < 0x800000000) return 5;
  if (n < 0x40000000000) return 6;
  if (n < 0x2000000000000) return 7;
  return 10;
}

/** Encoded bytes of one series inside a batch (plus its start time), at most. */
function seriesBound(s: Series, withStart: boolean): number {
  let body = 2; // type
  for (let i = 0; i < s.labels.length; i++) {
    const nb = utf8Bound(s.labels[i]!.name);
    const vb = utf8Bound(s.labels[i]!.value);
    const inner = 1 + vlen(nb) + nb + 1 + vlen(vb) + vb;
    body += 1 + vlen(inner) + inner;
  }
  let ts = 0;
  for (let j = 0; j < s.timestampsMs.length; j++) ts += varint64(s.timestampsMs[j]!);
  const vs = 8 * s.values.length;
  body += 1 + vlen(ts) + ts + 1 + vlen(vs) + vs;
  return 1 + vlen(body) + body + (withStart ? 10 + 4 : 0);
}

/** Worst-case bytes per sample when a series must be split by samples. */
const MAX_SAMPLE_BYTES = 18;

/**
 * Splits a batch into parts whose encoding fits `maxBytes`. Sizes come from an upper
 * bound computed from label lengths and sample counts, so nothing is encoded twice (the
 * bus encodes each part once); a single series too big for one part is split by samples.
 * Part ids are `<id>/<n>` when split. Start times stay with their series.
 */
export function splitBatch(batch: SampleBatch, maxBytes: number): SampleBatch[] {
  const withStart = batch.startTimesMs.length > 0;
  const header = 40 + utf8Bound(batch.tenant) + utf8Bound(batch.batchId);
  const budget = maxBytes - header;
  // One series larger than a part: its samples go out in chunks, each in its own part.
  const chunk = (s: Series): Series[] => {
    const labelBytes = seriesBound({ ...s, timestampsMs: [], values: [] }, withStart);
    const perPart = Math.floor((budget - labelBytes - 16) / MAX_SAMPLE_BYTES);
    if (perPart < 1) throw new InvalidArgumentError('series: one sample is larger than the bus accepts', [{ field: 'series', description: 'sample too large' }]);
    const chunks: Series[] = [];
    for (let from = 0; from < s.values.length; from += perPart) {
      chunks.push({ ...s, timestampsMs: s.timestampsMs.slice(from, from + perPart), values: s.values.slice(from, from + perPart) });
    }
    return chunks;
  };
  const parts = packParts(batch, budget, (s: Series) => seriesBound(s, withStart), chunk);
  if (parts.length === 1) return parts;
  return parts.map((p, i) => ({ ...p, batchId: `${batch.batchId}/${i}` }));
}
