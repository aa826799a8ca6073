import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { MetricType, SeriesSchema } from '../contracts/telemesh/common/v1/common_pb.js';
import { SeriesEncoder } from './encode.js';

test('encodes exactly what the generated encoder does: number and bigint timestamps, edge values, types, text', () => {
  const enc = new SeriesEncoder();
  const labels = [
    { name: '__name__', value: 'température_°C' },
    { name: 'city', value: 'Zürich-東京-😀' },
    { name: 'empty', value: '' },
  ];
  const cases = [
    { labels, timestampsMs: [0n, 1_700_000_000_123n, 2n ** 53n + 1n, -5n], values: [0, -0, NaN, Infinity], type: MetricType.COUNTER },
    { labels, timestampsMs: [1_700_000_000_123, 127, 128, 2 ** 49], values: [1.5, -1e300, 3, 4] },
    { labels: [{ name: '__name__', value: 'no_samples' }] },
    { labels: [{ name: '__name__', value: 'unpaired' }], timestampsMs: [1n, 2n], values: [1] },
  ];
  const got = enc.encodeAll(cases);
  const want = cases.map((c) =>
    toBinary(SeriesSchema, create(SeriesSchema, { labels: c.labels, timestampsMs: (c.timestampsMs ?? []).map((t) => BigInt(t)), values: c.values ?? [], type: c.type ?? 0 })),
  );
  assert.equal(got.length, want.length);
  for (let i = 0; i < got.length; i++) assert.deepEqual(fromBinary(SeriesSchema, got[i]!), fromBinary(SeriesSchema, want[i]!), `series ${i}`);
  // Byte for byte where the generated encoder writes the same fields in the same order.
  assert.deepEqual(got[0], want[0]);
  assert.throws(() => enc.encodeAll([{ labels, timestampsMs: [1.5], values: [1] }]), RangeError);
});

test('owns label arrays: frozen on first use, encoded once, remembered by identity', () => {
  const enc = new SeriesEncoder();
  const labels = [{ name: '__name__', value: 'up' }];
  const a = enc.labelFields(labels);
  assert.ok(Object.isFrozen(labels) && Object.isFrozen(labels[0]));
  assert.equal(enc.labelFields(labels), a, 'the same array is not encoded again');
  assert.throws(() => {
    (labels[0] as { value: string }).value = 'down';
  }, TypeError);
  assert.throws(() => (labels as { name: string; value: string }[]).push({ name: 'x', value: 'y' }), TypeError);
  assert.notEqual(enc.labelFields([{ name: '__name__', value: 'up' }]), a, 'another array is another entry');
});
