import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Label } from '../model/index.js';
import { PromqlSyntaxError, parseSampleLine } from './index.js';

const NOW = 1_700_000_000_000;
const l = (name: string, value: string): Label => ({ name, value });

function rejects(line: string, reason: string | RegExp, position: number): void {
  let caught: unknown;
  try {
    parseSampleLine(line, NOW);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof PromqlSyntaxError, `${JSON.stringify(line)}: expected PromqlSyntaxError, got ${String(caught)}`);
  if (typeof reason === 'string') assert.equal(caught.reason, reason, line);
  else assert.match(caught.reason, reason, line);
  assert.equal(caught.position, position, `${JSON.stringify(line)}: position`);
  assert.match(caught.message, /^parse error at char \d+: /);
}

describe('parseSampleLine: accepted lines', () => {
  it('reads name, labels, value and timestamp into a canonical label set', () => {
    assert.deepEqual(parseSampleLine('cpu{mode="idle",host="a"} 0.5 1700000000123', NOW), {
      labels: [l('__name__', 'cpu'), l('host', 'a'), l('mode', 'idle')],
      value: 0.5,
      timestampMs: 1_700_000_000_123,
    });
  });

  it('defaults the timestamp to nowMs', () => {
    assert.deepEqual(parseSampleLine('up 1', NOW), { labels: [l('__name__', 'up')], value: 1, timestampMs: NOW });
    assert.equal(parseSampleLine('up{} 1', NOW).timestampMs, NOW);
  });

  it('reads every float form and the special values', () => {
    const value = (text: string): number => parseSampleLine(`m ${text}`, NOW).value;
    assert.equal(value('42'), 42);
    assert.equal(value('-2.5'), -2.5);
    assert.equal(value('+3'), 3);
    assert.equal(value('.5'), 0.5);
    assert.equal(value('1.'), 1);
    assert.equal(value('1e-3'), 0.001);
    assert.equal(value('6.02E+23'), 6.02e23);
    assert.ok(Number.isNaN(value('NaN')));
    assert.ok(Number.isNaN(value('nan')));
    assert.equal(value('+Inf'), Infinity);
    assert.equal(value('Inf'), Infinity);
    assert.equal(value('-Inf'), -Infinity);
    assert.equal(value('-infinity'), -Infinity);
  });

  it('accepts negative and zero timestamps', () => {
    assert.equal(parseSampleLine('m 1 -5', NOW).timestampMs, -5);
    assert.ok(Object.is(parseSampleLine('m 1 -0', NOW).timestampMs, 0));
  });

  it('keeps blanks, braces, commas and quotes inside label values', () => {
    assert.deepEqual(parseSampleLine('m{a="} {", b="x, y=\\"z\\""} 1', NOW).labels, [l('__name__', 'm'), l('a', '} {'), l('b', 'x, y="z"')]);
    assert.deepEqual(parseSampleLine("m{a='it\\'s'} 1", NOW).labels, [l('__name__', 'm'), l('a', "it's")]);
    assert.deepEqual(parseSampleLine('m{a=`C:\\dir {x}`} 1', NOW).labels, [l('__name__', 'm'), l('a', 'C:\\dir {x}')]);
  });

  it('decodes the exposition escapes and unicode values', () => {
    const { labels } = parseSampleLine(String.raw`m{path="C:\\tmp",msg="line1\nline2",q="\"x\""} 1`, NOW);
    assert.deepEqual(labels, [l('__name__', 'm'), l('msg', 'line1\nline2'), l('path', 'C:\\tmp'), l('q', '"x"')]);
    assert.deepEqual(parseSampleLine('m{city="Zürich",emoji="😀",jp="東京"} 1', NOW).labels, [
      l('__name__', 'm'),
      l('city', 'Zürich'),
      l('emoji', '😀'),
      l('jp', '東京'),
    ]);
  });

  it('takes the metric name from inside the braces too', () => {
    assert.deepEqual(parseSampleLine('{__name__="cpu",host="a"} 1', NOW).labels, [l('__name__', 'cpu'), l('host', 'a')]);
    assert.deepEqual(parseSampleLine('{"cpu", "host"="a"} 1', NOW).labels, [l('__name__', 'cpu'), l('host', 'a')]);
  });

  it('accepts metric names that are PromQL keywords', () => {
    for (const name of ['nan', 'inf', 'offset', 'bool', 'on', 'sum', 'rate']) {
      assert.deepEqual(parseSampleLine(`${name}{a="b"} 1`, NOW).labels, [l('__name__', name), l('a', 'b')], name);
    }
  });

  it('drops empty label values and tolerates extra blanks and CRLF', () => {
    assert.deepEqual(parseSampleLine('  m {a="", b="1"}\t 2 \t 3 \r', NOW), { labels: [l('__name__', 'm'), l('b', '1')], value: 2, timestampMs: 3 });
  });
});

describe('parseSampleLine: rejected lines', () => {
  it('names a bad value or timestamp and points at it', () => {
    rejects('m abc', 'value "abc" is not a number', 2);
    rejects('m{a="b"} 0x10', 'value "0x10" is not a number', 9);
    rejects('m 1_000', 'value "1_000" is not a number', 2);
    rejects('m 1e999', 'value "1e999" is out of range', 2);
    rejects('m 1 1.5e', 'timestamp "1.5e" is not a finite integer', 4);
    rejects('m 1 1.5', 'timestamp "1.5" is not a finite integer', 4);
    rejects('m 1 1e3', 'timestamp "1e3" is not a finite integer', 4);
    rejects('m 1 NaN', 'timestamp "NaN" is not a finite integer', 4);
    rejects('m 1 +Inf', 'timestamp "+Inf" is not a finite integer', 4);
    rejects('m 1 99999999999999999999', 'timestamp "99999999999999999999" is out of range', 4);
    rejects('m 1 2 3', 'unexpected "3" after the timestamp', 6);
  });

  it('counts positions in UTF-16 units after unicode label values', () => {
    rejects('m{a="😀"} x', 'value "x" is not a number', 10);
  });

  it('refuses matchers other than "=", naming the label', () => {
    rejects('m{host!="a"} 1', 'label "host" uses "!=": only "=" is allowed in a sample', 6);
    rejects('m{a="1",mode=~"x"} 1', 'label "mode" uses "=~": only "=" is allowed in a sample', 12);
    rejects('m{a!~"1"} 1', /^label "a" uses "!~"/, 3);
  });

  it('refuses bad, missing, duplicate or doubly given names', () => {
    rejects('1m 2', 'invalid metric name "1m"', 0);
    rejects('m.x 1', 'unexpected character "." after metric name "m"', 1);
    rejects('{"my.metric"} 1', 'invalid metric name "my.metric"', 1);
    rejects('m{"a.b"="c"} 1', 'invalid label name "a.b"', 2);
    rejects('{a="b"} 1', 'sample has no metric name', 0);
    rejects('m{__name__="x"} 1', 'metric name must not be set twice: "m" or "x"', 2);
    rejects('m{a="1",b="2",a="3"} 1', 'duplicate label name "a"', 14);
  });

  it('reports syntax errors in the braces at their place in the line', () => {
    rejects('m{a="b} 1', 'unterminated quoted string', 4);
    rejects('m{a="b" 1', 'unexpected number "1" inside braces', 8);
    rejects('m{a=b} 1', 'unexpected identifier "b" inside braces', 4);
    rejects('m{a="\\q"} 1', 'unknown escape sequence "\\\\q"', 5);
    rejects('m{a="b"', 'unexpected end of input inside braces', 7);
  });

  it('refuses a missing value and junk after the selector', () => {
    rejects('m', 'missing sample value', 1);
    rejects('m{a="b"}   ', 'missing sample value', 8);
    rejects('m{a="b"}1', 'expected a blank after "}", found "1"', 8);
    rejects('m{a="b"}[5m] 1', 'expected a blank after "}", found "["', 8);
  });

  it('throws for blank and comment lines, which callers must skip', () => {
    rejects('', 'missing metric name', 0);
    rejects('   ', 'missing metric name', 3);
    rejects('# HELP m Something.', 'expected a metric name or "{", found "#"', 0);
    rejects('# TYPE m counter', 'expected a metric name or "{", found "#"', 0);
  });
});
