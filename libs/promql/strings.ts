import { PromqlSyntaxError } from './errors.js';

/**
 * PromQL string literals. The lezer grammar's `StringLiteral` token is borrowed from
 * JavaScript and is more lenient than PromQL: it accepts an unterminated `"`/`'` string
 * and any character after a backslash. So the token only tells us where a string is; this
 * module applies the real rules, which Prometheus takes from Go's `strconv.Unquote`
 * (minus the one-character limit on single-quoted strings):
 *
 * - `"…"` and `'…'` allow `\a \b \f \n \r \t \v \\`, the escape of the *same* quote
 *   character, `\NNN` (3 octal digits, at most 255), `\xNN`, `\uNNNN` and `\UNNNNNNNN`.
 *   Any other escape is an error, as is `\'` inside `"…"`.
 * - `` `…` `` is raw: no escapes, may span lines.
 *
 * `\NNN` and `\xNN` denote bytes. Go lets such bytes form invalid UTF-8; JavaScript
 * strings cannot hold raw bytes, so a run of byte escapes must decode as UTF-8 (e.g.
 * `\xc3\xa9` is `é`) or the literal is rejected.
 */

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** True when `raw` (a `StringLiteral` token's text) has its closing quote. */
export function isTerminatedString(raw: string): boolean {
  return closingQuoteIndex(raw) === raw.length - 1;
}

/**
 * Index of the quote that closes the literal starting at `raw[0]`, or -1 when it is
 * never closed. An escaped quote does not close a `"`/`'` string.
 */
function closingQuoteIndex(raw: string): number {
  const quote = raw[0];
  if (quote === '`') {
    const end = raw.indexOf('`', 1);
    return end;
  }
  for (let i = 1; i < raw.length; i++) {
    const c = raw[i];
    if (c === '\\') i++;
    else if (c === quote) return i;
    else if (c === '\n') return -1;
  }
  return -1;
}

/**
 * Returns the value of a PromQL string literal.
 *
 * @param raw The literal as written, quotes included (a `StringLiteral` node's text).
 * @param position Offset of `raw` in `input`, so errors point at the offending character.
 * @param input The whole parsed text, for error messages.
 * @throws PromqlSyntaxError for an unterminated literal or an invalid escape sequence.
 */
export function unquoteString(raw: string, position: number, input: string): string {
  const quote = raw[0];
  if (quote !== '"' && quote !== "'" && quote !== '`') {
    throw new PromqlSyntaxError(`expected a quoted string, got ${JSON.stringify(raw)}`, position, input);
  }
  const close = closingQuoteIndex(raw);
  if (close === -1) throw new PromqlSyntaxError('unterminated quoted string', position, input);
  if (close !== raw.length - 1) {
    // The grammar hands us exactly one token, so text after the closing quote would be
    // a bug in the caller, but report it as a syntax error rather than drop it.
    throw new PromqlSyntaxError(`unexpected ${JSON.stringify(raw.slice(close + 1))} after string`, position + close + 1, input);
  }
  const body = raw.slice(1, -1);
  if (quote === '`' || !body.includes('\\')) return body;

  let out = '';
  // Byte escapes are gathered and decoded together, since one character may take several.
  let bytes: number[] = [];
  let bytesAt = 0;
  const flushBytes = (): void => {
    if (bytes.length === 0) return;
    try {
      out += utf8.decode(new Uint8Array(bytes));
    } catch {
      throw new PromqlSyntaxError('byte escape sequences do not form valid UTF-8', position + 1 + bytesAt, input);
    }
    bytes = [];
  };

  for (let i = 0; i < body.length; ) {
    const c = body[i];
    if (c !== '\\') {
      flushBytes();
      out += c;
      i++;
      continue;
    }
    const at = i;
    const fail = (what: string): never => {
      throw new PromqlSyntaxError(what, position + 1 + at, input);
    };
    const e = body[i + 1];
    if (e === undefined) fail('unterminated escape sequence');
    else if (Object.hasOwn(SIMPLE_ESCAPES, e) || e === quote) {
      flushBytes();
      out += SIMPLE_ESCAPES[e] ?? e;
      i += 2;
    } else if (e >= '0' && e <= '7') {
      const digits = body.slice(i + 1, i + 4);
      const value = /^[0-7]{3}$/.test(digits) ? parseInt(digits, 8) : NaN;
      if (!(value <= 255)) fail(`invalid octal escape sequence ${JSON.stringify(`\\${digits}`)}: need 3 octal digits at most \\377`);
      if (bytes.length === 0) bytesAt = at;
      bytes.push(value);
      i += 4;
    } else if (e === 'x' || e === 'u' || e === 'U') {
      const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const digits = body.slice(i + 2, i + 2 + len);
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(digits)) {
        fail(`invalid escape sequence ${JSON.stringify(`\\${e}${digits}`)}: need ${len} hex digits`);
      }
      const value = parseInt(digits, 16);
      if (e === 'x') {
        if (bytes.length === 0) bytesAt = at;
        bytes.push(value);
      } else {
        // Go rejects surrogate halves and values beyond Unicode, so do we.
        if (value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) {
          fail(`invalid escape sequence ${JSON.stringify(`\\${e}${digits}`)}: not a Unicode code point`);
        }
        flushBytes();
        out += String.fromCodePoint(value);
      }
      i += 2 + len;
    } else {
      fail(`unknown escape sequence ${JSON.stringify(`\\${e}`)}`);
    }
  }
  flushBytes();
  return out;
}
