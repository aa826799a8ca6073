import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Matcher } from '../model/index.js';
import { PromqlSyntaxError, parseSelector } from './index.js';

const eq = (name: string, value: string): Matcher => ({ op: '=', name, value });
const name = (value: string): Matcher => eq('__name__', value);

/** Asserts that parsing fails with `reason` at `position`, and returns the error. */
function rejects(text: string, reason: string | RegExp, position: number): PromqlSyntaxError {
  let caught: unknown;
  try {
    parseSelector(text);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof PromqlSyntaxError, `${text}: expected PromqlSyntaxError, got ${String(caught)}`);
  if (typeof reason === 'string') assert.equal(caught.reason, reason, text);
  else assert.match(caught.reason, reason, text);
  assert.equal(caught.position, position, `${text}: position`);
  if (!text.trim().includes('\n')) assert.equal(caught.message, `parse error at char ${position + 1}: ${caught.reason}`);
  else assert.equal(caught.message, `parse error at line ${caught.line}, char ${caught.column}: ${caught.reason}`);
  return caught;
}

describe('parseSelector: accepted selectors', () => {
  it('turns a bare metric name into a __name__ matcher', () => {
    assert.deepEqual(parseSelector('up'), [name('up')]);
    assert.deepEqual(parseSelector('  job:request_rate:5m  '), [name('job:request_rate:5m')]);
  });

  it('reads all four operators, metric name first', () => {
    assert.deepEqual(parseSelector('cpu{host="a",mode!~"idle|iowait",zone!="x",dc=~"eu-.*"}'), [
      name('cpu'),
      eq('host', 'a'),
      { op: '!~', name: 'mode', value: 'idle|iowait' },
      { op: '!=', name: 'zone', value: 'x' },
      { op: '=~', name: 'dc', value: 'eu-.*' },
    ]);
  });

  it('accepts __name__ inside braces, whitespace, newlines, comments and a trailing comma', () => {
    assert.deepEqual(parseSelector('{__name__="x", job=~".+"}'), [name('x'), { op: '=~', name: 'job', value: '.+' }]);
    assert.deepEqual(parseSelector('cpu {\n  host = "a" , # the host\n  dc="b",\n}'), [name('cpu'), eq('host', 'a'), eq('dc', 'b')]);
    assert.deepEqual(parseSelector('cpu{}'), [name('cpu')]);
  });

  it('accepts quoted metric and label names (Prometheus 3)', () => {
    assert.deepEqual(parseSelector('{"my.metric", "service.name"="api"}'), [name('my.metric'), eq('service.name', 'api')]);
    assert.deepEqual(parseSelector(`{'a b'="c", "x"}`), [eq('a b', 'c'), name('x')]);
    assert.deepEqual(parseSelector('{"ünï", `raw.name`!="v"}'), [name('ünï'), { op: '!=', name: 'raw.name', value: 'v' }]);
  });

  it('treats keywords and function names as ordinary names where names belong', () => {
    assert.deepEqual(parseSelector('sum'), [name('sum')]);
    assert.deepEqual(parseSelector('rate{by="x"}'), [name('rate'), eq('by', 'x')]);
    assert.deepEqual(parseSelector('cpu{on="1",offset="2",bool="3",inf="4",nan="5"}'), [
      name('cpu'),
      eq('on', '1'),
      eq('offset', '2'),
      eq('bool', '3'),
      eq('inf', '4'),
      eq('nan', '5'),
    ]);
  });

  it('unquotes values per PromQL rules', () => {
    const v = (text: string): string => {
      const ms = parseSelector(text);
      const last = ms[ms.length - 1];
      assert.ok(last !== undefined);
      return last.value;
    };
    assert.equal(v(String.raw`x{a="say \"hi\" \\ bye\n"}`), 'say "hi" \\ bye\n');
    assert.equal(v(String.raw`x{a='it\'s "fine"'}`), `it's "fine"`);
    assert.equal(v('x{a=`C:\\path\\to "x"`}'), 'C:\\path\\to "x"');
    assert.equal(v(String.raw`x{a="\u00e9\xc3\xa9\U0001F600"}`), 'éé😀');
    assert.equal(v('x{a="日本語 😀"}'), '日本語 😀');
    assert.equal(v('x{a="} , {"}'), '} , {');
    assert.equal(v(String.raw`x{a=~"\\d+\\.\\d+"}`), String.raw`\d+\.\d+`);
    assert.equal(v('x{a=~`\\d+`}'), String.raw`\d+`);
  });

  it('accepts selectors whose only non-empty matcher is a regex or negation', () => {
    assert.deepEqual(parseSelector('{job=~".+"}'), [{ op: '=~', name: 'job', value: '.+' }]);
    assert.deepEqual(parseSelector('{job!~""}'), [{ op: '!~', name: 'job', value: '' }]);
    assert.deepEqual(parseSelector('{a=~".*", b!=""}'), [
      { op: '=~', name: 'a', value: '.*' },
      { op: '!=', name: 'b', value: '' },
    ]);
  });
});

describe('parseSelector: rejected input', () => {
  it('refuses expressions that are not plain vector selectors', () => {
    rejects('rate(x[5m])', /^expected a vector selector, got a function call$/, 0);
    rejects('x[5m]', 'expected a vector selector, got a range vector selector', 0);
    rejects('x offset 5m', 'expected a vector selector, got an offset modifier', 0);
    rejects('x @ 123', 'expected a vector selector, got an @ modifier', 0);
    rejects('  a + b', 'expected a vector selector, got a binary expression', 2);
    rejects('sum(x)', 'expected a vector selector, got an aggregation', 0);
    rejects('(x)', 'expected a vector selector, got a parenthesized expression', 0);
    rejects('"x"', 'expected a vector selector, got a string', 0);
    rejects('42', 'expected a vector selector, got a number', 0);
    rejects('nan', 'expected a vector selector, got a number', 0);
  });

  it('reports syntax errors with their position', () => {
    rejects('', 'no expression found in input', 0);
    rejects('cpu{host="a"', 'unexpected end of input inside braces', 12);
    rejects('cpu{host=a}', 'unexpected identifier "a" inside braces', 9);
    rejects('cpu{host="a" mode="b"}', 'unexpected identifier "mode" inside braces', 13);
    rejects('cpu{host="a}', 'unterminated quoted string', 9);
    rejects('cpu{host="a",', 'unexpected end of input inside braces', 13);
    rejects('up down', 'unexpected identifier "down"', 3);
    rejects('{', 'unexpected end of input inside braces', 1);
  });

  it('reports bad escapes at the backslash, counting unicode as UTF-16 units', () => {
    rejects(String.raw`cpu{a="\d"}`, 'unknown escape sequence "\\\\d"', 7);
    rejects(String.raw`cpu{a="😀\q"}`, /unknown escape sequence/, 9);
    rejects(String.raw`cpu{a="\'"}`, /unknown escape sequence/, 7);
  });

  it('refuses invalid regular expressions, pointing at the value', () => {
    rejects('cpu{a=~"("}', 'invalid regular expression "(": Unterminated group', 7);
    rejects('cpu{a!~"x{2,1}"}', /^invalid regular expression "x\{2,1\}": /, 7);
  });

  it('refuses selectors that match the empty string everywhere', () => {
    rejects('{a=~".*"}', 'vector selector must contain at least one non-empty matcher', 0);
    rejects('{}', 'vector selector must contain at least one non-empty matcher', 0);
    rejects('  {a="", b!="x", c!~".+"}', 'vector selector must contain at least one non-empty matcher', 2);
    rejects('{__name__=~".*"}', 'vector selector must contain at least one non-empty matcher', 0);
  });

  it('refuses a metric name given twice', () => {
    rejects('cpu{__name__="x"}', 'metric name must not be set twice: "cpu" or "x"', 4);
    rejects('cpu{a="b", "x"}', 'metric name must not be set twice: "cpu" or "x"', 11);
  });

  it('refuses empty quoted names', () => {
    rejects('{""="a", b="c"}', 'label name must not be empty', 1);
    rejects('{"", b="c"}', 'metric name must not be empty', 1);
  });

  it('uses Prometheus line/char format for multi-line input', () => {
    const err = rejects('cpu{\n  host=oops\n}', 'unexpected identifier "oops" inside braces', 12);
    assert.equal(err.line, 2);
    assert.equal(err.column, 8);
  });
});
