/**
 * PromQL for Telemesh, built on the grammar Prometheus publishes
 * (`@prometheus-io/lezer-promql`): vector selectors, sample lines and the expression
 * evaluator (engine.ts), all reading the same syntax tree helpers in parse.ts.
 */
export { PromqlSyntaxError } from './errors.js';
export { parseSelector } from './selector.js';
export { parseSampleLine } from './sample.js';
export type { ParsedSample } from './sample.js';
export { instantQuery, rangeQuery, isStaleNaN, STALE_NAN, PromqlExecutionError, QueryLimitError, QueryTimeoutError } from './engine.js';
export type { EngineOptions, PromValue, Queryable, RollupPlan, SelectedSeries, RollupSeriesData, RollupSource, RollupWindowData } from './engine.js';
