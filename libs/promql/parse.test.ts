import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Identifier, LabelMatchers, VectorSelector } from '@prometheus-io/lezer-promql';
import { PromqlSyntaxError } from './errors.js';
import { childOfType, describeExpr, namedChildren, nodeText, parseExpr } from './parse.js';

function syntaxError(fn: () => unknown): PromqlSyntaxError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PromqlSyntaxError, String(err));
    return err;
  }
  assert.fail('expected a PromqlSyntaxError');
}

describe('parseExpr', () => {
  it('returns the expression node under the PromQL top node', () => {
    const input = '  cpu{a="b"} # trailing comment';
    const expr = parseExpr(input);
    assert.equal(expr.type.id, VectorSelector);
    assert.equal(nodeText(input, expr), 'cpu{a="b"}');
    const ident = childOfType(expr, Identifier);
    assert.ok(ident !== null);
    assert.equal(nodeText(input, ident), 'cpu');
  });

  it('parses only a span, keeping offsets into the whole input', () => {
    const input = 'nan{a="b"} 1 2';
    const expr = parseExpr(input, { from: 3, to: 10 });
    assert.equal(expr.from, 3);
    assert.equal(expr.to, 10);
    const braces = childOfType(expr, LabelMatchers);
    assert.ok(braces !== null);
    assert.equal(nodeText(input, braces), '{a="b"}');
  });

  it('reports errors inside a span at their offset in the whole input', () => {
    const err = syntaxError(() => parseExpr('metric{a="b" 1', { from: 6, to: 14 }));
    assert.equal(err.position, 13);
    assert.match(err.reason, /unexpected number "1" inside braces/);
  });

  it('rejects empty input and comment-only input', () => {
    assert.equal(syntaxError(() => parseExpr('')).reason, 'no expression found in input');
    assert.equal(syntaxError(() => parseExpr('   # just a comment')).reason, 'no expression found in input');
  });

  it('reports the earliest problem, naming the token found', () => {
    const cases: [string, number, string][] = [
      ['foo bar', 4, 'unexpected identifier "bar"'],
      ['cpu{host="a"', 12, 'unexpected end of input inside braces'],
      ['cpu{host="a" mode="b"}', 13, 'unexpected identifier "mode" inside braces'],
      ['cpu{host=}', 9, 'unexpected character "}" inside braces'],
      ['cpu{=~"x"}', 4, 'unexpected "=~" inside braces'],
      ['cpu{a="b"}}', 10, 'unexpected character "}"'],
      ['rate(x[5m]', 10, 'unexpected end of input'],
      ['sum(rate(x[5m])) by', 19, 'unexpected end of input'],
      // The string token tolerates a missing quote; the unterminated string is the
      // real cause and comes before the error lezer reports at the end.
      ['cpu{host="a}', 9, 'unterminated quoted string'],
      ['cpu{a=`abc}', 6, 'unexpected character "`" inside braces'],
    ];
    for (const [input, position, reason] of cases) {
      const err = syntaxError(() => parseExpr(input));
      assert.equal(err.reason, reason, input);
      assert.equal(err.position, position, input);
    }
  });

  it('accepts full PromQL, not just selectors', () => {
    const expr = parseExpr('sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / 2');
    assert.equal(describeExpr(expr), 'a binary expression');
  });
});

describe('tree helpers', () => {
  it('namedChildren skips comments and anonymous punctuation', () => {
    const input = 'x{a="1", # note\n b="2"}';
    const braces = childOfType(parseExpr(input), LabelMatchers);
    assert.ok(braces !== null);
    assert.deepEqual(
      namedChildren(braces).map((c) => nodeText(input, c)),
      ['a="1"', 'b="2"'],
    );
  });

  it('describeExpr names expression kinds for messages', () => {
    assert.equal(describeExpr(parseExpr('rate(x[5m])')), 'a function call');
    assert.equal(describeExpr(parseExpr('x[5m]')), 'a range vector selector');
    assert.equal(describeExpr(parseExpr('x offset 5m')), 'an offset modifier');
    assert.equal(describeExpr(parseExpr('x @ 100')), 'an @ modifier');
    assert.equal(describeExpr(parseExpr('x[5m:1m]')), 'a subquery');
    assert.equal(describeExpr(parseExpr('-x')), 'a unary expression');
    assert.equal(describeExpr(parseExpr('"s"')), 'a string');
    assert.equal(describeExpr(parseExpr('1.5')), 'a number');
    assert.equal(describeExpr(parseExpr('(x)')), 'a parenthesized expression');
    assert.equal(describeExpr(parseExpr('max(x)')), 'an aggregation');
  });
});
