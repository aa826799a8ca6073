/**
 * Refills `exp_samples` of promtool test files with what Prometheus computes, by running
 * promtool with an impossible expectation per case and reading its `got:` lines.
 * Run after adding cases: `node --import tsx libs/promql/testdata/regenerate.ts libs/promql/testdata/x.yml`.
 * The test (promtool-oracle.test.ts) then checks promtool still agrees and the engine matches.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { promtoolResults, runPromtool } from '../promtool-oracle.js';

const IMPOSSIBLE = [{ labels: '{__impossible__="1"}', value: 0 }];

async function regenerate(path: string): Promise<void> {
  const doc = parseDocument(await readFile(path, 'utf8'));
  const tests = doc.toJS() as { tests: Array<{ promql_expr_test?: unknown[] }> };
  tests.tests.forEach((t, i) => {
    (t.promql_expr_test ?? []).forEach((_c, j) => {
      doc.setIn(['tests', i, 'promql_expr_test', j, 'exp_samples'], doc.createNode(IMPOSSIBLE));
    });
  });
  const dir = await mkdtemp(join(tmpdir(), 'promql-regen-'));
  try {
    const tmp = join(dir, 'probe.yml');
    await writeFile(tmp, doc.toString());
    const { output } = await runPromtool(tmp);
    const results = promtoolResults(output);
    let k = 0;
    tests.tests.forEach((t, i) => {
      (t.promql_expr_test ?? []).forEach((_c, j) => {
        const r = results[k++];
        if (r === undefined) throw new Error(`promtool reported fewer cases than the file has:\n${output}`);
        const node = doc.createNode(r.got.map((g) => ({ labels: g.labels, value: g.value })));
        doc.setIn(['tests', i, 'promql_expr_test', j, 'exp_samples'], node);
      });
    });
    await writeFile(path, doc.toString());
    process.stdout.write(`${path}: ${k} cases filled\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

for (const p of process.argv.slice(2)) await regenerate(p);
