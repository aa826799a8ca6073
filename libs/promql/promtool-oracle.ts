/**
 * Test support: runs promtool unit-test files (libs/promql/testdata/*.yml) through both
 * Prometheus' own `promtool test rules` and this engine, so the engine is checked
 * against the real thing. Only for tests; it spawns promtool.
 *
 * The files use promtool's format: `input_series` in series notation
 * (`x{a="1"}` with values like `0+10x5 _ stale 3`) and `promql_expr_test` entries with
 * `expr`, `eval_time` and `exp_samples`. The expected samples were produced by promtool
 * (see {@link promtoolResults}) and are re-checked by promtool on every run.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { canonicalLabels } from '../model/index.js';
import type { Label, Matcher, SeriesSamples } from '../model/index.js';
import { parseDurationMs } from './ast.js';
import { parseSelector } from './selector.js';

const run = promisify(execFile);

/** One promql_expr_test entry. */
export interface OracleCase {
  readonly expr: string;
  readonly evalTimeMs: number;
  readonly expected: ReadonlyArray<{ readonly labels: string; readonly value: number }>;
}

/** One test group of a promtool file: its series and its cases. */
export interface OracleGroup {
  readonly series: SeriesSamples[];
  readonly cases: OracleCase[];
}

interface RawFile {
  tests?: Array<{
    interval?: string;
    input_series?: Array<{ series: string; values: string }>;
    promql_expr_test?: Array<{ expr: string; eval_time?: string; exp_samples?: Array<{ labels?: string; value: number | string }> }>;
  }>;
}

/** Labels of a series written in promtool's notation (`x{a="1"}` or `{__name__="x"}`). */
export function labelsOfNotation(text: string): Label[] {
  if (text.trim() === '{}') return [];
  return canonicalLabels(parseSelector(text).map((m: Matcher) => ({ name: m.name, value: m.value })));
}

/**
 * Values as a Float64Array typed as number[]: V8 replaces any NaN stored in a plain
 * number array by the canonical NaN, which would erase staleness markers, while typed
 * arrays keep the bits. The engine only indexes `values`, so either works at run time.
 */
function preservingBits(values: readonly number[], stale: ReadonlySet<number>): number[] {
  const out = new Float64Array(values.length);
  const words = new Uint32Array(out.buffer);
  values.forEach((v, i) => {
    if (stale.has(i)) {
      // Little-endian word order: low word first. 0x7ff0000000000002 = StaleNaN.
      words[2 * i] = 2;
      words[2 * i + 1] = 0x7ff00000;
    } else out[i] = v;
  });
  return out as unknown as number[];
}

/** Expands promtool's series value notation into samples at `i * intervalMs`. */
export function expandValues(notation: string, intervalMs: number): { timestampsMs: number[]; values: number[] } {
  const timestampsMs: number[] = [];
  const values: number[] = [];
  const stale = new Set<number>();
  let i = 0;
  const num = (s: string): number => {
    const l = s.toLowerCase().replace(/^\+/, '');
    if (l === 'inf') return Infinity;
    if (l === '-inf') return -Infinity;
    if (l === 'nan') return NaN;
    const v = Number(s);
    if (Number.isNaN(v)) throw new Error(`bad number ${JSON.stringify(s)} in series notation`);
    return v;
  };
  for (const item of notation.trim().split(/\s+/)) {
    if (item === '') continue;
    const blank = /^_(?:x(\d+))?$/.exec(item);
    if (blank !== null) {
      i += blank[1] === undefined ? 1 : Number(blank[1]);
      continue;
    }
    if (item === 'stale') {
      timestampsMs.push(i * intervalMs);
      stale.add(values.length);
      values.push(NaN);
      i++;
      continue;
    }
    const rep = /^([-+]?[^-+x]+)([-+])([^x]+)x(\d+)$/.exec(item);
    if (rep !== null) {
      const start = num(rep[1] ?? '');
      const inc = num(rep[3] ?? '') * (rep[2] === '-' ? -1 : 1);
      const n = Number(rep[4]);
      for (let k = 0; k <= n; k++) {
        timestampsMs.push(i * intervalMs);
        values.push(start + k * inc);
        i++;
      }
      continue;
    }
    timestampsMs.push(i * intervalMs);
    values.push(num(item));
    i++;
  }
  return { timestampsMs, values: preservingBits(values, stale) };
}

/** Reads a promtool test file. */
export async function loadOracleFile(path: string): Promise<OracleGroup[]> {
  const raw = parseYaml(await readFile(path, 'utf8')) as RawFile;
  return (raw.tests ?? []).map((t) => {
    const intervalMs = parseDurationMs(t.interval ?? '1m') ?? 60_000;
    const series = (t.input_series ?? []).map((s) => ({ labels: labelsOfNotation(s.series), ...expandValues(s.values, intervalMs) }));
    const cases = (t.promql_expr_test ?? []).map((c) => ({
      expr: c.expr,
      evalTimeMs: parseDurationMs(c.eval_time ?? '0s') ?? 0,
      expected: (c.exp_samples ?? []).map((e) => ({ labels: e.labels ?? '{}', value: Number(e.value) })),
    }));
    return { series, cases };
  });
}

/**
 * Runs `promtool test rules` on a file. Returns ok, or the failure report; each failed
 * case's `got:` line is what Prometheus computed.
 */
export async function runPromtool(path: string): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await run('promtool', ['test', 'rules', path], { timeout: 30_000 });
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message };
  }
}

/**
 * Parses promtool's failure report into what Prometheus computed, one entry per failed
 * case in file order: `got: {a="1"} 1.5E+00, {a="2"} 3E+00`.
 */
export function promtoolResults(output: string): Array<{ expr: string; got: Array<{ labels: string; value: number }> }> {
  const out: Array<{ expr: string; got: Array<{ labels: string; value: number }> }> = [];
  const re = /expr: ("(?:[^"\\]|\\.)*"), time: (\S+),\n\s+exp: .*\n\s+got: (.*)/g;
  for (let m = re.exec(output); m !== null; m = re.exec(output)) {
    const expr = JSON.parse(m[1] ?? '""') as string;
    const got: Array<{ labels: string; value: number }> = [];
    const sampleRe = /((?:[a-zA-Z_:][\w:]*)?\{[^}]*\}) (\S+?)(?:, |$)/g;
    const text = m[3] ?? '';
    for (let s = sampleRe.exec(text); s !== null; s = sampleRe.exec(text)) {
      got.push({ labels: s[1] ?? '{}', value: Number((s[2] ?? '').replace(/^\+Inf$/, 'Infinity').replace(/^-Inf$/, '-Infinity')) });
    }
    out.push({ expr, got });
  }
  return out;
}
