/**
 * One sample line of the Prometheus text exposition format:
 *
 *     metric_name{label="value",...} value [timestamp_ms]
 *
 * The label part is read with the PromQL grammar (see selector.ts), so label values
 * follow PromQL string rules: `"…"`, `'…'` and `` `…` `` quoting, and the escapes listed
 * in strings.ts. That is a superset of the exposition format, whose values only use
 * `\\`, `\"` and `\n` inside `"…"`, all of which mean the same in PromQL; any other
 * backslash sequence follows PromQL (e.g. `\t` is a tab, `\d` an error).
 */
import { LabelMatchers, VectorSelector } from '@prometheus-io/lezer-promql';
import { METRIC_NAME_LABEL, canonicalLabels, isValidLabelName, isValidMetricName } from '../model/index.js';
import type { Label } from '../model/index.js';
import { PromqlSyntaxError } from './errors.js';
import { childOfType, parseExpr } from './parse.js';
import { readLabelMatchers } from './selector.js';

/** A parsed sample line. */
export interface ParsedSample {
  /** Canonical label set (sorted, empty values dropped), including `__name__`. */
  readonly labels: Label[];
  /** The sample value; may be `NaN` or ±`Infinity`. */
  readonly value: number;
  /** Unix milliseconds: the line's timestamp, or `nowMs` when it has none. */
  readonly timestampMs: number;
}

/**
 * Parses one sample line, e.g. `cpu{host="a",mode="idle"} 0.5 1700000000000`.
 *
 * - The metric name is required, before the braces or inside them as `__name__="…"` or
 *   a bare quoted name (`{"cpu", host="a"}`), but not both. It and the label names must
 *   satisfy the model's `isValidMetricName` / `isValidLabelName`, since these labels are
 *   stored; duplicate label names are refused. Only `=` may appear in the braces.
 * - The value is a decimal float (`1`, `-2.5`, `1e-3`, `.5`), `NaN`, or `Inf` /
 *   `+Inf` / `-Inf` (case-insensitive, `Infinity` too, as Go's `ParseFloat` reads them).
 *   A value beyond the float range (`1e999`) is refused rather than read as infinity.
 * - The timestamp is optional (then `nowMs` is used) and must be a base-10 integer of
 *   milliseconds within JavaScript's safe integer range.
 * - Space, tab and a trailing carriage return separate the fields; leading and trailing
 *   blanks are ignored.
 *
 * Blank lines and `#` lines (comments, `# HELP`, `# TYPE`) are not samples: the caller
 * must skip them before calling; given one, this function throws.
 *
 * @throws PromqlSyntaxError naming what is wrong, with the offset into `line`.
 */
export function parseSampleLine(line: string, nowMs: number): ParsedSample {
  // Typed explicitly so TypeScript narrows after a call, as it does after `throw`.
  const fail: (reason: string, position: number) => never = (reason, position) => {
    throw new PromqlSyntaxError(reason, position, line);
  };

  // The metric name is read here rather than by the grammar because the grammar treats
  // words like `nan`, `inf`, `offset` or `bool` as keywords, and they are fine metric
  // names in the exposition format. Only the braces need the grammar.
  const nameStart = skipBlanks(line, 0);
  let nameEnd = nameStart;
  while (nameEnd < line.length && /[A-Za-z0-9_:]/.test(line[nameEnd] ?? '')) nameEnd++;
  const outerName = line.slice(nameStart, nameEnd);
  if (outerName !== '' && !isValidMetricName(outerName)) fail(`invalid metric name ${JSON.stringify(outerName)}`, nameStart);

  let metric = outerName === '' ? undefined : { value: outerName, position: nameStart };
  const labels: Label[] = [];
  let selectorEnd = nameEnd;
  const braceStart = skipBlanks(line, nameEnd);
  if (line[braceStart] === '{') {
    const close = findClosingBrace(line, braceStart);
    selectorEnd = close === -1 ? line.length : close + 1;
    // Without a closing brace the grammar reports what is wrong (most often an
    // unterminated string) at the right place.
    const expr = parseExpr(line, { from: braceStart, to: selectorEnd });
    const braces = expr.type.id === VectorSelector ? childOfType(expr, LabelMatchers) : null;
    if (braces === null) fail('expected labels in braces', braceStart);
    const seen = new Set<string>();
    for (const m of readLabelMatchers(line, braces)) {
      if (m.op !== '=') {
        fail(`label ${JSON.stringify(m.name)} uses ${JSON.stringify(m.op)}: only "=" is allowed in a sample`, m.opPosition);
      }
      if (m.name === METRIC_NAME_LABEL) {
        if (metric !== undefined) {
          fail(`metric name must not be set twice: ${JSON.stringify(metric.value)} or ${JSON.stringify(m.value)}`, m.position);
        }
        metric = { value: m.value, position: m.bareName ? m.position : m.valuePosition };
        continue;
      }
      if (!isValidLabelName(m.name)) fail(`invalid label name ${JSON.stringify(m.name)}`, m.position);
      if (seen.has(m.name)) fail(`duplicate label name ${JSON.stringify(m.name)}`, m.position);
      seen.add(m.name);
      labels.push({ name: m.name, value: m.value });
    }
    if (metric === undefined) fail('sample has no metric name', braceStart);
  } else if (metric === undefined) {
    fail(
      braceStart >= line.length ? 'missing metric name' : `expected a metric name or "{", found ${JSON.stringify(line[braceStart])}`,
      braceStart,
    );
  } else if (nameEnd < line.length && !isBlank(line[nameEnd])) {
    fail(`unexpected character ${JSON.stringify(line[nameEnd])} after metric name ${JSON.stringify(outerName)}`, nameEnd);
  }
  if (!isValidMetricName(metric.value)) fail(`invalid metric name ${JSON.stringify(metric.value)}`, metric.position);
  labels.push({ name: METRIC_NAME_LABEL, value: metric.value });

  if (selectorEnd < line.length && !isBlank(line[selectorEnd])) {
    fail(`expected a blank after "}", found ${JSON.stringify(line[selectorEnd])}`, selectorEnd);
  }
  const fields = [...line.slice(selectorEnd).matchAll(/[^ \t\r\n]+/g)].map((m) => ({ text: m[0], position: selectorEnd + m.index }));
  const [valueField, timestampField, extra] = fields;
  if (valueField === undefined) fail('missing sample value', line.trimEnd().length);

  const value = parseValue(valueField.text);
  if (value === undefined) fail(`value ${JSON.stringify(valueField.text)} is not a number`, valueField.position);
  if (value === 'range') fail(`value ${JSON.stringify(valueField.text)} is out of range`, valueField.position);

  let timestampMs = nowMs;
  if (timestampField !== undefined) {
    const ts = parseTimestamp(timestampField.text);
    if (ts === undefined) fail(`timestamp ${JSON.stringify(timestampField.text)} is not a finite integer`, timestampField.position);
    if (ts === 'range') fail(`timestamp ${JSON.stringify(timestampField.text)} is out of range`, timestampField.position);
    timestampMs = ts;
  }
  if (extra !== undefined) fail(`unexpected ${JSON.stringify(extra.text)} after the timestamp`, extra.position);
  return { labels: canonicalLabels(labels), value, timestampMs };
}

const DECIMAL_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const INF_RE = /^([+-]?)inf(?:inity)?$/i;
const INTEGER_RE = /^[+-]?\d+$/;

/** The value of a sample value field; undefined when it is not a number. */
function parseValue(text: string): number | 'range' | undefined {
  if (/^nan$/i.test(text)) return NaN;
  const inf = INF_RE.exec(text);
  if (inf !== null) return inf[1] === '-' ? -Infinity : Infinity;
  if (!DECIMAL_RE.test(text)) return undefined;
  const n = Number(text);
  // Number() turns an overflow into Infinity; Go's ParseFloat reports it, and a
  // silently infinite sample would be worse than a refused line.
  return Number.isFinite(n) ? n : 'range';
}

/** The value of a timestamp field; undefined when it is not an integer. */
function parseTimestamp(text: string): number | 'range' | undefined {
  if (!INTEGER_RE.test(text)) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) return 'range';
  return n === 0 ? 0 : n; // no -0
}

function isBlank(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

function skipBlanks(line: string, from: number): number {
  let i = from;
  while (isBlank(line[i])) i++;
  return i;
}

/**
 * Offset of the `}` closing the brace at `open`, skipping quoted strings the way the
 * grammar tokenises them, so `}` or blanks inside a label value do not end the labels;
 * -1 when there is none.
 */
function findClosingBrace(line: string, open: number): number {
  for (let i = open + 1; i < line.length; i++) {
    const c = line[i];
    if (c === '}') return i;
    if (c === '`') {
      const end = line.indexOf('`', i + 1);
      // An unclosed backtick is not a string to the grammar either; it will report it.
      if (end !== -1) i = end;
    } else if (c === '"' || c === "'") {
      for (i++; i < line.length && line[i] !== c && line[i] !== '\n'; i++) {
        if (line[i] === '\\') i++;
      }
    }
  }
  return -1;
}
