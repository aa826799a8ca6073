/**
 * Histograms and summaries of the native protocol, expanded into the plain series
 * Prometheus stores for them: classic histograms as `<name>_bucket{le}` (cumulative),
 * `<name>_sum`, `<name>_count`; summaries as `<name>{quantile}`, `<name>_sum`,
 * `<name>_count`. Each point becomes its own one-sample series, tagged with where it came
 * from so a rejection names the request field.
 */
import { create } from '@bufbuild/protobuf';
import { MetricType, SeriesSchema, type Label, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import type { HistogramSeries, SummarySeries } from '../../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import { METRIC_NAME_LABEL } from '../../libs/model/index.js';

/** Series produced from histograms or summaries, with their origin and start times. */
export interface Expanded {
  readonly series: Series[];
  /** Start time per series, Unix ms (0 = unknown). */
  readonly startTimesMs: bigint[];
  /** Request field each series came from, e.g. `histograms[2].points[0]`. */
  readonly fields: string[];
  /** Problems that made a whole point unusable: histogram index, field, samples lost. */
  readonly problems: Array<{ index: number; field: string; description: string; samples: number }>;
}

/** Formats a bucket bound or quantile the way Prometheus does (`+Inf`, shortest float). */
export function formatFloat(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  return String(v);
}

function withName(labels: readonly Label[], name: string, extra?: Label): Label[] {
  const out: Label[] = [];
  for (const l of labels) if (l.name !== METRIC_NAME_LABEL) out.push(l);
  out.push({ $typeName: 'telemesh.common.v1.Label', name: METRIC_NAME_LABEL, value: name });
  if (extra) out.push(extra);
  return out;
}

function one(labels: Label[], ts: bigint, value: number, type: MetricType): Series {
  return create(SeriesSchema, { labels, timestampsMs: [ts], values: [value], type });
}

function baseName(labels: readonly Label[]): string {
  for (const l of labels) if (l.name === METRIC_NAME_LABEL) return l.value;
  return '';
}

/** One Prometheus series value of a classic histogram point. */
export interface ClassicSample {
  readonly suffix: '_bucket' | '_sum' | '_count';
  /** The `le` label of a bucket. */
  readonly le?: string;
  readonly value: number;
}

/**
 * The classic Prometheus form of one histogram point, shared by the native protocol and
 * OTLP: cumulative `_bucket{le}` per finite bound, `_bucket{le="+Inf"}` = `infCount`,
 * `_sum` (when known) and `_count`. `counts[k]` is the non-cumulative count of bucket k.
 */
export function classicHistogram(bounds: readonly number[], counts: readonly bigint[], infCount: bigint, count: bigint, sum: number | undefined): ClassicSample[] {
  const out: ClassicSample[] = [];
  let cum = 0n;
  for (let k = 0; k < bounds.length; k++) {
    cum += counts[k]!;
    out.push({ suffix: '_bucket', le: formatFloat(bounds[k]!), value: Number(cum) });
  }
  out.push({ suffix: '_bucket', le: '+Inf', value: Number(infCount) });
  if (sum !== undefined) out.push({ suffix: '_sum', value: sum });
  out.push({ suffix: '_count', value: Number(count) });
  return out;
}

/** Expands native histograms and summaries into Prometheus-style series. */
export function expandHistogramsAndSummaries(histograms: readonly HistogramSeries[], summaries: readonly SummarySeries[]): Expanded {
  const out: Expanded = { series: [], startTimesMs: [], fields: [], problems: [] };
  const push = (s: Series, start: bigint, field: string) => {
    out.series.push(s);
    out.startTimesMs.push(start);
    out.fields.push(field);
  };
  histograms.forEach((h, i) => {
    const name = baseName(h.labels);
    h.points.forEach((p, j) => {
      const field = `histograms[${i}].points[${j}]`;
      const nb = p.upperBounds.length;
      if (p.bucketCounts.length !== nb + 1) {
        out.problems.push({ index: i, field: `${field}.bucket_counts`, description: `has ${p.bucketCounts.length} counts for ${nb} upper bounds; needs one per bound plus one for +Inf`, samples: nb + 3 });
        return;
      }
      for (let k = 1; k < nb; k++) {
        if (!(p.upperBounds[k]! > p.upperBounds[k - 1]!)) {
          out.problems.push({ index: i, field: `${field}.upper_bounds[${k}]`, description: 'upper bounds must be strictly ascending', samples: nb + 3 });
          return;
        }
      }
      const total = p.bucketCounts.reduce((a, b) => a + b, 0n);
      for (const c of classicHistogram(p.upperBounds, p.bucketCounts, total, p.count, p.sum)) {
        const le = c.le === undefined ? [] : [{ $typeName: 'telemesh.common.v1.Label' as const, name: 'le', value: c.le }];
        push(one(withName(h.labels, `${name}${c.suffix}`, ...le), p.timestampMs, c.value, MetricType.HISTOGRAM), p.startTimeMs, field);
      }
    });
  });
  summaries.forEach((s, i) => {
    const name = baseName(s.labels);
    s.points.forEach((p, j) => {
      const field = `summaries[${i}].points[${j}]`;
      for (const q of p.quantiles) {
        push(one(withName(s.labels, name, { $typeName: 'telemesh.common.v1.Label', name: 'quantile', value: formatFloat(q.quantile) }), p.timestampMs, q.value, MetricType.SUMMARY), p.startTimeMs, field);
      }
      push(one(withName(s.labels, `${name}_sum`), p.timestampMs, p.sum, MetricType.SUMMARY), p.startTimeMs, field);
      push(one(withName(s.labels, `${name}_count`), p.timestampMs, Number(p.count), MetricType.SUMMARY), p.startTimeMs, field);
    });
  });
  return out;
}
