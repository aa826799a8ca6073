import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatchBuffer, type Batch } from './buffer.js';

function batch(seq: number, samples: number): Batch {
  return { seq, id: `a/x/${seq}`, series: [], samples, state: 'queued', sends: 0 };
}

test('drop-oldest discards the oldest queued batches, never in-flight ones, and counts them', () => {
  const buf = new BatchBuffer(300, 'drop-oldest');
  const [b1, b2, b3] = [batch(1, 100), batch(2, 100), batch(3, 100)];
  for (const b of [b1, b2, b3]) {
    assert.equal(buf.room(b.samples, 0), true);
    buf.push(b);
  }
  b1.state = 'inflight';
  // 150 more samples need two batches to go: b1 is in flight, so b2 and b3 are dropped.
  assert.equal(buf.room(150, 0), true);
  assert.deepEqual(buf.drops, { droppedSamples: 200, droppedBatches: 2 });
  assert.equal(buf.samples, 100);
  assert.equal(buf.nextQueued(), undefined);
  // Nothing left to drop but the in-flight batch: the incoming samples are refused and counted.
  assert.equal(buf.room(250, 0), false);
  assert.deepEqual(buf.drops, { droppedSamples: 450, droppedBatches: 2 });
});

test('reject-newest keeps the buffer and counts the refused samples; pending samples count toward the bound', () => {
  const buf = new BatchBuffer(200, 'reject-newest');
  buf.push(batch(1, 150));
  assert.equal(buf.room(40, 10), true);
  assert.equal(buf.room(1, 50), false);
  assert.equal(buf.room(60, 0), false);
  assert.deepEqual(buf.drops, { droppedSamples: 61, droppedBatches: 0 });
  assert.equal(buf.samples, 150);
});

test('ack removes a batch; requeueInflight queues unacknowledged batches again in sealing order', () => {
  const buf = new BatchBuffer(1000, 'drop-oldest');
  const bs = [1, 2, 3].map((s) => batch(s, 10));
  for (const b of bs) buf.push(b);
  for (const b of bs) b.state = 'inflight';
  assert.equal(buf.inflight, 3);
  assert.equal(buf.ack(bs[1]!), true);
  assert.equal(buf.ack(bs[1]!), false);
  assert.equal(buf.requeueInflight(), 2);
  assert.equal(buf.nextQueued(), bs[0]);
  assert.equal(buf.samples, 20);
  assert.throws(() => new BatchBuffer(0, 'drop-oldest'), RangeError);
});
