import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Head, type HeadRef } from './head.js';

const run = (h: Head, tenant: string, id: bigint, from = -Infinity, to = Infinity) => {
  const r = h.read(tenant, id, from, to);
  return r === undefined ? undefined : { ts: [...r.ts], vs: [...r.vs] };
};

/** One committed batch of one series. */
function write(h: Head, tenant: string, ref: HeadRef | bigint, samples: [number, number][]): void {
  const r = typeof ref === 'bigint' ? { id: ref } : ref;
  h.defer(tenant, samples.map(() => r), Float64Array.from(samples, (s) => s[0]), Float64Array.from(samples, (s) => s[1]), samples.length, Math.max(...samples.map((s) => s[0])));
}

const ids = [0n, 1n, 2n, 3n];
const total = (h: Head) => ids.reduce((n, id) => n + (run(h, 't', id)?.ts.length ?? 0), 0);

describe('head', () => {
  it('keeps samples in time order, late ones after every sample at their time', () => {
    const h = new Head({ from: -Infinity, maxSamples: 100, maxAgeMs: Infinity, now: () => 0 });
    write(h, 't', 1n, [[10, 1], [30, 3], [20, 2]]);
    write(h, 't', 1n, [[20, 2.5], [5, 0], [30, 3.5]]);
    assert.deepEqual(run(h, 't', 1n), { ts: [5, 10, 20, 20, 30, 30], vs: [0, 1, 2, 2.5, 3, 3.5] });
    assert.deepEqual(run(h, 't', 1n, 10, 20), { ts: [10, 20, 20], vs: [1, 2, 2.5] }, 'both ends inclusive');
    assert.equal(run(h, 't', 1n, 11, 19), undefined);
    assert.equal(run(h, 'other', 1n), undefined, 'tenant-scoped');
  });

  it('copies what it is given and answers copies that later writes do not change', () => {
    const h = new Head({ from: -Infinity, maxSamples: 100, maxAgeMs: Infinity, now: () => 0 });
    const ts = Float64Array.of(1);
    const vs = Float64Array.of(1);
    h.defer('t', [{ id: 1n }], ts, vs, 1, 1);
    ts[0] = 99;
    const r = h.read('t', 1n, 0, 10)!;
    write(h, 't', 1n, [[0, 9]]);
    assert.deepEqual([...r.ts], [1]);
    assert.deepEqual(run(h, 't', 1n), { ts: [0, 1], vs: [9, 1] });
  });

  it('covers from its start and within its age only, and keeps nothing older', () => {
    let now = 1_000;
    const h = new Head({ from: 500, maxSamples: 100, maxAgeMs: 200, now: () => now });
    assert.equal(h.covers(499), false, 'before from: older rows may exist in the database');
    assert.equal(h.covers(800), true);
    assert.equal(h.covers(799), false, 'past the age bound');
    write(h, 't', 1n, [[700, 1], [900, 2]]);
    assert.deepEqual(run(h, 't', 1n), { ts: [900], vs: [2] }, 'a sample past the age bound is not kept');
    now = 1_150;
    h.age();
    assert.equal(h.covers(900), false);
    assert.equal(run(h, 't', 1n), undefined, 'aged out');
    assert.equal(h.samples, 0);
  });

  it('drops its oldest samples past the budget when it is being read', () => {
    const h = new Head({ from: -Infinity, maxSamples: 100, maxAgeMs: Infinity, now: () => 0 });
    for (let t = 0; t < 100; t++) {
      write(h, 't', ids[t % 4]!, [[t, t]]);
      run(h, 't', 0n); // a reader keeps the head folded
    }
    assert.equal(h.samples, 100);
    assert.equal(h.covers(0), true);
    write(h, 't', 0n, [[100, 100]]);
    assert.ok(h.samples <= 100 && h.samples >= 60, `kept ${h.samples}`);
    const oldest = Math.min(...ids.map((id) => run(h, 't', id)?.ts[0] ?? Infinity));
    assert.equal(h.covers(oldest - 1), false, 'no longer covers what it dropped');
    assert.equal(h.covers(oldest), true);
    assert.equal(total(h), 101 - oldest, 'everything at or after the oldest kept sample is still there');
  });

  it('forgets everything past the budget when nobody reads it, then covers what comes next', () => {
    const h = new Head({ from: -Infinity, maxSamples: 100, maxAgeMs: Infinity, now: () => 0 });
    for (let t = 0; t < 101; t++) write(h, 't', ids[t % 4]!, [[t, t]]);
    assert.equal(h.samples, 0);
    assert.equal(h.covers(100), false);
    assert.equal(h.covers(101), true);
    write(h, 't', 1n, [[101, 1], [100, 0]]);
    assert.deepEqual(run(h, 't', 1n), { ts: [101], vs: [1] }, 'a sample before the new start is not kept');
  });

  it('in its periodic upkeep drops waiting batches past the age bound, and folds the rest only while queried', () => {
    let now = 10_000;
    const h = new Head({ from: -Infinity, maxSamples: 100, maxAgeMs: 1_000, now: () => now });
    const old: HeadRef = { id: 1n };
    const recent: HeadRef = { id: 2n };
    write(h, 't', old, [[9_100, 1]]);
    write(h, 't', recent, [[9_900, 2]]);
    now = 10_500;
    h.age();
    assert.equal(h.samples, 1, 'the batch now past the age bound is dropped unread');
    assert.equal(recent.head, undefined, 'nobody queried: nothing folded');
    h.noteQuery();
    h.age();
    assert.notEqual(recent.head, undefined, 'queried lately: folded ahead of the next query');
    assert.deepEqual(run(h, 't', 2n), { ts: [9_900], vs: [2] });
  });

  it('marks entries it drops, so holders look them up again', () => {
    const h = new Head({ from: -Infinity, maxSamples: 100, maxAgeMs: Infinity, now: () => 0 });
    const ref: HeadRef = { id: 1n };
    write(h, 't', ref, [[1, 1]]);
    run(h, 't', 1n);
    const first = ref.head!;
    h.raise(5);
    assert.equal(first.dropped, true);
    write(h, 't', ref, [[6, 6]]);
    assert.deepEqual(run(h, 't', 1n), { ts: [6], vs: [6] });
    assert.notEqual(ref.head, first);
  });

  it('covers nothing and keeps nothing when turned off', () => {
    const h = new Head({ from: -Infinity, maxSamples: 0, maxAgeMs: Infinity, now: () => 0 });
    assert.equal(h.enabled, false);
    write(h, 't', 1n, [[1, 1]]);
    assert.equal(h.samples, 0);
    assert.equal(h.covers(Number.MAX_SAFE_INTEGER), false);
  });
});
