import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { SeriesSchema, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { SampleBatchSchema } from '../../libs/contracts/telemesh/events/v1/events_pb.js';
import type { SampleBatchFrame } from '../../libs/model/index.js';
import { loadConfig } from '../../libs/runtime/config.js';
import { createRegistry } from '../../libs/runtime/metrics.js';
import { splitBatch } from './ingest-service.js';
import { Ingester, type SamplePublisher } from './pipeline.js';

const limits = loadConfig().ingestion;
const NOW = 1_700_000_000_000;

function s(labels: Array<[string, string]>, samples: Array<[number, number]>): Series {
  return create(SeriesSchema, {
    labels: labels.map(([name, value]) => ({ name, value })),
    timestampsMs: samples.map(([t]) => BigInt(t)),
    values: samples.map(([, v]) => v),
  });
}

/**
 * The rules run where production runs them: through the Ingester's encoded path, with a
 * publisher that records what would reach the bus.
 */
async function validate(input: Series[], custom = limits) {
  const published: Series[] = [];
  const publisher: SamplePublisher = {
    maxPayloadBytes: 1 << 20,
    publish(_subject, _schema, message) {
      for (const b of (message as unknown as SampleBatchFrame).series) published.push(fromBinary(SeriesSchema, b));
      return Promise.resolve();
    },
  };
  const ingester = new Ingester({ publisher, subjectFor: (t) => `samples.${t}`, limits: custom, registry: createRegistry(), now: () => NOW });
  try {
    const outcome = await ingester.ingest('t', { series: input, protocol: 'native' });
    return { ...outcome, series: published };
  } finally {
    ingester.close();
  }
}

describe('validation', () => {
  it('keeps valid series, canonicalises labels and fills 0 timestamps with now', async () => {
    const v = await validate([s([['zone', 'b'], ['__name__', 'up'], ['empty', '']], [[0, 1], [NOW - 1, NaN]])]);
    assert.equal(v.acceptedSamples, 2);
    assert.equal(v.rejections.length, 0);
    assert.deepEqual(
      v.series[0]!.labels.map((l) => l.name),
      ['__name__', 'zone'],
    );
    assert.deepEqual(v.series[0]!.timestampsMs, [BigInt(NOW), BigInt(NOW - 1)]);
    assert.ok(Number.isNaN(v.series[0]!.values[1]), 'NaN is kept, as Prometheus keeps it');
  });

  const rejectsWith = async (series: Series, field: string, re: RegExp, custom = limits) => {
    const v = await validate([s([['__name__', 'ok_total']], [[NOW, 1]]), series], custom);
    assert.equal(v.series.length, 1, 'the good series is kept');
    assert.equal(v.rejections.length, 1);
    assert.equal(v.rejections[0]!.seriesIndex, 1);
    assert.equal(v.rejections[0]!.violation!.field, field);
    assert.match(v.rejections[0]!.violation!.description, re);
  };

  it('rejects bad names, missing names, duplicates and oversize labels, naming field and limit', async () => {
    await rejectsWith(s([['__name__', '1x']], [[NOW, 1]]), 'series[1].labels[0].value', /invalid metric name "1x"/);
    await rejectsWith(s([['job', 'a']], [[NOW, 1]]), 'series[1].labels', /missing metric name/);
    await rejectsWith(s([['__name__', 'x'], ['a-b', '1']], [[NOW, 1]]), 'series[1].labels[1].name', /invalid label name "a-b"/);
    await rejectsWith(s([['__name__', 'x'], ['a', '1'], ['a', '2']], [[NOW, 1]]), 'series[1].labels[2].name', /duplicate label name "a"/);
    await rejectsWith(s([['__name__', 'x'], ['a', 'v'.repeat(50)]], [[NOW, 1]]), 'series[1].labels[1].value', /ingestion\.maxLabelValueLength = 10/, { ...limits, maxLabelValueLength: 10 });
    await rejectsWith(s([['__name__', 'x'], ['a', '1'], ['b', '2']], [[NOW, 1]]), 'series[1].labels', /ingestion\.maxLabelsPerSeries = 2/, { ...limits, maxLabelsPerSeries: 2 });
    await rejectsWith(create(SeriesSchema, { labels: [{ name: '__name__', value: 'x' }], timestampsMs: [1n], values: [] }), 'series[1].values', /must pair up/);
  });

  it('rejects only the out-of-range samples of a series', async () => {
    const v = await validate([s([['__name__', 'x']], [[NOW - 1, 1], [NOW - limits.maxSampleAgeMs - 1, 2], [NOW + limits.maxFutureMs + 1, 3]])]);
    assert.equal(v.acceptedSamples, 1);
    assert.equal(v.rejectedSamples, 2);
    assert.equal(v.rejections[0]!.rejectedSamples, 2);
    assert.equal(v.rejections[0]!.violation!.field, 'series[0].timestamps_ms[1]');
    assert.match(v.rejections[0]!.violation!.description, /older than the accepted age \(ingestion\.maxSampleAgeMs = \d+\) \(and 1 more/);
    assert.deepEqual(v.series[0]!.values, [1]);
  });
});

describe('splitBatch', () => {
  it('keeps a small batch whole and splits a large one into parts that fit, losing nothing', () => {
    const series = Array.from({ length: 200 }, (_, i) => s([['__name__', 'm'], ['i', String(i)]], Array.from({ length: 50 }, (_, j) => [NOW + j, j] as [number, number])));
    const batch = create(SampleBatchSchema, { tenant: 't', batchId: 'b', series });
    assert.deepEqual(splitBatch(batch, 10_000_000).map((p) => p.batchId), ['b']);
    const parts = splitBatch(batch, 20_000);
    assert.ok(parts.length > 1);
    assert.deepEqual(parts.map((p) => p.batchId), parts.map((_, i) => `b/${i}`));
    assert.equal(parts.reduce((n, p) => n + p.series.reduce((m, x) => m + x.values.length, 0), 0), 200 * 50);
    const huge = create(SampleBatchSchema, { tenant: 't', batchId: 'h', series: [s([['__name__', 'm']], Array.from({ length: 5000 }, (_, j) => [NOW + j, j] as [number, number]))] });
    const hugeParts = splitBatch(huge, 8_000);
    assert.ok(hugeParts.length > 1);
    assert.equal(hugeParts.reduce((n, p) => n + p.series[0]!.values.length, 0), 5000);
    for (const p of [...parts, ...hugeParts]) assert.ok(toBinary(SampleBatchSchema, p).byteLength <= (p.batchId.startsWith('h') ? 8_000 : 20_000));
  });

  it('bounds sizes without encoding: every part fits, even with non-ASCII labels, extreme values and start times, and few parts are wasted', () => {
    const series = Array.from({ length: 3000 }, (_, i) =>
      s([['__name__', 'température_°C'], ['città', `Zürich-東京-${i}-😀`]], [[-1, -Number.MAX_VALUE], [NOW + i, NaN]]),
    );
    const batch = create(SampleBatchSchema, { tenant: 'tenant-ü', batchId: 'id', series, startTimesMs: series.map(() => BigInt(-1)) });
    const total = toBinary(SampleBatchSchema, batch).byteLength;
    const max = 30_000;
    const parts = splitBatch(batch, max);
    for (const p of parts) {
      assert.ok(toBinary(SampleBatchSchema, p).byteLength <= max);
      assert.equal(p.startTimesMs.length, p.series.length, 'start times stay with their series');
    }
    assert.equal(parts.reduce((n, p) => n + p.series.length, 0), 3000);
    assert.ok(parts.length <= Math.ceil((3 * total) / max), `${parts.length} parts for ${total} bytes`);
  });
});
