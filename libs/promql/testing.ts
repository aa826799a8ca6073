/**
 * Fakes of this library's ports for other libraries' and services' tests.
 */
import { compileMatcher, matchesAll } from '../model/index.js';
import type { SeriesSamples } from '../model/index.js';
import type { Queryable } from './engine.js';

/**
 * An in-memory {@link Queryable} over fixed series, answering like the store: series
 * matching every matcher, with their samples in `[startMs, endMs]`, series without
 * samples there left out. Values are handed out in a Float64Array (typed as number[]) so
 * staleness markers keep their bits: V8 canonicalises NaNs stored in plain arrays.
 */
export function staticQueryable(series: readonly SeriesSamples[]): Queryable {
  return {
    select(matchers, startMs, endMs) {
      const compiled = matchers.map(compileMatcher);
      const out: SeriesSamples[] = [];
      for (const s of series) {
        if (!matchesAll(s.labels, compiled)) continue;
        const timestampsMs: number[] = [];
        const picked: number[] = [];
        s.timestampsMs.forEach((t, i) => {
          if (t >= startMs && t <= endMs) {
            timestampsMs.push(t);
            picked.push(i);
          }
        });
        // Copied through a typed array so staleness markers keep their bits (see preservingBits).
        const values = new Float64Array(picked.length);
        picked.forEach((i, k) => {
          values[k] = s.values[i] ?? NaN;
        });
        if (timestampsMs.length > 0) out.push({ labels: s.labels, timestampsMs, values: values as unknown as number[] });
      }
      return Promise.resolve(out);
    },
  };
}
