/**
 * Shared domain model: label sets, matchers, the naming rules every service applies the
 * same way, and the encoded form of series that ingestion, aggregation and the agent SDK
 * read and write (series-wire.ts). No I/O, so every lib and service may depend on it.
 */
export * from './labels.js';
export * from './matchers.js';
export * from './series.js';
export * from './wire.js';
export * from './series-wire.js';
