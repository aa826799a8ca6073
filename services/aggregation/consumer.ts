/**
 * The sample consumer: batches from `telemesh.samples.v1.<tenant>` into the store,
 * acknowledged only after the write. The store skips a batch id it already holds, so a
 * redelivery after a crash between write and ack changes nothing.
 */
import { trace } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import { SampleBatchSchema } from '../../libs/contracts/telemesh/events/v1/events_pb.js';
import { PoisonMessageError, type Bus, type ConsumerHandle } from '../../libs/bus/index.js';
import { counter } from '../../libs/runtime/metrics.js';
import type { Logger } from '../../libs/runtime/logger.js';
import type { MetricStore } from '../../libs/store/index.js';
import { seriesFromWire } from './convert.js';

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
  return bus.consume('aggregation', SampleBatchSchema, async (batch, meta) => {
    if (batch.tenant !== meta.tenant) {
      throw new PoisonMessageError(`batch tenant ${JSON.stringify(batch.tenant)} does not match subject tenant ${JSON.stringify(meta.tenant)}`);
    }
    const series = seriesFromWire(batch.series);
    const result = await tracer.startActiveSpan('store.write', { attributes: { 'telemesh.tenant': batch.tenant, 'telemesh.batch_id': batch.batchId } }, async (span) => {
      try {
        return await store.write(batch.tenant, batch.batchId, series);
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
  });
}
