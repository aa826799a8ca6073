/**
 * Range queries against the real Prometheus 2.42 (Debian's `prometheus`, installed by
 * scripts/ensure-deps.sh --test): the same samples are written as TSDB blocks with
 * `promtool tsdb create-blocks-from openmetrics`, a Prometheus server is started on
 * 127.0.0.1 over them, and every query's `/api/v1/query_range` answer must equal the
 * engine's, point for point. promtool-oracle.test.ts covers instant queries the same way.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { freePort } from '../bus/testing.js';
import { canonicalLabels } from '../model/index.js';
import type { SeriesSamples } from '../model/index.js';
import { rangeQuery } from './engine.js';
import { LabelSet } from './labelset.js';
import { staticQueryable } from './testing.js';

const run = promisify(execFile);

/** Deterministic pseudo-random data (an LCG), so failures reproduce. */
function makeSeries(): SeriesSamples[] {
  let seed = 42;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const out: SeriesSamples[] = [];
  for (const job of ['a', 'b', 'c']) {
    for (const inst of ['1', '2']) {
      const timestampsMs: number[] = [];
      const values: number[] = [];
      let v = 0;
      for (let i = 0; i < 240; i++) {
        // job c has a gap longer than the lookback; job b resets once.
        if (job === 'c' && i > 100 && i < 130) continue;
        v += rand(11);
        if (job === 'b' && i === 150) v = 3;
        timestampsMs.push((1000 + i * 15) * 1000);
        values.push(v);
      }
      out.push({ labels: canonicalLabels([{ name: '__name__', value: 'x' }, { name: 'job', value: job }, { name: 'inst', value: inst }]), timestampsMs, values });
    }
  }
  const perStep: Record<string, number> = { '0.1': 1, '0.5': 3, '1': 4, '+Inf': 6 };
  for (const le of Object.keys(perStep)) {
    const timestampsMs: number[] = [];
    const values: number[] = [];
    let c = 0;
    for (let i = 0; i < 240; i++) {
      c += (perStep[le] ?? 0) * (1 + (i % 3));
      timestampsMs.push((1000 + i * 15) * 1000);
      values.push(c);
    }
    out.push({ labels: canonicalLabels([{ name: '__name__', value: 'h_bucket' }, { name: 'le', value: le }]), timestampsMs, values });
  }
  return out;
}

function openMetrics(series: readonly SeriesSamples[]): string {
  const byName = new Map<string, string[]>();
  for (const s of series) {
    const name = s.labels.find((l) => l.name === '__name__')?.value ?? '';
    const labels = s.labels
      .filter((l) => l.name !== '__name__')
      .map((l) => `${l.name}=${JSON.stringify(l.value)}`)
      .join(',');
    const lines = byName.get(name) ?? [];
    s.timestampsMs.forEach((t, i) => lines.push(`${name}{${labels}} ${s.values[i] ?? 0} ${t / 1000}`));
    byName.set(name, lines);
  }
  let text = '';
  for (const [name, lines] of byName) text += `# TYPE ${name} gauge\n${lines.join('\n')}\n`;
  return `${text}# EOF\n`;
}

const QUERIES = [
  'x',
  'x{job="c"}',
  'rate(x[1m])',
  'increase(x[2m])',
  'sum by (job) (rate(x[1m]))',
  'x offset 1m',
  'x @ 2000',
  'x @ start()',
  'rate(x[1m] @ end())',
  'predict_linear(x[3m] offset 2m, 60)',
  'max_over_time(x[5m:1m])',
  'rate(x[2m:30s])',
  'min_over_time(rate(x[1m])[3m:45s] offset 30s)',
  'avg_over_time(x[3m:20s] @ 2500)',
  'histogram_quantile(0.9, rate(h_bucket[2m]))',
  'topk(2, x)',
  'topk(2, deriv(x[3m]))',
  'bottomk by (job) (1, deriv(x[3m]))',
  'count(topk(3, deriv(x[3m])))',
  'topk(2, sum by (job) (deriv(x[3m])))',
  'topk(1 + 1, deriv(x[3m]))',
  'bottomk(0, deriv(x[3m]))',
  'x > bool 500',
  'x > 500',
  'time()',
  'scalar(sum(x))',
  'sum(x) / on() group_left count(x)',
  'absent(nonexistent{job="z"})',
  'absent_over_time(x{job="c"}[1m])',
  'deriv(x[3m])',
  'timestamp(x)',
  'changes(x[5m])',
  'resets(x[5m])',
  'last_over_time(x[1m])',
  'count_values("v", x % 3)',
  'label_replace(rate(x[1m]), "j", "$1$1", "job", "(.)")',
];

const RANGES: Array<[start: number, end: number, step: number]> = [
  [1100, 4400, 30],
  [1103, 4000, 17],
];

describe('range queries against Prometheus 2.42', () => {
  let dir = '';
  let prom: ChildProcess | undefined;
  let base = '';
  const series = makeSeries();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'promql-range-'));
    await writeFile(join(dir, 'data.om'), openMetrics(series));
    await run('promtool', ['tsdb', 'create-blocks-from', 'openmetrics', join(dir, 'data.om'), join(dir, 'tsdb')], { timeout: 30_000 });
    await writeFile(join(dir, 'prometheus.yml'), 'global:\n  scrape_interval: 1h\n');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    prom = spawn(
      'prometheus',
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, '--storage.tsdb.retention.time=100y', `--web.listen-address=127.0.0.1:${port}`],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const res = await fetch(`${base}/-/ready`);
        if (res.ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error('prometheus did not become ready in 30 s');
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  after(async () => {
    if (prom !== undefined && prom.exitCode === null) {
      const exited = new Promise((r) => prom?.once('exit', r));
      prom.kill('SIGTERM');
      await exited;
    }
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  for (const [start, end, step] of RANGES) {
    it(`matches for ${QUERIES.length} queries over ${start}…${end} s step ${step} s`, async () => {
      const q = staticQueryable(series);
      const failures: string[] = [];
      for (const expr of QUERIES) {
        const url = `${base}/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${start}&end=${end}&step=${step}`;
        const body = (await (await fetch(url)).json()) as {
          status: string;
          error?: string;
          data?: { result: Array<{ metric: Record<string, string>; values: Array<[number, string]> }> };
        };
        assert.equal(body.status, 'success', `${expr}: ${body.error ?? ''}`);
        const want = new Map<string, string>();
        for (const r of body.data?.result ?? []) {
          const key = LabelSet.from(Object.entries(r.metric).map(([name, value]) => ({ name, value }))).toString();
          want.set(key, JSON.stringify(r.values.map(([t, v]) => [Math.round(t * 1000), Number(v.replace('Inf', 'Infinity'))])));
        }
        const got = new Map<string, string>();
        for (const s of (await rangeQuery(q, expr, start * 1000, end * 1000, step * 1000)).value) {
          got.set(LabelSet.from(s.labels).toString(), JSON.stringify(s.points));
        }
        const keys = new Set([...want.keys(), ...got.keys()]);
        for (const k of keys) {
          if (want.get(k) !== got.get(k)) failures.push(`${expr} ${k}:\n  want ${want.get(k) ?? 'nothing'}\n  got  ${got.get(k) ?? 'nothing'}`);
        }
      }
      assert.deepEqual(failures, []);
    });
  }
});
