import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QuantileSketch } from './sketch.js';
import { seededRandom } from '../../test/random.js';

const QS = [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1];

/** Asserts the documented bound: within α of the value of rank ⌊q(n−1)⌋. */
function assertWithinBound(sketch: QuantileSketch, values: number[], label: string): void {
  const sorted = [...values].sort((a, b) => a - b);
  for (const q of QS) {
    const exact = sorted[Math.floor(q * (sorted.length - 1))];
    const est = sketch.quantile(q);
    // 1e-12 relative slack for the floating-point rounding of log and pow.
    assert.ok(
      Math.abs(est - exact) <= sketch.alpha * Math.abs(exact) * (1 + 1e-12),
      `${label} q=${q}: estimate ${est} vs exact ${exact} exceeds α=${sketch.alpha}`,
    );
  }
}

describe('QuantileSketch', () => {
  const distributions: Record<string, (r: () => number) => number> = {
    uniform: (r) => r() * 1000,
    lognormal: (r) => Math.exp(3 * Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r())),
    'mixed sign with zeros': (r) => (r() < 0.1 ? 0 : (r() - 0.5) * 1e6),
    'latency-like': (r) => 0.005 + -Math.log(r() || 1e-12) * 0.2,
  };
  for (const alpha of [0.01, 0.05]) {
    for (const [name, draw] of Object.entries(distributions)) {
      it(`stays within α=${alpha} of exact quantiles: ${name}`, () => {
        const r = seededRandom(42 + alpha * 1000);
        const values = Array.from({ length: 20_000 }, () => draw(r));
        const sketch = new QuantileSketch(alpha);
        for (const v of values) sketch.add(v);
        assert.equal(sketch.count, values.length);
        assertWithinBound(sketch, values, name);
      });
    }
  }

  it('merges exactly: the merge of parts equals the sketch of the whole', () => {
    const r = seededRandom(7);
    const values = Array.from({ length: 5000 }, () => (r() - 0.2) * 500);
    const whole = new QuantileSketch();
    const merged = new QuantileSketch();
    for (let p = 0; p < 10; p++) {
      const part = new QuantileSketch();
      for (const v of values.slice(p * 500, (p + 1) * 500)) part.add(v);
      merged.merge(QuantileSketch.decode(part.encode()));
    }
    for (const v of values) whole.add(v);
    assert.deepEqual(merged.encode(), whole.encode());
    assertWithinBound(merged, values, 'merged');
    assert.throws(() => merged.merge(new QuantileSketch(0.02)), RangeError);
  });

  it('round-trips through its compact encoding', () => {
    const s = new QuantileSketch();
    for (const v of [0, 0, -3.5, 1e-5, 42, 42, 42, 1e12, -1e-200]) s.add(v);
    s.add(7, 1000);
    const bytes = s.encode();
    const back = QuantileSketch.decode(bytes);
    assert.equal(back.count, s.count);
    assert.equal(back.alpha, s.alpha);
    for (const q of QS) assert.equal(back.quantile(q), s.quantile(q));
    // Small: 9 distinct buckets plus a header, well under 50 bytes.
    assert.ok(bytes.length < 50, `encoded ${bytes.length} bytes`);
    assert.throws(() => QuantileSketch.decode(bytes.subarray(0, bytes.length - 1)), RangeError);
    assert.throws(() => QuantileSketch.decode(Uint8Array.from([9])), RangeError);
  });

  it('gives its buckets in ascending order and is rebuilt exactly from them', () => {
    const s = new QuantileSketch(0.02);
    for (const v of [0, 0, -3.5, -3.5, -1e6, 1e-5, 42, 42, 1e12]) s.add(v);
    const b = s.buckets();
    assert.equal(b.zeros, 2);
    for (const pairs of [b.positive, b.negative]) {
      assert.deepEqual([...pairs].sort((x, y) => x[0] - y[0]), pairs);
    }
    assert.deepEqual(b.positive.map(([, c]) => c), [1, 2, 1]);
    assert.deepEqual(b.negative.map(([, c]) => c), [2, 1]);
    const back = QuantileSketch.fromBuckets(0.02, b);
    assert.deepEqual(back.encode(), s.encode());
    assert.equal(back.count, s.count);
    for (const q of QS) assert.equal(back.quantile(q), s.quantile(q));
    assert.equal(QuantileSketch.fromBuckets(0.01, { zeros: 0, positive: [], negative: [] }).count, 0);
  });

  it('rejects buckets that add and merge could not have made', () => {
    const ok = { zeros: 1, positive: [[3, 1], [5, 2]] as [number, number][], negative: [] };
    const bad = [
      { ...ok, zeros: -1 },
      { ...ok, zeros: 0.5 },
      { ...ok, positive: [[3, 0]] },
      { ...ok, positive: [[3, 1.5]] },
      { ...ok, positive: [[5, 1], [3, 1]] },
      { ...ok, negative: [[3, 1], [3, 1]] },
      { ...ok, negative: [[0.5, 1]] },
    ] as const;
    for (const b of bad) assert.throws(() => QuantileSketch.fromBuckets(0.01, b), RangeError, JSON.stringify(b));
    assert.throws(() => QuantileSketch.fromBuckets(0, ok), RangeError);
  });

  it('ignores non-finite values and answers NaN when empty or q is out of range', () => {
    const s = new QuantileSketch();
    assert.ok(Number.isNaN(s.quantile(0.5)));
    s.add(NaN);
    s.add(Infinity);
    s.add(-Infinity);
    assert.equal(s.count, 0);
    s.add(10);
    assert.ok(Math.abs(s.quantile(0.5) - 10) <= 0.1);
    assert.ok(Number.isNaN(s.quantile(1.5)));
    assert.ok(Number.isNaN(s.quantile(-0.1)));
    assert.throws(() => new QuantileSketch(0), RangeError);
    assert.throws(() => new QuantileSketch(1), RangeError);
  });
});
