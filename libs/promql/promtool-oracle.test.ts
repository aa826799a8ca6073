/**
 * Differential test against the real Prometheus: every case in testdata/*.yml is run
 * through `promtool test rules` (Prometheus 2.42's own engine, which must still produce
 * the recorded exp_samples) and through this engine, which must produce the same
 * samples. promtool is installed by scripts/ensure-deps.sh --test; this test does not
 * skip without it.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { instantQuery } from './engine.js';
import type { PromValue } from './engine.js';
import { LabelSet } from './labelset.js';
import { labelsOfNotation, loadOracleFile, runPromtool } from './promtool-oracle.js';
import { staticQueryable } from './testing.js';

const dir = join(import.meta.dirname, 'testdata');
const files = readdirSync(dir).filter((f) => f.endsWith('.yml')).sort();

/** Engine output as promtool prints it: sorted `{labels} value` pairs. */
function normalize(v: PromValue): Array<{ labels: string; value: number }> {
  if (v.type === 'scalar') return [{ labels: '{}', value: v.value[1] }];
  if (v.type !== 'vector') throw new Error(`unexpected ${v.type} result`);
  return v.value.map((s) => ({ labels: LabelSet.from(s.labels).toString(), value: s.value })).sort((a, b) => (a.labels < b.labels ? -1 : a.labels > b.labels ? 1 : 0));
}

/**
 * Go's math.Exp (used by Pow for fractional exponents) is amd64 assembly, with or
 * without FMA depending on the CPU, and can differ from V8's exp in the last bit.
 * Expressions using them may differ by 2 ulp; everything else must match exactly.
 */
const LIBM = /\^|\bexp\(/;

function sameValue(a: number, b: number, expr: string): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  if (a === b) return true;
  return LIBM.test(expr) && Math.abs(a - b) <= 2 * Number.EPSILON * Math.max(Math.abs(a), Math.abs(b));
}

describe('engine against promtool (Prometheus 2.42)', () => {
  for (const file of files) {
    it(`${file}: promtool agrees with the recorded samples`, async () => {
      const res = await runPromtool(join(dir, file));
      assert.ok(res.ok, res.output);
    });

    it(`${file}: the engine produces the recorded samples`, async () => {
      const groups = await loadOracleFile(join(dir, file));
      const failures: string[] = [];
      let cases = 0;
      for (const g of groups) {
        const q = staticQueryable(g.series);
        for (const c of g.cases) {
          cases++;
          // Normalise the expected label text through the same printer as ours.
          const expected = c.expected
            .map((e) => ({ labels: LabelSet.from(labelsOfNotation(e.labels)).toString(), value: e.value }))
            .sort((a, b) => (a.labels < b.labels ? -1 : a.labels > b.labels ? 1 : 0));
          let got: Array<{ labels: string; value: number }>;
          try {
            got = normalize(await instantQuery(q, c.expr, c.evalTimeMs));
          } catch (err) {
            failures.push(`${c.expr} @${c.evalTimeMs}: threw ${String(err)}`);
            continue;
          }
          const ok = got.length === expected.length && got.every((s, i) => s.labels === expected[i]?.labels && sameValue(s.value, expected[i]?.value ?? NaN, c.expr));
          if (!ok) failures.push(`${c.expr} @${c.evalTimeMs}ms:\n  want ${JSON.stringify(expected)}\n  got  ${JSON.stringify(got)}`);
        }
      }
      assert.ok(cases > 0, 'no cases in file');
      assert.deepEqual(failures, []);
    });
  }
});
