import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDurationMs, parseNumberLiteral } from './ast.js';
import { expandTemplate } from './functions.js';
import { formatFloatF, goPow, quantile } from './values.js';

describe('Go-compatible numerics', () => {
  it('goPow follows math.Pow special cases', () => {
    assert.equal(goPow(1, NaN), 1);
    assert.equal(goPow(NaN, 0), 1);
    assert.equal(goPow(-1, Infinity), 1);
    assert.equal(goPow(0.5, Infinity), 0);
    assert.equal(goPow(2, -Infinity), 0);
    assert.equal(goPow(-0, -3), -Infinity);
    assert.equal(goPow(0, -2), Infinity);
    assert.ok(Number.isNaN(goPow(-8, 1 / 3)));
    assert.equal(goPow(2, 10), 1024);
    assert.equal(goPow(2, -2), 0.25);
    assert.equal(goPow(9, 0.5), 3);
    assert.equal(goPow(10, 308) * 10, Infinity);
  });

  it('formatFloatF never uses exponent form', () => {
    assert.equal(formatFloatF(1e21), '1000000000000000000000');
    assert.equal(formatFloatF(1.5e-7), '0.00000015');
    assert.equal(formatFloatF(-2.5e22), '-25000000000000000000000');
    assert.equal(formatFloatF(0.1), '0.1');
    assert.equal(formatFloatF(Infinity), '+Inf');
    assert.equal(formatFloatF(NaN), 'NaN');
  });

  it('quantile interpolates and bounds φ', () => {
    assert.equal(quantile(0.5, [4, 1, 3, 2]), 2.5);
    assert.equal(quantile(0, [4, 1]), 1);
    assert.equal(quantile(-0.1, [4, 1]), -Infinity);
    assert.equal(quantile(1.1, [4, 1]), Infinity);
    assert.ok(Number.isNaN(quantile(0.5, [])));
  });
});

describe('literals', () => {
  it('reads numbers as Prometheus lexes them', () => {
    assert.equal(parseNumberLiteral('0x1F'), 31);
    assert.equal(parseNumberLiteral('010'), 8);
    assert.equal(parseNumberLiteral('0b101'), 5);
    assert.equal(parseNumberLiteral('1.5e3'), 1500);
    assert.equal(parseNumberLiteral('.5'), 0.5);
    assert.equal(parseNumberLiteral('-Inf'), -Infinity);
    assert.ok(Number.isNaN(parseNumberLiteral('nan') ?? 0));
    assert.equal(parseNumberLiteral('2m30s'), 150);
    assert.equal(parseNumberLiteral('bogus'), undefined);
  });

  it('reads durations, largest unit first', () => {
    assert.equal(parseDurationMs('1h30m'), 5_400_000);
    assert.equal(parseDurationMs('1y'), 365 * 86_400_000);
    assert.equal(parseDurationMs('250ms'), 250);
    assert.equal(parseDurationMs('90'), 90_000);
    assert.equal(parseDurationMs('30m1h'), undefined);
    assert.equal(parseDurationMs('5x'), undefined);
  });
});

describe('expandTemplate', () => {
  it('expands like Go regexp.Expand', () => {
    const m = /^(?<first>a)(b)?$/.exec('a');
    assert.ok(m !== null);
    assert.equal(expandTemplate('$1-${1}x-$first-${2}-$$-$1x-$', m), 'a-ax-a--$--$');
  });
});
