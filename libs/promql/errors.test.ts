import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError, TelemeshError } from '../runtime/errors.js';
import { PromqlSyntaxError } from './errors.js';

describe('PromqlSyntaxError', () => {
  it('formats single-line positions like Prometheus, 1-based for humans', () => {
    const err = new PromqlSyntaxError('unexpected end of input', 3, 'cpu{');
    assert.equal(err.message, 'parse error at char 4: unexpected end of input');
    assert.equal(err.position, 3);
    assert.equal(err.reason, 'unexpected end of input');
    assert.equal(err.line, 1);
    assert.equal(err.column, 4);
  });

  it('names line and column when the input spans lines', () => {
    const input = 'up\n  {a="b"} +';
    const err = new PromqlSyntaxError('x', 5, input);
    assert.equal(err.message, 'parse error at line 2, char 3: x');
    assert.equal(err.line, 2);
    assert.equal(err.column, 3);
  });

  it('ignores leading and trailing newlines when choosing the format, as Prometheus does', () => {
    assert.equal(new PromqlSyntaxError('x', 0, 'up\n').message, 'parse error at char 1: x');
    assert.equal(new PromqlSyntaxError('x', 3, '\nup{').message, 'parse error at char 3: x');
  });

  it('clamps positions into the input', () => {
    assert.equal(new PromqlSyntaxError('x', 99, 'ab').position, 2);
    assert.equal(new PromqlSyntaxError('x', -1, 'ab').position, 0);
  });

  it('is an invalid_argument domain error with its own name', () => {
    const err = new PromqlSyntaxError('x', 0, '');
    assert.ok(err instanceof InvalidArgumentError);
    assert.ok(err instanceof TelemeshError);
    assert.equal(err.kind, 'invalid_argument');
    assert.equal(err.name, 'PromqlSyntaxError');
  });
});
