import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PhiAccrualDetector, phiCrossing, phiOf } from './phi.js';
import { parseIntervalRules, resolveInterval } from './config.js';

const opts = { windowSize: 100, minStdDevMs: 200, acceptablePauseMs: 2000, firstIntervalMs: 1000 };

/** Feeds `n` beats every `every` ms from t=0; returns the time of the last one. */
function feed(d: PhiAccrualDetector, n: number, every: number, jitter = () => 0): number {
  let t = 0;
  for (let i = 0; i < n; i++) {
    t += every + jitter();
    d.heartbeat(t);
  }
  return t;
}

describe('phi accrual detector', () => {
  it('is 0 before any heartbeat and rises monotonically while a heartbeat is overdue', () => {
    const d = new PhiAccrualDetector(opts);
    assert.equal(d.phi(10_000), 0);
    const last = feed(d, 50, 1000);
    let prev = -1;
    for (let dt = 0; dt <= 6000; dt += 250) {
      const p = d.phi(last + dt);
      assert.ok(p >= prev, `phi fell at +${dt} ms`);
      prev = p;
    }
  });

  it('at a 1 s interval: quiet on time, suspect (3) after ~3 s, dead (8) before 5 s with defaults', () => {
    const d = new PhiAccrualDetector(opts);
    const last = feed(d, 60, 1000);
    assert.ok(d.phi(last + 1000) < 0.5, 'an on-time heartbeat gap must look healthy');
    assert.ok(d.phi(last + 2500) < 3, 'a 1.5 s pause (within acceptablePause) must not make it suspect');
    const firstAbove = (threshold: number) => {
      for (let dt = 0; dt < 20_000; dt += 10) if (d.phi(last + dt) >= threshold) return dt;
      return Infinity;
    };
    const suspect = firstAbove(3);
    const dead = firstAbove(8);
    assert.ok(suspect > 3000 && suspect < 3700, `suspect after ${suspect} ms`);
    assert.ok(dead > suspect && dead < 4500, `dead after ${dead} ms`);
  });

  it('the minimum standard deviation keeps a perfectly regular agent from being convicted by small jitter', () => {
    const strict = new PhiAccrualDetector({ ...opts, minStdDevMs: 1, acceptablePauseMs: 0 });
    const lenient = new PhiAccrualDetector({ ...opts, acceptablePauseMs: 0 });
    const a = feed(strict, 150, 1000);
    const b = feed(lenient, 150, 1000);
    assert.ok(strict.phi(a + 1100) > 8, 'without a floor, 100 ms late looks like death');
    assert.ok(lenient.phi(b + 1100) < 3, 'with a 200 ms floor, 100 ms late is fine');
  });

  it('learns a slower agent: a 3 s rhythm is healthy once measured', () => {
    const d = new PhiAccrualDetector(opts);
    const last = feed(d, 100, 3000, () => (Math.random() - 0.5) * 200);
    assert.ok(Math.abs(d.meanMs - 3000) < 100);
    assert.ok(d.phi(last + 3200) < 1);
    assert.ok(d.phi(last + 8000) > 8);
  });

  it('reset() reseeds the history for a new interval', () => {
    const d = new PhiAccrualDetector(opts);
    feed(d, 20, 1000);
    d.reset(10_000);
    assert.equal(d.meanMs, 10_000);
    assert.equal(d.stdDevMs, 2500);
  });

  it('phiOf stays finite-or-infinite without NaN far out and is ~0.3 at the mean', () => {
    assert.ok(Math.abs(phiOf(1000, 1000, 100) - Math.log10(2)) < 1e-9);
    assert.ok(!Number.isNaN(phiOf(1e9, 1000, 100)));
    assert.ok(phiOf(0, 1000, 100) < 1e-6);
  });
});

describe('phi deadlines', () => {
  it('elapsedAtPhi is where phi reaches the threshold: just below before it, at or above after', () => {
    const d = new PhiAccrualDetector(opts);
    const last = feed(d, 50, 1000, () => Math.round(Math.random() * 100 - 50));
    for (const threshold of [0.1, 0.3, 1, 3, 8, 16]) {
      const at = d.elapsedAtPhi(threshold);
      assert.ok(Number.isFinite(at), `threshold ${threshold}`);
      assert.ok(d.phi(last + at - 1) < threshold, `before the deadline, threshold ${threshold}`);
      assert.ok(d.phi(last + at + 1) >= threshold, `after the deadline, threshold ${threshold}`);
    }
    // With the defaults at 1 s: suspect after ~3 s, dead before 5 s of silence.
    assert.ok(d.elapsedAtPhi(3) > 2500 && d.elapsedAtPhi(3) < 4000, String(d.elapsedAtPhi(3)));
    assert.ok(d.elapsedAtPhi(8) > d.elapsedAtPhi(3) && d.elapsedAtPhi(8) < 5000, String(d.elapsedAtPhi(8)));
  });

  it('is Infinity before any heartbeat, and the crossing is 0 at phi(mean) = log10(2)', () => {
    assert.equal(new PhiAccrualDetector(opts).elapsedAtPhi(3), Infinity);
    assert.ok(Math.abs(phiCrossing(Math.log10(2))) < 1e-6);
    assert.ok(phiCrossing(8) > phiCrossing(3));
  });
});

describe('interval rules', () => {
  it('parses rules and picks the first match, else the request, else the default', () => {
    const rules = parseIntervalRules('acme{env="prod"}=2; acme=5; *{role="db"}=10');
    const prod = [{ name: 'env', value: 'prod' }];
    assert.equal(resolveInterval(rules, 'acme', prod, 3000, 1000), 2000);
    assert.equal(resolveInterval(rules, 'acme', [], 3000, 1000), 5000);
    assert.equal(resolveInterval(rules, 'other', [{ name: 'role', value: 'db' }], 3000, 1000), 10_000);
    assert.equal(resolveInterval(rules, 'other', [], 3000, 1000), 3000);
    assert.equal(resolveInterval(rules, 'other', [], 0, 1000), 1000);
  });

  it('rejects bad rules naming the rule and the limit', () => {
    assert.throws(() => parseIntervalRules('acme=0.5'), /intervalRules\[0\].*outside 1–60 s/);
    assert.throws(() => parseIntervalRules('x=5; acme=61'), /intervalRules\[1\].*outside 1–60 s/);
    assert.throws(() => parseIntervalRules('a.b=5'), /intervalRules\[0\]/);
    assert.throws(() => parseIntervalRules('acme{env=}=5'), /bad selector/);
  });
});
