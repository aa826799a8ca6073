import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { createRegistry } from '../../libs/runtime/metrics.js';
import { openDuckDbStore } from '../../libs/store/index.js';
import { registerStoreMetrics } from './store-metrics.js';

describe('store self-metrics', () => {
  it('shows what the head holds and which reads it answered, on a real DuckDB store', async () => {
    const store = await openDuckDbStore({ path: ':memory:', logger: pino({ level: 'silent' }), compactionIntervalMs: 0, retentionIntervalMs: 0 });
    try {
      const registry = createRegistry();
      registerStoreMetrics(registry, store);
      const now = Date.now();
      await store.write('t', 'b1', [{ labels: [{ name: '__name__', value: 'm' }], timestampsMs: [now - 2000, now - 1000], values: [1, 2] }]);
      await store.select('t', [], now - 60_000, now); // recent: the head
      await store.select('t', [], now - 30 * 86_400_000, now); // a month back: rows
      const text = await registry.metrics();
      assert.match(text, /^telemesh_store_head_samples 2$/m);
      assert.match(text, /^telemesh_store_sample_reads_total\{source="head"\} 1$/m);
      assert.match(text, /^telemesh_store_sample_reads_total\{source="stored"\} 1$/m);
      const coverage = Number(/^telemesh_store_head_coverage_seconds (\S+)$/m.exec(text)?.[1]);
      assert.ok(coverage > 0 && coverage <= 6 * 3600, `coverage ${coverage}`);
      // Counts add up across scrapes rather than restarting.
      await store.select('t', [], now - 60_000, now);
      assert.match(await registry.metrics(), /^telemesh_store_sample_reads_total\{source="head"\} 2$/m);
    } finally {
      await store.close();
    }
  });
});
