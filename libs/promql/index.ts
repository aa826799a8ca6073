/**
 * PromQL for Telemesh, built on the grammar Prometheus publishes
 * (`@prometheus-io/lezer-promql`). Today: vector selectors and sample lines; the
 * expression evaluator will grow from the same tree helpers in parse.ts.
 */
export { PromqlSyntaxError } from './errors.js';
export { parseSelector } from './selector.js';
export { parseSampleLine } from './sample.js';
export type { ParsedSample } from './sample.js';
