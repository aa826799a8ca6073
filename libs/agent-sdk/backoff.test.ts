import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffCap, backoffDelay } from './backoff.js';

test('the cap grows exponentially from initialMs and stops at maxMs', () => {
  const o = { initialMs: 100, maxMs: 5_000, multiplier: 2 };
  assert.deepEqual([0, 1, 2, 3, 5, 6, 100, 5000].map((a) => backoffCap(a, o)), [100, 200, 400, 800, 3200, 5000, 5000, 5000]);
});

test('full jitter: the delay lies in [0, cap) and spans the whole range', () => {
  const o = { initialMs: 100, maxMs: 30_000, multiplier: 2 };
  assert.equal(backoffDelay(4, o, () => 0), 0);
  assert.equal(backoffDelay(4, o, () => 0.999_999), 1599);
  assert.equal(backoffDelay(4, o, () => 0.5), 800);
  // With the real random source, every delay stays within bounds.
  for (let attempt = 0; attempt < 40; attempt++) {
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt, o);
      assert.ok(d >= 0 && d < backoffCap(attempt, o), `attempt ${attempt}: ${d}`);
    }
  }
});

test('defaults: 100 ms first cap, 30 s largest', () => {
  assert.equal(backoffCap(0), 100);
  assert.equal(backoffCap(1000), 30_000);
});
