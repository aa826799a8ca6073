import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { durationParam, formatValue, parseDuration, parseTime, requiredTimeParam, resultJson, timeParam } from './prom-format.js';

describe('parseTime (Prometheus time parameters)', () => {
  it('reads Unix seconds as floats, rounding the fraction to milliseconds', () => {
    assert.equal(parseTime('1700000000'), 1_700_000_000_000);
    assert.equal(parseTime('1700000000.123'), 1_700_000_000_123);
    assert.equal(parseTime('1700000000.1236'), 1_700_000_000_124);
    assert.equal(parseTime('1.7e9'), 1_700_000_000_000);
    assert.equal(parseTime('-1.5'), -1500);
  });

  it('reads RFC 3339 with and without fractions and offsets', () => {
    assert.equal(parseTime('2023-11-14T22:13:20Z'), 1_700_000_000_000);
    assert.equal(parseTime('2023-11-14T22:13:20.57Z'), 1_700_000_000_570);
    assert.equal(parseTime('2023-11-14T22:13:20.999999999Z'), 1_700_000_000_999);
    assert.equal(parseTime('2023-11-15T00:13:20+02:00'), 1_700_000_000_000);
  });

  it('accepts the min/max sentinels Prometheus prints and refuses anything else', () => {
    assert.equal(parseTime('-292273086-05-16T16:47:06Z'), Number.MIN_SAFE_INTEGER);
    assert.equal(parseTime('292277025-08-18T07:12:54.999999999Z'), Number.MAX_SAFE_INTEGER);
    for (const bad of ['x', '', '2023-11-14', 'NaN', '12:00', '1s']) {
      assert.throws(() => parseTime(bad), { message: `cannot parse ${JSON.stringify(bad)} to a valid timestamp` }, bad);
    }
  });

  it('names the parameter in errors, and falls back when absent', () => {
    const params = new URLSearchParams({ start: 'x', end: '' });
    assert.throws(() => timeParam(params, 'start', 0), { message: `invalid parameter "start": Invalid time value for 'start': cannot parse "x" to a valid timestamp` });
    assert.throws(() => requiredTimeParam(params, 'start'), { message: 'invalid parameter "start": cannot parse "x" to a valid timestamp' });
    assert.throws(() => requiredTimeParam(params, 'end'), { message: 'invalid parameter "end": cannot parse "" to a valid timestamp' });
    assert.equal(timeParam(params, 'end', 42), 42);
    assert.equal(timeParam(params, 'time', 7), 7);
  });
});

describe('parseDuration (Prometheus step and timeout)', () => {
  it('reads float seconds and Prometheus durations', () => {
    assert.equal(parseDuration('15'), 15_000);
    assert.equal(parseDuration('0.5'), 500);
    assert.equal(parseDuration('1m30s'), 90_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('2d'), 172_800_000);
    assert.equal(parseDuration('1y'), 31_536_000_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('0'), 0);
  });

  it('refuses what Prometheus refuses, naming the parameter', () => {
    for (const bad of ['', 'x', '1s1m', '5 m', '1.5m']) assert.throws(() => parseDuration(bad), { message: `cannot parse ${JSON.stringify(bad)} to a valid duration` }, bad);
    assert.throws(() => parseDuration('1e20'), /overflows int64/);
    assert.throws(() => durationParam(new URLSearchParams({ step: 'abc' }), 'step'), { message: 'invalid parameter "step": cannot parse "abc" to a valid duration' });
  });
});

describe('formatValue (Go FormatFloat with -1 precision, no exponent)', () => {
  it('prints specials and plain digits', () => {
    assert.equal(formatValue(NaN), 'NaN');
    assert.equal(formatValue(Infinity), '+Inf');
    assert.equal(formatValue(-Infinity), '-Inf');
    assert.equal(formatValue(0), '0');
    assert.equal(formatValue(1.5), '1.5');
    assert.equal(formatValue(-0.25), '-0.25');
    assert.equal(formatValue(1e21), '1000000000000000000000');
    assert.equal(formatValue(1.5e-7), '0.00000015');
    assert.equal(formatValue(-2.5e22), '-25000000000000000000000');
    assert.equal(formatValue(0.1 + 0.2), '0.30000000000000004');
  });
});

describe('resultJson', () => {
  it('shapes every result type like Prometheus', () => {
    assert.deepEqual(resultJson({ type: 'scalar', value: [1_700_000_000_500, 2] }), { resultType: 'scalar', result: [1_700_000_000.5, '2'] });
    assert.deepEqual(resultJson({ type: 'string', value: [1000, 'hi'] }), { resultType: 'string', result: [1, 'hi'] });
    assert.deepEqual(resultJson({ type: 'vector', value: [{ labels: [{ name: 'a', value: 'b' }], timestampMs: 1000, value: NaN }] }), {
      resultType: 'vector',
      result: [{ metric: { a: 'b' }, value: [1, 'NaN'] }],
    });
    assert.deepEqual(resultJson({ type: 'matrix', value: [{ labels: [], points: [[1000, 1], [16_000, Infinity]] }] }), {
      resultType: 'matrix',
      result: [{ metric: {}, values: [[1, '1'], [16, '+Inf']] }],
    });
  });
});
