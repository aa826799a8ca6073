import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { SeriesSchema } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { MalformedSeriesError } from '../../libs/model/index.js';
import { SeriesDecoder } from './batch-wire.js';

const encode = (init: Parameters<typeof create<typeof SeriesSchema>>[1]) => toBinary(SeriesSchema, create(SeriesSchema, init));

describe('SeriesDecoder', () => {
  it('decodes labels, timestamps and values as the generated decoder does', () => {
    const d = new SeriesDecoder();
    const labels = [
      { name: '__name__', value: 'http_requests_total' },
      { name: 'path', value: '/api/ünïcode/😀' },
      { name: 'empty', value: '' },
    ];
    const ts = [0n, 1_700_000_000_123n, 2n ** 49n + 3n, -5n, 2n ** 53n];
    const vs = [1.5, NaN, Infinity, -0, -1e300];
    const s = d.decode(encode({ labels, timestampsMs: ts, values: vs }));
    assert.deepEqual(
      s.labels.map((l) => ({ ...l })),
      labels,
    );
    assert.deepEqual(s.timestampsMs, ts.map(Number));
    assert.deepEqual(s.values, vs);
    assert.ok(Object.is(s.values[3], -0));
  });

  it('decodes a batch into columns, one row per sample, with interned label sets', () => {
    const d = new SeriesDecoder();
    const x = [{ name: '__name__', value: 'x' }];
    const batch = [
      encode({ labels: x, timestampsMs: [1n], values: [10] }),
      encode({ labels: [{ name: '__name__', value: 'y' }], timestampsMs: [], values: [] }),
      encode({ labels: [{ name: '__name__', value: 'z' }], timestampsMs: [2n, 3n], values: [20, 30] }),
      encode({ labels: x, timestampsMs: [-4n], values: [NaN] }),
    ];
    const c = d.decodeColumns(batch);
    assert.equal(c.rowCount, 4);
    assert.deepEqual([...c.timestampsMs.subarray(0, 4)], [1, 2, 3, -4]);
    assert.deepEqual([...c.values.subarray(0, 4)], [10, 20, 30, NaN]);
    assert.equal(c.labels[0], c.labels[3]);
    assert.equal(c.labels[1], c.labels[2]);
    assert.deepEqual(c.labels[1]!.map((l) => l.value), ['z']);
    // The same bytes in the next batch give the same frozen array (what the store caches by).
    assert.equal(d.decodeColumns(batch.slice(0, 1)).labels[0], c.labels[0]);
    assert.ok(Object.isFrozen(c.labels[0]));
    assert.throws(() => d.decodeColumns([encode({ labels: x, timestampsMs: [1n, 2n], values: [1] })]), MalformedSeriesError);
  });

  it('hands out the same frozen label set for the same encoded labels', () => {
    const d = new SeriesDecoder();
    const a = d.decode(encode({ labels: [{ name: '__name__', value: 'x' }], timestampsMs: [1n], values: [1] }));
    const b = d.decode(encode({ labels: [{ name: '__name__', value: 'x' }], timestampsMs: [2n, 3n], values: [2, 3] }));
    const c = d.decode(encode({ labels: [{ name: '__name__', value: 'y' }], timestampsMs: [2n], values: [2] }));
    assert.equal(a.labels, b.labels);
    assert.notEqual(a.labels, c.labels);
    assert.ok(Object.isFrozen(a.labels) && Object.isFrozen(a.labels[0]));
    assert.equal(d.size, 2);
  });

  it('forgets everything past its bound and keeps working', () => {
    const d = new SeriesDecoder(2);
    for (const v of ['a', 'b', 'c']) d.decode(encode({ labels: [{ name: '__name__', value: v }], timestampsMs: [1n], values: [1] }));
    assert.equal(d.size, 1);
  });

  it('reads unpacked samples and labels split around other fields', () => {
    const w = new BinaryWriter();
    w.tag(1, 2).bytes(new BinaryWriter().tag(1, 2).string('__name__').tag(2, 2).string('m').finish());
    w.tag(2, 0).int64(7n);
    w.tag(3, 1).double(0.25);
    w.tag(1, 2).bytes(new BinaryWriter().tag(1, 2).string('a').tag(2, 2).string('b').finish());
    w.tag(4, 0).int32(1);
    const s = new SeriesDecoder().decode(w.finish());
    assert.deepEqual(
      s.labels.map((l) => [l.name, l.value]),
      [
        ['__name__', 'm'],
        ['a', 'b'],
      ],
    );
    assert.deepEqual(s.timestampsMs, [7]);
    assert.deepEqual(s.values, [0.25]);
  });

  it('rejects truncated input', () => {
    const bytes = encode({ labels: [{ name: '__name__', value: 'x' }], timestampsMs: [1n], values: [1] });
    assert.throws(() => new SeriesDecoder().decode(bytes.subarray(0, bytes.length - 3)), MalformedSeriesError);
  });
});
