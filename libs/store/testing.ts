/**
 * An in-memory `MetricStore` for other libraries' and services' tests, in the spirit of
 * OpenTelemetry's in-memory exporter. It passes the same contract suite as the real
 * adapters (see testing.test.ts), so code tested against it behaves the same on DuckDB.
 * Not for production: nothing is persisted and nothing is bounded.
 */
import { matchesAll } from '../model/index.js';
import type { CompiledMatcher, Label, Matcher, SeriesSamples } from '../model/index.js';
import {
  checkColumns,
  checkTenant,
  columnsToSeries,
  compareLabels,
  compileMatchers,
  LimitTracker,
  normalizeRange,
  prepareBatch,
  sortedLabelNames,
  sortedLabelValues,
  toColumns,
} from './common.js';
import type { TimeRange } from './common.js';
import { StoreClosedError, StoreInputError } from './errors.js';
import type { MetricStore, SampleColumns, SelectLimits, SeriesColumns, WriteResult } from './port.js';

interface MemorySeries {
  readonly labels: Label[];
  readonly timestampsMs: number[];
  readonly values: number[];
}

interface TenantData {
  /** Keyed by the encoded canonical label set. */
  readonly series: Map<string, MemorySeries>;
  readonly batchIds: Set<string>;
}

class MemoryMetricStore implements MetricStore {
  private readonly tenants = new Map<string, TenantData>();
  private closed = false;

  async writeColumns(tenant: string, batchId: string, columns: SampleColumns): Promise<WriteResult> {
    this.checkOpen();
    checkColumns(tenant, batchId, columns);
    return this.write(tenant, batchId, columnsToSeries(columns));
  }

  async write(tenant: string, batchId: string, series: readonly SeriesSamples[]): Promise<WriteResult> {
    this.checkOpen();
    // Validate everything before touching state: a rejected batch must leave no trace.
    const batch = prepareBatch(tenant, batchId, series);
    let data = this.tenants.get(tenant);
    if (data === undefined) {
      data = { series: new Map(), batchIds: new Set() };
      this.tenants.set(tenant, data);
    }
    if (data.batchIds.has(batchId)) return { samplesWritten: 0, duplicate: true };
    for (const s of batch.series) {
      let stored = data.series.get(s.key);
      if (stored === undefined) {
        stored = { labels: s.labels, timestampsMs: [], values: [] };
        data.series.set(s.key, stored);
      }
      // A loop, not push(...spread): a spread of a very large series overflows the stack.
      for (let i = 0; i < s.timestampsMs.length; i++) {
        stored.timestampsMs.push(s.timestampsMs[i]);
        stored.values.push(s.values[i]);
      }
    }
    data.batchIds.add(batchId);
    return { samplesWritten: batch.sampleCount, duplicate: false };
  }

  async select(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
    limits?: SelectLimits,
  ): Promise<SeriesSamples[]> {
    this.checkOpen();
    const tracker = new LimitTracker(limits);
    const out: SeriesSamples[] = [];
    for (const { series, indexes } of this.matching(tenant, matchers, startMs, endMs)) {
      tracker.addSeries();
      tracker.addSamples(indexes.length);
      // Stable sort: samples sharing a timestamp keep their write order, as in DuckDB.
      indexes.sort((a, b) => series.timestampsMs[a] - series.timestampsMs[b]);
      out.push({
        labels: series.labels.map((l) => ({ ...l })),
        timestampsMs: indexes.map((i) => series.timestampsMs[i]),
        values: indexes.map((i) => series.values[i]),
      });
    }
    return out;
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
    this.checkOpen();
    const tracker = new LimitTracker(limits);
    return this.matching(tenant, matchers, startMs, endMs).map((m) => {
      tracker.addSeries();
      return m.series.labels.map((l) => ({ ...l }));
    });
  }

  async labelNames(tenant: string, matchers: readonly Matcher[], startMs: number, endMs: number): Promise<string[]> {
    this.checkOpen();
    return sortedLabelNames([...this.matching(tenant, matchers, startMs, endMs)].map((m) => m.series));
  }

  async labelValues(
    tenant: string,
    name: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
  ): Promise<string[]> {
    this.checkOpen();
    if (typeof name !== 'string') throw new StoreInputError('name', 'must be a string');
    return sortedLabelValues([...this.matching(tenant, matchers, startMs, endMs)].map((m) => m.series), name);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.tenants.clear();
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreClosedError();
  }

  /**
   * Matching series, sorted by label set, each with the indexes of its samples in range;
   * series with no sample in range are left out, as the port requires.
   */
  private matching(
    tenant: string,
    matchers: readonly Matcher[],
    startMs: number,
    endMs: number,
  ): { series: MemorySeries; indexes: number[] }[] {
    checkTenant(tenant);
    const compiled: CompiledMatcher[] = compileMatchers(matchers);
    const range: TimeRange | undefined = normalizeRange(startMs, endMs);
    const data = this.tenants.get(tenant);
    if (range === undefined || data === undefined) return [];
    const out: { series: MemorySeries; indexes: number[] }[] = [];
    for (const series of data.series.values()) {
      if (!matchesAll(series.labels, compiled)) continue;
      const indexes: number[] = [];
      series.timestampsMs.forEach((t, i) => {
        if (t >= range.startMs && t <= range.endMs) indexes.push(i);
      });
      if (indexes.length > 0) out.push({ series, indexes });
    }
    return out.sort((a, b) => compareLabels(a.series.labels, b.series.labels));
  }
}

/**
 * A fresh, empty in-memory `MetricStore`. Each call returns an independent store; `close()`
 * discards its data.
 */
export function createMemoryStore(): MetricStore {
  return new MemoryMetricStore();
}
