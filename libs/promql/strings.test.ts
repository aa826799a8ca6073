import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PromqlSyntaxError } from './errors.js';
import { isTerminatedString, unquoteString } from './strings.js';

/** Unquotes a literal standing alone, so offsets in errors are offsets into `raw`. */
const unq = (raw: string): string => unquoteString(raw, 0, raw);

function assertFails(raw: string, reason: RegExp, position: number): void {
  assert.throws(
    () => unq(raw),
    (err: unknown) => {
      assert.ok(err instanceof PromqlSyntaxError, String(err));
      assert.match(err.reason, reason);
      assert.equal(err.position, position, `position for ${raw}`);
      return true;
    },
  );
}

describe('unquoteString', () => {
  it('returns the body of plain literals in all three quotings', () => {
    assert.equal(unq('"abc"'), 'abc');
    assert.equal(unq("'abc'"), 'abc');
    assert.equal(unq('`abc`'), 'abc');
    assert.equal(unq('""'), '');
  });

  it('decodes the simple escapes', () => {
    assert.equal(unq(String.raw`"\a\b\f\n\r\t\v\\"`), '\x07\b\f\n\r\t\v\\');
    assert.equal(unq(String.raw`"say \"hi\""`), 'say "hi"');
    assert.equal(unq(String.raw`'it\'s'`), "it's");
  });

  it('only lets the enclosing quote be escaped, as Go does', () => {
    assertFails(String.raw`"\'"`, /unknown escape sequence "\\\\'"/, 1);
    assertFails(String.raw`'\"'`, /unknown escape sequence/, 1);
  });

  it('leaves raw strings alone, newlines and backslashes included', () => {
    assert.equal(unq('`a\\n\\d\nb`'), 'a\\n\\d\nb');
    assert.equal(unq('`"\'`'), `"'`);
  });

  it('keeps the other quote character and unicode as is', () => {
    assert.equal(unq(`"it's"`), "it's");
    assert.equal(unq(`'say "hi"'`), 'say "hi"');
    assert.equal(unq('"日本語 😀 ü"'), '日本語 😀 ü');
  });

  it('decodes octal, hex and unicode escapes; byte runs as UTF-8', () => {
    assert.equal(unq(String.raw`"\101\x42\u0043"`), 'ABC');
    assert.equal(unq(String.raw`"\xc3\xa9"`), 'é');
    assert.equal(unq(String.raw`"\303\251"`), 'é');
    assert.equal(unq(String.raw`"\U0001F600"`), '😀');
    assert.equal(unq(String.raw`"\u00e9\xc3\xa9"`), 'éé');
  });

  it('rejects malformed escapes, pointing at the backslash', () => {
    assertFails(String.raw`"ab\d"`, /unknown escape sequence "\\\\d"/, 3);
    assertFails(String.raw`"\x4"`, /need 2 hex digits/, 1);
    assertFails(String.raw`"\u12g4"`, /need 4 hex digits/, 1);
    assertFails(String.raw`"\12"`, /octal/, 1);
    assertFails(String.raw`"\400"`, /octal/, 1);
    assertFails(String.raw`"\ud800"`, /not a Unicode code point/, 1);
    assertFails(String.raw`"\U00110000"`, /not a Unicode code point/, 1);
    assertFails(String.raw`"ok\xff"`, /valid UTF-8/, 3);
    assertFails('"a\\\nb"', /unknown escape sequence/, 2);
  });

  it('reports unterminated literals at their start', () => {
    assertFails('"abc', /unterminated quoted string/, 0);
    assertFails(String.raw`"abc\"`, /unterminated quoted string/, 0);
    assertFails("'abc", /unterminated quoted string/, 0);
  });

  it('offsets error positions by where the literal sits in the input', () => {
    const input = 'x{a="\\q"}';
    assert.throws(() => unquoteString('"\\q"', 4, input), (err: unknown) => err instanceof PromqlSyntaxError && err.position === 5);
  });
});

describe('isTerminatedString', () => {
  it('tells closed literals from open ones', () => {
    assert.equal(isTerminatedString('"a"'), true);
    assert.equal(isTerminatedString('"a\\"'), false);
    assert.equal(isTerminatedString('"a\\\\"'), true);
    assert.equal(isTerminatedString('`a'), false);
    assert.equal(isTerminatedString('"'), false);
  });
});
