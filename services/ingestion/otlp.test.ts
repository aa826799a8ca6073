import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { MetricType } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { HistogramSeriesSchema, SummarySeriesSchema } from '../../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import {
  AggregationTemporality,
  ExponentialHistogramDataPointSchema,
  ResourceMetricsSchema,
} from '../../libs/contracts/opentelemetry/proto/metrics/v1/metrics_pb.js';
import { expandHistogramsAndSummaries } from './expand.js';
import { exponentialToClassic, prometheusMetricName, sanitiseLabelName, translateOtlp } from './otlp.js';

const labels = (s: { labels: Array<{ name: string; value: string }> }) => Object.fromEntries(s.labels.map((l) => [l.name, l.value]));
const T = 1_700_000_000_000n;
const ns = (ms: bigint) => ms * 1_000_000n;
const str = (key: string, v: string) => ({ key, value: { value: { case: 'stringValue' as const, value: v } } });

describe('OTLP names', () => {
  it('sanitises and adds unit and type suffixes as Prometheus does', () => {
    assert.equal(prometheusMetricName('http.server.duration', 's', 'other'), 'http_server_duration_seconds');
    assert.equal(prometheusMetricName('http.server.requests', '{request}', 'counter'), 'http_server_requests_total');
    assert.equal(prometheusMetricName('process.cpu.time', 's', 'counter'), 'process_cpu_time_seconds_total');
    assert.equal(prometheusMetricName('io_bytes_total', 'By', 'counter'), 'io_bytes_total');
    assert.equal(prometheusMetricName('io.read', 'By', 'counter'), 'io_read_bytes_total');
    assert.equal(prometheusMetricName('cpu.utilization', '1', 'gauge'), 'cpu_utilization_ratio');
    assert.equal(prometheusMetricName('net.throughput', 'By/s', 'gauge'), 'net_throughput_bytes_per_second');
    assert.equal(prometheusMetricName('latency_seconds', 's', 'other'), 'latency_seconds', 'no doubled unit');
    assert.equal(prometheusMetricName('9lives', '', 'gauge'), '_9lives');
    assert.equal(sanitiseLabelName('http.method'), 'http_method');
    assert.equal(sanitiseLabelName('1st'), 'key_1st');
    assert.equal(sanitiseLabelName('_x'), 'key_x');
    assert.equal(sanitiseLabelName('__x'), '__x');
  });
});

describe('translateOtlp', () => {
  const rm = create(ResourceMetricsSchema, {
    resource: { attributes: [str('service.name', 'api'), str('service.namespace', 'shop'), str('service.instance.id', 'i-1'), str('host.name', 'h1')] },
    scopeMetrics: [
      {
        scope: { name: 'lib', version: '2' },
        metrics: [
          { name: 'requests', unit: '1', data: { case: 'sum', value: { isMonotonic: true, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPoints: [{ timeUnixNano: ns(T), startTimeUnixNano: ns(T - 60_000n), value: { case: 'asInt', value: 7n }, attributes: [str('http.route', '/x')] }] } } },
          { name: 'inflight', data: { case: 'sum', value: { isMonotonic: false, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPoints: [{ timeUnixNano: ns(T), value: { case: 'asDouble', value: -1 } }] } } },
          { name: 'delta.count', data: { case: 'sum', value: { isMonotonic: true, aggregationTemporality: AggregationTemporality.DELTA, dataPoints: [{ timeUnixNano: ns(T), value: { case: 'asInt', value: 3n } }] } } },
          { name: 'broken', data: { case: 'sum', value: { isMonotonic: true, dataPoints: [{ timeUnixNano: ns(T), value: { case: 'asInt', value: 3n } }] } } },
          { name: 'lat', unit: 'ms', data: { case: 'histogram', value: { aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPoints: [{ timeUnixNano: ns(T), count: 4n, sum: 10, explicitBounds: [1, 5], bucketCounts: [1n, 2n, 1n] }] } } },
          { name: 'rpc', data: { case: 'summary', value: { dataPoints: [{ timeUnixNano: ns(T), count: 2n, sum: 3, quantileValues: [{ quantile: 0.99, value: 2.5 }] }] } } },
          { name: 'stale', data: { case: 'gauge', value: { dataPoints: [{ timeUnixNano: ns(T), flags: 1, value: { case: 'asDouble', value: 1 } }] } } },
        ],
      },
    ],
  });
  const t = translateOtlp([rm]);
  const byName = new Map<string, Array<(typeof t.series)[number]>>();
  for (const s of t.series) {
    const n = labels(s).__name__!;
    byName.set(n, [...(byName.get(n) ?? []), s]);
  }

  it('maps resource to job/instance, scope to otel_scope_*, attributes to labels, and start times', () => {
    const c = byName.get('requests_total')![0]!;
    assert.deepEqual(labels(c), { job: 'shop/api', instance: 'i-1', otel_scope_name: 'lib', otel_scope_version: '2', http_route: '/x', __name__: 'requests_total' });
    assert.equal(c.type, MetricType.COUNTER);
    assert.deepEqual(c.timestampsMs, [T]);
    assert.deepEqual(c.values, [7]);
    assert.equal(t.startTimesMs[t.series.indexOf(c)], T - 60_000n);
    const info = byName.get('target_info')![0]!;
    assert.equal(labels(info).host_name, 'h1');
  });

  it('maps non-monotonic sums to gauges and keeps delta sums as they come, without _total', () => {
    assert.equal(byName.get('inflight')![0]!.type, MetricType.GAUGE);
    assert.deepEqual(byName.get('delta_count')![0]!.values, [3]);
    assert.equal(byName.get('delta_count_total'), undefined);
    assert.deepEqual(t.dropped.map((d) => d.field), ['resource_metrics[0].scope_metrics[0].metrics[3].sum.aggregation_temporality']);
    assert.equal(byName.get('stale'), undefined, 'no recorded value: skipped');
  });

  it('maps histograms to cumulative _bucket{le}, _sum, _count and summaries to quantiles', () => {
    assert.deepEqual(byName.get('lat_milliseconds_bucket')!.map((s) => [labels(s).le, s.values[0]]), [['1', 1], ['5', 3], ['+Inf', 4]]);
    assert.deepEqual(byName.get('lat_milliseconds_sum')![0]!.values, [10]);
    assert.deepEqual(byName.get('lat_milliseconds_count')![0]!.values, [4]);
    assert.deepEqual(byName.get('rpc')!.map((s) => [labels(s).quantile, s.values[0]]), [['0.99', 2.5]]);
    assert.deepEqual(byName.get('rpc_count')![0]!.values, [2]);
  });

  it('converts exponential histograms to classic buckets at powers of two', () => {
    // scale 1: base √2. Positive index 0 → (1, √2], 1 → (√2, 2], 2 → (2, 2√2], 3 → (2√2, 4].
    const dp = create(ExponentialHistogramDataPointSchema, {
      scale: 1,
      count: 8n,
      zeroCount: 1n,
      positive: { offset: 0, bucketCounts: [1n, 2n, 3n, 0n] },
      negative: { offset: 0, bucketCounts: [1n] },
    });
    const { bounds, counts } = exponentialToClassic(dp);
    assert.deepEqual(bounds, [-1, 0, 2, 4]);
    assert.deepEqual(counts, [1n, 1n, 3n, 3n]);
  });
});

describe('native histograms and summaries', () => {
  it('expand into Prometheus series and report malformed points', () => {
    const x = expandHistogramsAndSummaries(
      [
        create(HistogramSeriesSchema, { labels: [{ name: '__name__', value: 'h' }, { name: 'a', value: '1' }], points: [{ timestampMs: 5n, startTimeMs: 1n, upperBounds: [1, 2], bucketCounts: [1n, 1n, 1n], sum: 4, count: 3n }] }),
        create(HistogramSeriesSchema, { labels: [{ name: '__name__', value: 'bad' }], points: [{ timestampMs: 5n, upperBounds: [2, 1], bucketCounts: [1n, 1n, 1n] }] }),
      ],
      [create(SummarySeriesSchema, { labels: [{ name: '__name__', value: 's' }], points: [{ timestampMs: 5n, quantiles: [{ quantile: 0.5, value: 9 }], sum: 1, count: 1n }] })],
    );
    const got = x.series.map((s) => `${labels(s).__name__}${labels(s).le ? `{le=${labels(s).le}}` : ''}${labels(s).quantile ? `{q=${labels(s).quantile}}` : ''}=${s.values[0]}`);
    assert.deepEqual(got, ['h_bucket{le=1}=1', 'h_bucket{le=2}=2', 'h_bucket{le=+Inf}=3', 'h_sum=4', 'h_count=3', 's{q=0.5}=9', 's_sum=1', 's_count=1']);
    assert.equal(x.startTimesMs[0], 1n);
    assert.equal(x.fields[0], 'histograms[0].points[0]');
    assert.deepEqual(x.problems.map((p) => p.field), ['histograms[1].points[0].upper_bounds[1]']);
  });
});
