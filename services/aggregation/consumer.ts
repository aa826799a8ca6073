/**
 * The sample consumer: batches from `telemesh.samples.v1.<tenant>` into the store,
 * acknowledged only after the write. The store skips a batch id it already holds, so a
 * redelivery after a crash between write and ack changes nothing.
 *
 * Batches are read through {@link SampleBatchFrameSchema} (series left encoded) and
 * decoded by one {@link SeriesDecoder}, which interns label sets across batches.
 */
import { trace } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import { PoisonMessageError, type Bus, type ConsumerHandle } from '../../libs/bus/index.js';
import { counter } from '../../libs/runtime/metrics.js';
import type { Logger } from '../../libs/runtime/logger.js';
import type { MetricStore, SampleColumns } from '../../libs/store/index.js';
import { MalformedSeriesError, SampleBatchFrameSchema, type SampleBatchFrame, type SeriesSamples } from '../../libs/model/index.js';
import { SeriesDecoder } from './batch-wire.js';

/** Starts consuming sample batches into `store`. */
export async function startSampleConsumer(bus: Bus, store: MetricStore, registry: Registry, logger: Logger): Promise<ConsumerHandle> {
  const written = counter(registry, {
    name: 'telemesh_aggregation_samples_written_total',
    help: 'Samples written to the metric store, by tenant.',
    labelNames: ['tenant'],
  });
  const duplicates = counter(registry, {
    name: 'telemesh_aggregation_duplicate_batches_total',
    help: 'Redelivered batches recognised as already stored and skipped.',
  });
  const tracer = trace.getTracer('telemesh-aggregation');
  const decoder = new SeriesDecoder();
  return bus.consume('aggregation', SampleBatchFrameSchema, async (message, meta) => {
    const batch = message as unknown as SampleBatchFrame;
    if (batch.tenant !== meta.tenant) {
      throw new PoisonMessageError(`batch tenant ${JSON.stringify(batch.tenant)} does not match subject tenant ${JSON.stringify(meta.tenant)}`);
    }
    // Columns when the store takes them (no object per series; see `writeColumns`).
    const columnar = store.writeColumns !== undefined;
    let series: SeriesSamples[] | undefined;
    let columns: SampleColumns | undefined;
    try {
      if (columnar) columns = decoder.decodeColumns(batch.series);
      else series = decoder.decodeAll(batch.series);
    } catch (err) {
      if (err instanceof MalformedSeriesError) throw new PoisonMessageError(`cannot decode a series of batch ${JSON.stringify(batch.batchId)}: ${err.message}`, { cause: err });
      throw err;
    }
    const result = await tracer.startActiveSpan('store.write', { attributes: { 'telemesh.tenant': batch.tenant, 'telemesh.batch_id': batch.batchId } }, async (span) => {
      try {
        return columns !== undefined ? await store.writeColumns!(batch.tenant, batch.batchId, columns) : await store.write(batch.tenant, batch.batchId, series!);
      } finally {
        span.end();
      }
    });
    if (result.duplicate) {
      duplicates.inc();
      logger.debug({ batch_id: batch.batchId, tenant: batch.tenant }, 'duplicate batch skipped');
    } else {
      written.inc({ tenant: batch.tenant }, result.samplesWritten);
    }
  },
  // Two batches in flight: the next one is decoded while DuckDB commits the previous one.
  // Each handler calls the store before it first yields, so DuckDB, which queues writes
  // in call order, stores batches in stream order; every store accepts late samples. Measured end to end, interleaved: 277k against 273k and 254k
  // against 229k samples/s (single figures carry about ±10% here).
  { concurrency: 2 });
}
