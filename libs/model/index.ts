/**
 * Shared domain model: label sets, matchers and the naming rules every service applies
 * the same way. Plain types, no I/O, so every lib and service may depend on it.
 */
export * from './labels.js';
export * from './matchers.js';
export * from './series.js';
export * from './wire.js';
