/**
 * The IngestService implementation: validate, publish to JetStream, answer after the
 * publish acknowledgement. Acknowledged means durable on the bus; aggregation stores it.
 */
import { randomUUID } from 'node:crypto';
import { create, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { Registry } from 'prom-client';
import type { Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { SampleBatchSchema, type SampleBatch } from '../../libs/contracts/telemesh/events/v1/events_pb.js';
import { WriteResultSchema } from '../../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import { type IngestService, WriteResponseSchema, type WriteRequest, type WriteResponse } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { InvalidArgumentError } from '../../libs/runtime/errors.js';
import { counter } from '../../libs/runtime/metrics.js';
import { requirePrincipal } from '../../libs/runtime/auth/index.js';
import type { IngestLimits } from './config.js';
import { validateSeries } from './validate.js';

/** What ingestion needs from the bus: a typed publish that resolves on JetStream's ack. */
export interface SamplePublisher {
  publish<D extends DescMessage>(subject: string, schema: D, message: MessageShape<D>, opts: { msgId: string }): Promise<unknown>;
  /** Largest message the bus accepts, bytes. */
  readonly maxPayloadBytes: number;
}

/** Dependencies of {@link IngestServiceImpl}. */
export interface IngestDeps {
  readonly publisher: SamplePublisher;
  readonly subjectFor: (tenant: string) => string;
  readonly limits: IngestLimits;
  readonly registry: Registry;
  readonly now?: () => number;
}

/** Implements `telemesh.ingest.v1.IngestService`. */
export class IngestServiceImpl implements Partial<ServiceImpl<typeof IngestService>> {
  readonly #deps: IngestDeps;
  readonly #samples;
  readonly #requests;

  constructor(deps: IngestDeps) {
    this.#deps = deps;
    this.#samples = counter(deps.registry, {
      name: 'telemesh_ingestion_samples_total',
      help: 'Samples received by ingestion, by tenant and outcome (accepted, rejected).',
      labelNames: ['tenant', 'outcome'],
    });
    this.#requests = counter(deps.registry, {
      name: 'telemesh_ingestion_batches_published_total',
      help: 'Sample batches published to the bus, by tenant.',
      labelNames: ['tenant'],
    });
  }

  /** Unary write: stores the valid samples, then reports the invalid ones as `invalid_argument`. */
  async write(req: WriteRequest, ctx: HandlerContext): Promise<WriteResponse> {
    const { tenant } = requirePrincipal(ctx);
    const limits = this.#deps.limits;
    if (req.series.length > limits.maxSeriesPerRequest) {
      throw new InvalidArgumentError(`series: ${req.series.length} series in one request, more than ingestion.maxSeriesPerRequest = ${limits.maxSeriesPerRequest}`, [
        { field: 'series', description: `more than ingestion.maxSeriesPerRequest = ${limits.maxSeriesPerRequest}` },
      ]);
    }
    let total = 0;
    for (const s of req.series) total += s.values.length;
    if (total > limits.maxSamplesPerRequest) {
      throw new InvalidArgumentError(`series: ${total} samples in one request, more than ingestion.maxSamplesPerRequest = ${limits.maxSamplesPerRequest}`, [
        { field: 'series', description: `more than ingestion.maxSamplesPerRequest = ${limits.maxSamplesPerRequest}` },
      ]);
    }
    const nowMs = (this.#deps.now ?? Date.now)();
    const v = validateSeries(req.series, limits, nowMs);
    if (v.series.length > 0) {
      const batchId = req.requestId !== '' ? `w:${req.requestId}` : randomUUID();
      await this.#publish(tenant, batchId, v.series, nowMs);
    }
    this.#samples.inc({ tenant, outcome: 'accepted' }, v.acceptedSamples);
    if (v.rejectedSamples > 0) this.#samples.inc({ tenant, outcome: 'rejected' }, v.rejectedSamples);
    const result = create(WriteResultSchema, {
      acceptedSamples: BigInt(v.acceptedSamples),
      rejectedSamples: BigInt(v.rejectedSamples),
      rejections: v.rejections,
    });
    if (v.rejections.length > 0) {
      const first = v.rejections[0]!.violation!;
      const more = v.rejections.length > 1 ? ` (and ${v.rejections.length - 1} more series with rejected samples)` : '';
      throw new InvalidArgumentError(
        `${first.field}: ${first.description}${more}; ${v.acceptedSamples} samples accepted, ${v.rejectedSamples} rejected`,
        v.rejections.map((r) => ({ field: r.violation!.field, description: r.violation!.description })),
        { detail: { desc: WriteResultSchema, value: result } },
      );
    }
    return create(WriteResponseSchema, { result });
  }

  /**
   * Publishes the series as one or more batches that each fit the bus's payload limit;
   * resolves when every part is acknowledged. Part ids derive from the batch id, so a
   * retried request dedupes part by part.
   */
  async #publish(tenant: string, batchId: string, series: Series[], nowMs: number): Promise<void> {
    const subject = this.#deps.subjectFor(tenant);
    const parts = splitBatch(
      create(SampleBatchSchema, { tenant, batchId, series, receivedAtMs: BigInt(nowMs) }),
      Math.floor(this.#deps.publisher.maxPayloadBytes * 0.9),
    );
    await Promise.all(parts.map((b) => this.#deps.publisher.publish(subject, SampleBatchSchema, b, { msgId: b.batchId })));
    this.#requests.inc({ tenant }, parts.length);
  }
}

/**
 * Splits a batch into parts whose encoding fits `maxBytes`, halving by series (and, for a
 * single huge series, by samples). Part ids are `<id>/<n>` when split.
 */
export function splitBatch(batch: SampleBatch, maxBytes: number): SampleBatch[] {
  const parts: SampleBatch[] = [];
  const visit = (series: Series[]): void => {
    const candidate = { ...batch, series };
    if (series.length === 0) return;
    if (toBinary(SampleBatchSchema, candidate).byteLength <= maxBytes) {
      parts.push(candidate);
      return;
    }
    if (series.length > 1) {
      const mid = Math.ceil(series.length / 2);
      visit(series.slice(0, mid));
      visit(series.slice(mid));
      return;
    }
    const s = series[0]!;
    if (s.values.length <= 1) throw new InvalidArgumentError('series: one sample is larger than the bus accepts', [{ field: 'series', description: 'sample too large' }]);
    const mid = Math.ceil(s.values.length / 2);
    visit([
      { ...s, timestampsMs: s.timestampsMs.slice(0, mid), values: s.values.slice(0, mid) },
      { ...s, timestampsMs: s.timestampsMs.slice(mid), values: s.values.slice(mid) },
    ]);
  };
  visit(batch.series);
  if (parts.length === 1) return parts;
  return parts.map((p, i) => ({ ...p, batchId: `${batch.batchId}/${i}` }));
}
