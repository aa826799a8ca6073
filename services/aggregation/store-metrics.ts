/**
 * The metric store's own figures as self-metrics, read when `/metrics` is scraped: how
 * much the DuckDB head holds and how far back it answers, and how many sample reads it
 * answered against those that read stored rows and chunks — what `store.headSamples`
 * is tuned by. Nothing is registered for a store that reports nothing.
 */
import type { Counter, Gauge, Registry } from 'prom-client';
import { counter, gauge } from '../../libs/runtime/metrics.js';
import type { MetricStore } from '../../libs/store/index.js';

export function registerStoreMetrics(registry: Registry, store: MetricStore): void {
  if (store.stats === undefined) return;
  const stats = () => store.stats!();
  const samples: Gauge = gauge(registry, {
    name: 'telemesh_store_head_samples',
    help: 'Samples held in memory by the store head for queries over recent data.',
    collect: (): void => samples.set(stats().headSamples),
  });
  const coverage: Gauge = gauge(registry, {
    name: 'telemesh_store_head_coverage_seconds',
    help: 'How far back from now the store head answers queries (0: none).',
    collect: (): void => coverage.set(stats().headCoverageMs / 1000),
  });
  // Counters follow the store's running totals: each scrape adds what happened since.
  let seen = { head: 0, stored: 0 };
  const reads: Counter<'source'> = counter(registry, {
    name: 'telemesh_store_sample_reads_total',
    help: 'Sample reads by where they were answered: head (memory only) or stored (rows and chunks).',
    labelNames: ['source'],
    collect: (): void => {
      const s = stats();
      reads.inc({ source: 'head' }, s.headReads - seen.head);
      reads.inc({ source: 'stored' }, s.storedReads - seen.stored);
      seen = { head: s.headReads, stored: s.storedReads };
    },
  });
}
