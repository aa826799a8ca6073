import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { SeriesSchema } from '../contracts/telemesh/common/v1/common_pb.js';
import { SampleBatchSchema } from '../contracts/telemesh/events/v1/events_pb.js';
import { EncodedLabelTable, SampleBatchFrameSchema, SeriesScanner, type SampleBatchFrame } from './series-wire.js';

describe('SampleBatchFrameSchema', () => {
  it('reads a SampleBatch with its series left encoded, and writes it back unchanged', () => {
    const batch = create(SampleBatchSchema, {
      tenant: 't1',
      batchId: 'b/1',
      series: [{ labels: [{ name: '__name__', value: 'up' }], timestampsMs: [1n, 2n], values: [1, 0] }],
      receivedAtMs: 99n,
      startTimesMs: [5n],
    });
    const bytes = toBinary(SampleBatchSchema, batch);
    const frame = fromBinary(SampleBatchFrameSchema, bytes) as unknown as SampleBatchFrame;
    assert.equal(frame.tenant, 't1');
    assert.equal(frame.batchId, 'b/1');
    assert.equal(frame.series.length, 1);
    assert.deepEqual(frame.series[0], toBinary(SeriesSchema, batch.series[0]!));
    assert.equal(frame.receivedAtMs, 99n);
    assert.deepEqual(frame.startTimesMs, [5n]);
    assert.deepEqual(toBinary(SampleBatchFrameSchema, frame as never), bytes);
  });
});

describe('SeriesScanner', () => {
  it('finds the labels, reads timestamps and counts values without reading them unless asked', () => {
    const bytes = toBinary(SeriesSchema, create(SeriesSchema, { labels: [{ name: '__name__', value: 'up' }], timestampsMs: [1n, -2n, 2n ** 50n], values: [1, 2, 3], type: 2 }));
    const sc = new SeriesScanner();
    sc.scan(bytes);
    assert.deepEqual(sc.ts.slice(0, sc.tsCount), [1, -2, 2 ** 50]);
    assert.equal(sc.valueCount, 3);
    assert.equal(sc.values.length, 0);
    assert.equal(sc.type, 2);
    assert.equal(sc.labelsStart, 0);
    assert.deepEqual(fromBinary(SeriesSchema, bytes.subarray(sc.labelsStart, sc.labelsEnd)).labels.map((l) => l.value), ['up']);
    sc.scan(bytes, true);
    assert.deepEqual(sc.values.slice(0, sc.valueCount), [1, 2, 3]);
  });
});

describe('EncodedLabelTable', () => {
  it('finds by bytes wherever they sit, keeps its own copy, and starts over past its bound', () => {
    const t = new EncodedLabelTable<string>(2);
    const buf = Uint8Array.of(9, 1, 2, 3, 9);
    assert.equal(t.find(buf, 1, 4), undefined);
    t.add(buf, 1, 4, 'a');
    buf[0] = 7;
    assert.equal(t.find(Uint8Array.of(1, 2, 3), 0, 3), 'a');
    buf[1] = 5;
    assert.equal(t.find(Uint8Array.of(1, 2, 3), 0, 3), 'a', 'changing the source does not change the entry');
    t.add(Uint8Array.of(4), 0, 1, 'b');
    t.add(Uint8Array.of(5), 0, 1, 'c');
    assert.equal(t.size, 1);
    assert.equal(t.find(Uint8Array.of(1, 2, 3), 0, 3), undefined);
  });

  it('finds label sets in views at any offset of a shared buffer, across slab growth', () => {
    const t = new EncodedLabelTable<number>(100_000);
    const sets = Array.from({ length: 3000 }, (_, i) => new TextEncoder().encode(`__name__=metric_${i % 7};instance=host-${i}:9100;job=j${i % 3}`));
    const shared = new Uint8Array(sets.reduce((n, s) => n + s.length + 1, 0) + 1);
    const views: Uint8Array[] = [];
    let at = 1;
    for (const s of sets) {
      shared.set(s, at);
      views.push(shared.subarray(at - 1, at + s.length));
      at += s.length + 1;
    }
    views.forEach((v, i) => t.add(v, 1, v.length, i));
    // Over 100 kB of label bytes: the slab grew past its first 64 kB.
    assert.equal(t.size, 3000);
    views.forEach((v, i) => assert.equal(t.find(v, 1, v.length), i));
    // Found again in the same order (each guessed from the one before) and in others.
    views.forEach((v, i) => assert.equal(t.find(v, 1, v.length), i));
    [...views.keys()].reverse().forEach((i) => assert.equal(t.find(views[i]!, 1, views[i]!.length), i));
    [...views.keys()].filter((i) => i % 2 === 0).forEach((i) => assert.equal(t.find(views[i]!, 1, views[i]!.length), i));
    sets.forEach((s, i) => assert.equal(t.find(Uint8Array.from(s), 0, s.length), i, 'a copy elsewhere finds the same entry'));
    const other = Uint8Array.from(sets[5]!);
    other[other.length - 1] ^= 1;
    assert.equal(t.find(other, 0, other.length), undefined, 'one byte off is another label set');
    assert.equal(t.find(sets[5]!, 0, sets[5]!.length - 1), undefined, 'a prefix is another label set');
  });
});
