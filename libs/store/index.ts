/**
 * Metric storage: the `MetricStore` port and its adapters. DuckDB (`openDuckDbStore`) is the
 * embedded default; MongoDB (`openMongoStore`, production) passes the same contract.
 *
 * Test helpers live in their own entry points so production code never loads them:
 * `libs/store/testing.js` (`createMemoryStore`, an in-memory fake),
 * `libs/store/contract.js` (`runMetricStoreContract`, the suite every adapter passes; it
 * imports node:test), and `libs/store/rollup-contract.js` (`runRollupStoreContract`, for
 * adapters with rollup tiers).
 */
export type { MetricStore, SampleColumns, SelectLimits, SeriesColumns, StoreStats, WriteResult } from './port.js';
export { StoreClosedError, StoreInputError, StoreLimitError } from './errors.js';
export type { StoreLimitName } from './errors.js';
export { seriesId } from './series-id.js';
export { DUCKDB_SCHEMA_VERSION, openDuckDbStore } from './duckdb.js';
export type { DuckDbStoreOptions } from './duckdb.js';
export { measureBytesPerSample } from './measure.js';
export type { StorageMeasurement } from './measure.js';
export { openMongoStore } from './mongodb.js';
export type { MongoGranularity, MongoStoreOptions } from './mongodb.js';
export {
  aggregateWindows,
  DEFAULT_RETENTION,
  DEFAULT_TIER_SPEC,
  mergeWindows,
  parseDuration,
  parseTierSpec,
  pickTier,
  validateRetention,
  windowStart,
} from './rollup.js';
export type {
  CompactionResult,
  RetentionPolicy,
  RetentionResult,
  RollupSeries,
  RollupStore,
  RollupTier,
  RollupWindow,
} from './rollup.js';
export { DEFAULT_RELATIVE_ACCURACY, QuantileSketch } from './sketch.js';
