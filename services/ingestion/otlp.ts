/**
 * OTLP metrics → our model, following Prometheus' OTLP translator:
 * - `service.namespace`/`service.name` → `job` (`ns/name`), `service.instance.id` →
 *   `instance`; the other resource attributes go to one `target_info` series per resource.
 * - scope name/version → `otel_scope_name`/`otel_scope_version`.
 * - metric and attribute names sanitised (invalid characters → `_`; a leading digit gets
 *   a `key_` prefix for labels, `_` for metrics); unit suffixes added (`s` → `_seconds`,
 *   `By` → `_bytes`, `1` on gauges → `_ratio`, `x/y` → `_x_per_y`); monotonic
 *   cumulative sums get `_total`.
 * - gauge and non-monotonic sum → gauge; monotonic sum → counter; explicit histogram →
 *   `_bucket{le}`/`_sum`/`_count`; summary → `{quantile}`/`_sum`/`_count`.
 * - exponential histograms become classic histograms: buckets are merged down to scale 0
 *   (bounds at powers of 2, so the set of `le` series stays stable over time), negative
 *   and zero buckets folded into the cumulative counts.
 * - delta temporality: points are stored as they come (each value covers its own
 *   interval), typed gauge and without `_total`, so `sum_over_time` totals them; we keep
 *   no per-series state that a restart or a second replica would lose.
 * - points flagged "no recorded value" are skipped (Prometheus would write a staleness
 *   marker, which our store has no representation for).
 */
import { create } from '@bufbuild/protobuf';
import { MetricType, SeriesSchema, type Label, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import type { AnyValue, KeyValue } from '../../libs/contracts/opentelemetry/proto/common/v1/common_pb.js';
import {
  AggregationTemporality,
  type ExponentialHistogramDataPoint,
  type HistogramDataPoint,
  type Metric,
  type ResourceMetrics,
} from '../../libs/contracts/opentelemetry/proto/metrics/v1/metrics_pb.js';
import { METRIC_NAME_LABEL } from '../../libs/model/index.js';
import { classicHistogram, formatFloat, type ClassicSample } from './expand.js';

/** The OTLP request translated: one single-sample series per output sample. */
export interface Translated {
  readonly series: Series[];
  readonly startTimesMs: bigint[];
  /** OTLP data point each series came from (an ordinal, for counting rejected points). */
  readonly pointOf: number[];
  /** Field path of each data point ordinal. */
  readonly pointFields: string[];
  /** Data points dropped during translation (e.g. unspecified temporality), with why. */
  readonly dropped: Array<{ field: string; description: string }>;
}

const NO_RECORDED_VALUE = 1;

const UNIT_WORDS: Readonly<Record<string, string>> = {
  d: 'days',
  h: 'hours',
  min: 'minutes',
  s: 'seconds',
  ms: 'milliseconds',
  us: 'microseconds',
  ns: 'nanoseconds',
  By: 'bytes',
  KiBy: 'kibibytes',
  MiBy: 'mebibytes',
  GiBy: 'gibibytes',
  TiBy: 'tibibytes',
  KBy: 'kilobytes',
  MBy: 'megabytes',
  GBy: 'gigabytes',
  TBy: 'terabytes',
  m: 'meters',
  V: 'volts',
  A: 'amperes',
  J: 'joules',
  W: 'watts',
  g: 'grams',
  Cel: 'celsius',
  Hz: 'hertz',
  '%': 'percent',
};
const PER_UNIT_WORDS: Readonly<Record<string, string>> = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week', mo: 'month', y: 'year' };

/** Sanitises a label name the Prometheus way. */
export function sanitiseLabelName(name: string): string {
  let out = name.replace(/[^a-zA-Z0-9_]/g, '_');
  if (out === '') return '_';
  if (/^[0-9]/.test(out)) out = `key_${out}`;
  else if (out.startsWith('_') && !out.startsWith('__')) out = `key${out}`;
  return out;
}

function cleanWord(s: string): string {
  return s.replace(/[^a-zA-Z0-9]+/g, '_').replace(/^_+|_+$/g, '');
}

/** Builds the Prometheus metric name of an OTLP metric (sanitised, unit and type suffixes). */
export function prometheusMetricName(name: string, unit: string, kind: 'counter' | 'gauge' | 'other'): string {
  let base = name.replace(/[^a-zA-Z0-9_:]+/g, '_').replace(/_+/g, '_').replace(/^_+(?=.)|_+$/g, '');
  if (base === '') base = '_';
  if (/^[0-9]/.test(base)) base = `_${base}`;
  const parts: string[] = [];
  const u = unit.replace(/\{[^}]*\}/g, '').trim();
  if (u !== '' && u !== '1') {
    const [main = '', per = ''] = u.split('/', 2);
    const mainWord = cleanWord(UNIT_WORDS[main] ?? main);
    const perWord = cleanWord(PER_UNIT_WORDS[per] ?? per);
    if (mainWord !== '') parts.push(mainWord);
    if (perWord !== '') parts.push('per', perWord);
  }
  if (unit === '1' && kind === 'gauge') parts.push('ratio');
  // As Prometheus: `_total` goes last, and a unit already among the name's words is not
  // repeated (`io_bytes_total` in By stays `io_bytes_total`).
  let out = kind === 'counter' ? base.replace(/_total$/, '') || base : base;
  const words = new Set(out.split('_'));
  const suffix = parts.filter((p) => p === 'per' || !words.has(p)).join('_');
  if (suffix !== '' && suffix !== 'per' && !out.endsWith(`_${suffix}`)) out = `${out}_${suffix}`;
  if (kind === 'counter') out = `${out}_total`;
  return out;
}

/** Renders an attribute value as a label value (arrays and maps as JSON, as Prometheus does). */
export function anyValueToString(v: AnyValue | undefined): string {
  const val = v?.value;
  switch (val?.case) {
    case undefined:
      return '';
    case 'stringValue':
      return val.value;
    case 'boolValue':
      return val.value ? 'true' : 'false';
    case 'intValue':
      return val.value.toString();
    case 'doubleValue':
      return formatFloat(val.value);
    case 'bytesValue':
      return Buffer.from(val.value).toString('base64');
    case 'arrayValue':
      return JSON.stringify(val.value.values.map((x) => anyValueJson(x)));
    case 'kvlistValue':
      return JSON.stringify(Object.fromEntries(val.value.values.map((kv) => [kv.key, anyValueJson(kv.value)])));
  }
}

function anyValueJson(v: AnyValue | undefined): unknown {
  const val = v?.value;
  if (val?.case === 'intValue') return Number(val.value);
  if (val?.case === 'doubleValue' || val?.case === 'boolValue' || val?.case === 'stringValue') return val.value;
  return anyValueToString(v);
}

function label(name: string, value: string): Label {
  return { $typeName: 'telemesh.common.v1.Label', name, value };
}

/** Adds attributes as labels; names colliding after sanitising join their values with `;`. */
function addAttributes(into: Map<string, string>, attrs: readonly KeyValue[]): void {
  for (const kv of attrs) {
    const value = anyValueToString(kv.value);
    if (value === '') continue;
    const name = sanitiseLabelName(kv.key);
    const prev = into.get(name);
    into.set(name, prev === undefined ? value : `${prev};${value}`);
  }
}

function toLabels(base: ReadonlyMap<string, string>, attrs: readonly KeyValue[], name: string, extra?: Label): Label[] {
  const m = new Map(base);
  addAttributes(m, attrs);
  const out: Label[] = [];
  for (const [k, v] of m) if (k !== METRIC_NAME_LABEL && k !== 'le' && k !== 'quantile') out.push(label(k, v));
  out.push(label(METRIC_NAME_LABEL, name));
  if (extra) out.push(extra);
  return out;
}

const nsToMs = (ns: bigint): bigint => ns / 1_000_000n;

/** Translates OTLP resource metrics into series. */
export function translateOtlp(resourceMetrics: readonly ResourceMetrics[]): Translated {
  const out: Translated = { series: [], startTimesMs: [], pointOf: [], pointFields: [], dropped: [] };
  let point = -1;
  const emit = (labels: Label[], tsMs: bigint, startMs: bigint, value: number, type: MetricType) => {
    out.series.push(create(SeriesSchema, { labels, timestampsMs: [tsMs], values: [value], type }));
    out.startTimesMs.push(startMs);
    out.pointOf.push(point);
  };

  resourceMetrics.forEach((rm, r) => {
    const attrs = rm.resource?.attributes ?? [];
    const base = new Map<string, string>();
    let serviceName = '';
    let serviceNamespace = '';
    let instance = '';
    const rest: KeyValue[] = [];
    for (const kv of attrs) {
      if (kv.key === 'service.name') serviceName = anyValueToString(kv.value);
      else if (kv.key === 'service.namespace') serviceNamespace = anyValueToString(kv.value);
      else if (kv.key === 'service.instance.id') instance = anyValueToString(kv.value);
      else rest.push(kv);
    }
    const job = serviceNamespace !== '' && serviceName !== '' ? `${serviceNamespace}/${serviceName}` : serviceName;
    if (job !== '') base.set('job', job);
    if (instance !== '') base.set('instance', instance);
    let latestMs = 0n;

    rm.scopeMetrics.forEach((sm, s) => {
      const scoped = new Map(base);
      if (sm.scope?.name) scoped.set('otel_scope_name', sm.scope.name);
      if (sm.scope?.version) scoped.set('otel_scope_version', sm.scope.version);
      sm.metrics.forEach((metric, m) => {
        const prefix = `resource_metrics[${r}].scope_metrics[${s}].metrics[${m}]`;
        const last = translateMetric(metric, prefix, scoped, out, emit, () => ++point);
        if (last > latestMs) latestMs = last;
      });
    });

    // Prometheus' target_info: the resource's other attributes, once per resource.
    if (rest.length > 0 && latestMs > 0n && (job !== '' || instance !== '')) {
      point++;
      out.pointFields[point] = `resource_metrics[${r}].resource`;
      emit(toLabels(base, rest, 'target_info'), latestMs, 0n, 1, MetricType.GAUGE);
    }
  });
  return out;
}

function translateMetric(
  metric: Metric,
  prefix: string,
  base: ReadonlyMap<string, string>,
  out: Translated,
  emit: (labels: Label[], tsMs: bigint, startMs: bigint, value: number, type: MetricType) => void,
  nextPoint: () => number,
): bigint {
  let latest = 0n;
  const data = metric.data;
  // Numbers data point `j` (for error fields); its time in ms, or undefined when it has no recorded value.
  const recorded = (dp: { readonly flags: number; readonly timeUnixNano: bigint }, j: number): bigint | undefined => {
    out.pointFields[nextPoint()] = `${prefix}.${data.case ?? 'data'}.data_points[${j}]`;
    if ((dp.flags & NO_RECORDED_VALUE) !== 0) return undefined;
    const ts = nsToMs(dp.timeUnixNano);
    if (ts > latest) latest = ts;
    return ts;
  };
  switch (data.case) {
    case 'gauge':
    case 'sum': {
      let kind: 'counter' | 'gauge' = 'gauge';
      let type = MetricType.GAUGE;
      if (data.case === 'sum') {
        const t = data.value.aggregationTemporality;
        if (t === AggregationTemporality.UNSPECIFIED) {
          out.dropped.push({ field: `${prefix}.sum.aggregation_temporality`, description: `metric ${metric.name}: sum with unspecified aggregation temporality` });
          return 0n;
        }
        if (data.value.isMonotonic && t === AggregationTemporality.CUMULATIVE) {
          kind = 'counter';
          type = MetricType.COUNTER;
        }
      }
      const name = prometheusMetricName(metric.name, metric.unit, kind);
      data.value.dataPoints.forEach((dp, j) => {
        const ts = recorded(dp, j);
        if (ts === undefined) return;
        const v = dp.value.case === 'asInt' ? Number(dp.value.value) : dp.value.case === 'asDouble' ? dp.value.value : 0;
        emit(toLabels(base, dp.attributes, name), ts, nsToMs(dp.startTimeUnixNano), v, type);
      });
      return latest;
    }
    case 'histogram': {
      if (data.value.aggregationTemporality === AggregationTemporality.UNSPECIFIED) {
        out.dropped.push({ field: `${prefix}.histogram.aggregation_temporality`, description: `metric ${metric.name}: histogram with unspecified aggregation temporality` });
        return 0n;
      }
      const name = prometheusMetricName(metric.name, metric.unit, 'other');
      data.value.dataPoints.forEach((dp, j) => {
        const ts = recorded(dp, j);
        if (ts === undefined) return;
        emitHistogram(name, base, dp, ts, emit, out, `${prefix}.histogram.data_points[${j}]`);
      });
      return latest;
    }
    case 'exponentialHistogram': {
      if (data.value.aggregationTemporality === AggregationTemporality.UNSPECIFIED) {
        out.dropped.push({ field: `${prefix}.exponential_histogram.aggregation_temporality`, description: `metric ${metric.name}: histogram with unspecified aggregation temporality` });
        return 0n;
      }
      const name = prometheusMetricName(metric.name, metric.unit, 'other');
      data.value.dataPoints.forEach((dp, j) => {
        const ts = recorded(dp, j);
        if (ts === undefined) return;
        const { bounds, counts } = exponentialToClassic(dp);
        emitClassic(name, base, dp.attributes, ts, nsToMs(dp.startTimeUnixNano), classicHistogram(bounds, counts, dp.count, dp.count, dp.sum), emit);
      });
      return latest;
    }
    case 'summary': {
      const name = prometheusMetricName(metric.name, metric.unit, 'other');
      data.value.dataPoints.forEach((dp, j) => {
        const ts = recorded(dp, j);
        if (ts === undefined) return;
        const startMs = nsToMs(dp.startTimeUnixNano);
        for (const q of dp.quantileValues) emit(toLabels(base, dp.attributes, name, label('quantile', formatFloat(q.quantile))), ts, startMs, q.value, MetricType.SUMMARY);
        emit(toLabels(base, dp.attributes, `${name}_sum`), ts, startMs, dp.sum, MetricType.SUMMARY);
        emit(toLabels(base, dp.attributes, `${name}_count`), ts, startMs, Number(dp.count), MetricType.SUMMARY);
      });
      return latest;
    }
    case undefined:
      out.dropped.push({ field: prefix, description: `metric ${metric.name}: no data` });
      return 0n;
  }
}

function emitHistogram(
  name: string,
  base: ReadonlyMap<string, string>,
  dp: HistogramDataPoint,
  ts: bigint,
  emit: (labels: Label[], tsMs: bigint, startMs: bigint, value: number, type: MetricType) => void,
  out: Translated,
  field: string,
): void {
  const nb = dp.explicitBounds.length;
  const startMs = nsToMs(dp.startTimeUnixNano);
  // A histogram without buckets is legal OTLP (only count and sum): Prometheus writes
  // just the +Inf bucket, as here.
  if (dp.bucketCounts.length !== 0 && dp.bucketCounts.length !== nb + 1) {
    out.dropped.push({ field, description: `metric ${name}: ${dp.bucketCounts.length} bucket counts for ${nb} bounds` });
    return;
  }
  const bounds = dp.bucketCounts.length > 0 ? dp.explicitBounds : [];
  emitClassic(name, base, dp.attributes, ts, startMs, classicHistogram(bounds, dp.bucketCounts, dp.count, dp.count, dp.sum), emit);
}

function emitClassic(
  name: string,
  base: ReadonlyMap<string, string>,
  attrs: readonly KeyValue[],
  ts: bigint,
  startMs: bigint,
  samples: readonly ClassicSample[],
  emit: (labels: Label[], tsMs: bigint, startMs: bigint, value: number, type: MetricType) => void,
): void {
  for (const c of samples) {
    emit(toLabels(base, attrs, `${name}${c.suffix}`, c.le === undefined ? undefined : label('le', c.le)), ts, startMs, c.value, MetricType.HISTOGRAM);
  }
}

/**
 * Converts an exponential histogram into classic buckets at scale min(scale, 0): upper
 * bounds are powers of two (negated for negative buckets) and the zero bucket's
 * threshold; counts are per bucket (not cumulative), ascending by bound, +Inf excluded.
 */
export function exponentialToClassic(dp: ExponentialHistogramDataPoint): { bounds: number[]; counts: bigint[] } {
  const shift = dp.scale > 0 ? dp.scale : 0;
  const scale = dp.scale - shift;
  const base = 2 ** (2 ** -scale);
  const merge = (b: ExponentialHistogramDataPoint['positive']): Map<number, bigint> => {
    const m = new Map<number, bigint>();
    if (!b) return m;
    b.bucketCounts.forEach((c, k) => {
      if (c === 0n) return;
      const idx = Math.floor((b.offset + k) / 2 ** shift);
      m.set(idx, (m.get(idx) ?? 0n) + c);
    });
    return m;
  };
  const pos = merge(dp.positive);
  const neg = merge(dp.negative);
  const bounds: number[] = [];
  const counts: bigint[] = [];
  // Negative bucket idx holds values in [-base^(idx+1), -base^idx): upper bound -base^idx.
  for (const idx of [...neg.keys()].sort((a, b) => b - a)) {
    bounds.push(-(base ** idx));
    counts.push(neg.get(idx)!);
  }
  const zt = dp.zeroThreshold;
  if (dp.zeroCount > 0n || pos.size > 0 || neg.size > 0) {
    bounds.push(zt);
    counts.push(dp.zeroCount);
  }
  // Positive bucket idx holds values in (base^idx, base^(idx+1)]: upper bound base^(idx+1).
  for (const idx of [...pos.keys()].sort((a, b) => a - b)) {
    const ub = base ** (idx + 1);
    if (ub <= zt) {
      counts[counts.length - 1]! += pos.get(idx)!;
      continue;
    }
    bounds.push(ub);
    counts.push(pos.get(idx)!);
  }
  return { bounds, counts };
}
