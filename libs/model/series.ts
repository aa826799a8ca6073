import type { Labels } from './labels.js';

/**
 * One series with its samples in columnar form. `timestampsMs[i]` (Unix milliseconds)
 * belongs to `values[i]`.
 */
export interface SeriesSamples {
  readonly labels: Labels;
  readonly timestampsMs: readonly number[];
  readonly values: readonly number[];
}
