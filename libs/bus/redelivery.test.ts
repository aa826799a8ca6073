import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PoisonMessageError } from './errors.js';
import { rejectionFor } from './redelivery.js';
import { declareTopology } from './topology.js';

const spec = { maxDeliver: 4, nakDelaysMs: [1000, 5000] };

test('poison is terminated on any delivery', () => {
  assert.deepEqual(rejectionFor(new PoisonMessageError('bad'), 1, spec), { action: 'term', reason: 'poison' });
});

test('other errors are nak-ed with a growing delay, the last one repeating', () => {
  assert.deepEqual(rejectionFor(new Error('x'), 1, spec), { action: 'nak', delayMs: 1000 });
  assert.deepEqual(rejectionFor(new Error('x'), 2, spec), { action: 'nak', delayMs: 5000 });
  assert.deepEqual(rejectionFor(new Error('x'), 3, spec), { action: 'nak', delayMs: 5000 });
});

test('the last allowed delivery is terminated and reported as max_deliver', () => {
  assert.deepEqual(rejectionFor(new Error('x'), 4, spec), { action: 'term', reason: 'max_deliver' });
  assert.deepEqual(rejectionFor(new Error('x'), 9, spec), { action: 'term', reason: 'max_deliver' });
});

test('the declared aggregation consumer retries 9 times before giving up', () => {
  const agg = declareTopology().consumers.find((c) => c.durable === 'aggregation');
  assert.ok(agg);
  for (let n = 1; n < agg.maxDeliver; n++) assert.equal(rejectionFor(new Error('x'), n, agg).action, 'nak');
  assert.equal(rejectionFor(new Error('x'), agg.maxDeliver, agg).action, 'term');
});
