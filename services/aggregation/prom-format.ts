/**
 * The wire details of Prometheus' HTTP API that clients (Grafana, promtool) depend on:
 * how times and steps are parsed, how numbers are printed, and the shape of results. They
 * follow Prometheus 2.42 (`web/api/v1/api.go`, `util/jsonutil`), because a client that
 * works against Prometheus must work here unchanged.
 */
import type { Label } from '../../libs/model/index.js';
import type { PromValue } from '../../libs/promql/index.js';

/** Prometheus' `minTime`/`maxTime` as printed by Go (the sentinels clients send back). */
const MIN_TIME_FORMATTED = '-292273086-05-16T16:47:06Z';
const MAX_TIME_FORMATTED = '292277025-08-18T07:12:54.999999999Z';

/** The earliest and latest instants a request may name, in Unix milliseconds. */
export const MIN_TIME_MS = Number.MIN_SAFE_INTEGER;
/** See {@link MIN_TIME_MS}. */
export const MAX_TIME_MS = Number.MAX_SAFE_INTEGER;

/** A request parameter could not be parsed; the message is Prometheus' wording. */
export class ParamError extends Error {
  constructor(
    readonly param: string,
    detail: string,
  ) {
    super(`invalid parameter ${JSON.stringify(param)}: ${detail}`);
    this.name = 'ParamError';
  }
}

// Go's strconv.ParseFloat accepts decimal and exponent forms, "inf"/"infinity"/"nan" in any
// case, with an optional sign. Hex floats and underscores are left out: no client sends them.
const GO_FLOAT = /^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)$/;
const GO_SPECIAL = /^([+-]?)(inf|infinity|nan)$/i;

function parseGoFloat(s: string): number | undefined {
  if (GO_FLOAT.test(s)) return Number(s);
  const m = GO_SPECIAL.exec(s);
  if (!m) return undefined;
  if (m[2]!.toLowerCase() === 'nan') return NaN;
  return m[1] === '-' ? -Infinity : Infinity;
}

// RFC 3339 with optional fraction, as Go's time.RFC3339Nano parser accepts it.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Parses a time parameter like Prometheus: Unix seconds as a float (rounded to the
 * millisecond) or RFC 3339. Returns Unix milliseconds.
 */
export function parseTime(s: string): number {
  const f = parseGoFloat(s);
  if (f !== undefined) {
    if (!Number.isFinite(f)) throw new Error(`cannot parse ${JSON.stringify(s)} to a valid timestamp`);
    // Whole seconds plus the fraction rounded to milliseconds, as Prometheus does.
    const sec = Math.trunc(f);
    return sec * 1000 + Math.round((f - sec) * 1000);
  }
  const m = RFC3339.exec(s);
  if (m) {
    const ms = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[8]!.toUpperCase()}`);
    // Milliseconds truncated from the fraction's digits (no float rounding), as Prometheus'
    // timestamp.FromTime truncates nanoseconds.
    if (!Number.isNaN(ms)) return ms + Number(`${(m[7] ?? '.').slice(1)}000`.slice(0, 3));
  }
  if (s === MIN_TIME_FORMATTED) return MIN_TIME_MS;
  if (s === MAX_TIME_FORMATTED) return MAX_TIME_MS;
  throw new Error(`cannot parse ${JSON.stringify(s)} to a valid timestamp`);
}

const UNITS: ReadonlyArray<[string, number]> = [
  ['y', 365 * 24 * 3600_000],
  ['w', 7 * 24 * 3600_000],
  ['d', 24 * 3600_000],
  ['h', 3600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
];
// Prometheus' model.ParseDuration: units in decreasing order, each at most once.
const DURATION = /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/;

/**
 * Parses a duration parameter (`step`, `timeout`) like Prometheus: seconds as a float, or
 * a Prometheus duration such as `1m30s`. Returns milliseconds (fractions kept, as a Go
 * `time.Duration` keeps nanoseconds).
 */
export function parseDuration(s: string): number {
  const f = parseGoFloat(s);
  if (f !== undefined) {
    const ns = f * 1e9;
    if (!Number.isFinite(ns) || Math.abs(ns) > 9.223372036854776e18) {
      throw new Error(`cannot parse ${JSON.stringify(s)} to a valid duration. It overflows int64`);
    }
    return Math.trunc(ns) / 1e6;
  }
  const m = DURATION.exec(s);
  if (m && m.slice(1).some((g) => g !== undefined)) {
    let ms = 0;
    for (const [i, [, unit]] of UNITS.entries()) if (m[i + 1] !== undefined) ms += Number(m[i + 1]) * unit;
    return ms;
  }
  throw new Error(`cannot parse ${JSON.stringify(s)} to a valid duration`);
}

/**
 * Parses optional parameter `name` as a time, `fallback` when absent (Prometheus'
 * `parseTimeParam`, used for `time` and the metadata endpoints' `start`/`end`); errors
 * name the parameter in Prometheus' words.
 */
export function timeParam(params: URLSearchParams, name: string, fallback: number): number {
  const raw = params.get(name);
  if (raw === null || raw === '') return fallback;
  try {
    return parseTime(raw);
  } catch (err) {
    throw new ParamError(name, `Invalid time value for '${name}': ${(err as Error).message}`);
  }
}

/** Parses required parameter `name` as a time (query_range's `start` and `end`). */
export function requiredTimeParam(params: URLSearchParams, name: string): number {
  try {
    return parseTime(params.get(name) ?? '');
  } catch (err) {
    throw new ParamError(name, (err as Error).message);
  }
}

/** Parses parameter `name` as a duration; errors name the parameter. */
export function durationParam(params: URLSearchParams, name: string): number {
  try {
    return parseDuration(params.get(name) ?? '');
  } catch (err) {
    throw new ParamError(name, (err as Error).message);
  }
}

/**
 * A sample value as Prometheus prints it (Go's `FormatFloat(v, 'f', -1, 64)`): shortest
 * round-trip digits, never exponent notation, `NaN`, `+Inf`, `-Inf`.
 */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  const s = String(v);
  const e = s.indexOf('e');
  if (e === -1) return s;
  // Expand JavaScript's exponent form into plain digits.
  const neg = s.startsWith('-');
  const mantissa = s.slice(neg ? 1 : 0, e);
  const exp = Number(s.slice(e + 1));
  const [int, frac = ''] = mantissa.split('.');
  const digits = int! + frac;
  const point = int!.length + exp;
  let out: string;
  if (point <= 0) out = `0.${'0'.repeat(-point)}${digits}`;
  else if (point >= digits.length) out = digits + '0'.repeat(point - digits.length);
  else out = `${digits.slice(0, point)}.${digits.slice(point)}`;
  return neg ? `-${out}` : out;
}

/**
 * A timestamp as Prometheus prints it: Unix seconds with the milliseconds as a fraction
 * and no trailing zeros (a JSON number).
 */
export function formatTimestamp(ms: number): number {
  return ms / 1000;
}

function metric(labels: readonly Label[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of labels) out[l.name] = l.value;
  return out;
}

/** The `data` object of a query answer: `{resultType, result}` in Prometheus' shape. */
export function resultJson(v: PromValue): { resultType: string; result: unknown } {
  switch (v.type) {
    case 'scalar':
      return { resultType: 'scalar', result: [formatTimestamp(v.value[0]), formatValue(v.value[1])] };
    case 'string':
      return { resultType: 'string', result: [formatTimestamp(v.value[0]), v.value[1]] };
    case 'vector':
      return {
        resultType: 'vector',
        result: v.value.map((s) => ({ metric: metric(s.labels), value: [formatTimestamp(s.timestampMs), formatValue(s.value)] })),
      };
    case 'matrix':
      return {
        resultType: 'matrix',
        result: v.value.map((s) => ({ metric: metric(s.labels), values: s.points.map(([t, x]) => [formatTimestamp(t), formatValue(x)]) })),
      };
  }
}

/** Label sets as Prometheus' `/api/v1/series` prints them. */
export function labelSetsJson(sets: ReadonlyArray<readonly Label[]>): Array<Record<string, string>> {
  return sets.map(metric);
}
