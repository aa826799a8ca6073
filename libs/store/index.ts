/**
 * Metric storage: the `MetricStore` port and its adapters. DuckDB (`openDuckDbStore`) is the
 * embedded default; MongoDB (production) comes later and must pass the same contract.
 *
 * Test helpers live in their own entry points so production code never loads them:
 * `libs/store/testing.js` (`createMemoryStore`, an in-memory fake) and
 * `libs/store/contract.js` (`runMetricStoreContract`, the suite every adapter passes; it
 * imports node:test).
 */
export type { MetricStore, SelectLimits, WriteResult } from './port.js';
export { StoreClosedError, StoreInputError, StoreLimitError } from './errors.js';
export type { StoreLimitName } from './errors.js';
export { seriesId } from './series-id.js';
export { DUCKDB_SCHEMA_VERSION, openDuckDbStore } from './duckdb.js';
export type { DuckDbStoreOptions } from './duckdb.js';
