/**
 * `node --import tsx bench/promql/run.ts` (proposed script: `npm run bench:promql`): what the
 * PromQL engine alone costs, without store, HTTP or JSON. Data comes from an in-memory
 * Queryable, so the figures are evaluation time only: 1 day of 15 s samples for
 * BENCH_PROMQL_SERIES series (default 1000; counters and classic histogram buckets),
 * range queries over the whole day at a 60 s step, each run at most ITERATIONS times and
 * no more once it has used BUDGET_MS. Nothing listens on the network. Writes bench/results/promql.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalLabels, compileMatcher, matchesAll } from '../../libs/model/index.js';
import type { SeriesSamples } from '../../libs/model/index.js';
import { rangeQuery } from '../../libs/promql/index.js';
import type { Queryable } from '../../libs/promql/index.js';

const SERIES = Number(process.env.BENCH_PROMQL_SERIES ?? 1000);
const ITERATIONS = 5;
/** Per query: stop repeating once a query has used this much time (at least one run each). */
const BUDGET_MS = 20_000;
const SCRAPE_MS = 15_000;
const DAY = 86_400_000;
const STEP_MS = 60_000;

function makeData(): SeriesSamples[] {
  const n = DAY / SCRAPE_MS;
  const ts = Array.from({ length: n }, (_, i) => i * SCRAPE_MS);
  const out: SeriesSamples[] = [];
  const counters = Math.floor(SERIES * 0.8);
  for (let s = 0; s < counters; s++) {
    let v = 0;
    const values = ts.map((_, i) => (v += (s % 7) + (i % 5)));
    out.push({ labels: canonicalLabels([{ name: '__name__', value: 'http_requests_total' }, { name: 'job', value: `job${s % 10}` }, { name: 'instance', value: `i${s}` }]), timestampsMs: ts, values });
  }
  const LE = ['0.1', '0.5', '1', '5', '+Inf'];
  for (let s = 0; out.length < SERIES; s++) {
    for (const [k, le] of LE.entries()) {
      let v = 0;
      const values = ts.map((_, i) => (v += (k + 1) * (1 + (i % 3))));
      out.push({ labels: canonicalLabels([{ name: '__name__', value: 'latency_bucket' }, { name: 'job', value: `job${s % 10}` }, { name: 'instance', value: `h${s}` }, { name: 'le', value: le }]), timestampsMs: ts, values });
    }
  }
  return out;
}

function queryable(series: readonly SeriesSamples[]): Queryable {
  return {
    select(matchers, startMs, endMs) {
      const cm = matchers.map(compileMatcher);
      const out: SeriesSamples[] = [];
      for (const s of series) {
        if (!matchesAll(s.labels, cm)) continue;
        let lo = 0;
        while (lo < s.timestampsMs.length && (s.timestampsMs[lo] ?? 0) < startMs) lo++;
        let hi = lo;
        while (hi < s.timestampsMs.length && (s.timestampsMs[hi] ?? 0) <= endMs) hi++;
        out.push({ labels: s.labels, timestampsMs: s.timestampsMs.slice(lo, hi), values: s.values.slice(lo, hi) });
      }
      return Promise.resolve(out);
    },
  };
}

const QUERIES = [
  'sum by (job) (rate(http_requests_total[5m]))',
  'http_requests_total',
  'histogram_quantile(0.99, sum by (job, le) (rate(latency_bucket[5m])))',
  'max_over_time(rate(http_requests_total[5m])[30m:1m])',
  'topk(5, rate(http_requests_total[5m]))',
];

const data = makeData();
const q = queryable(data);
const samples = data.reduce((n, s) => n + s.timestampsMs.length, 0);
const results: Array<{ query: string; runs: number; p50Ms: number; maxMs: number; outputSeries: number; outputPoints: number; pointsPerSecond: number }> = [];
for (const query of QUERIES) {
  const started = Date.now();
  const times: number[] = [];
  let outputSeries = 0;
  let outputPoints = 0;
  for (let i = 0; i < ITERATIONS && Date.now() - started < BUDGET_MS; i++) {
    const t0 = performance.now();
    const r = await rangeQuery(q, query, 0, DAY - SCRAPE_MS, STEP_MS);
    times.push(performance.now() - t0);
    outputSeries = r.value.length;
    outputPoints = r.value.reduce((n, s) => n + s.points.length, 0);
  }
  times.sort((a, b) => a - b);
  const p50 = times[Math.floor(times.length / 2)] ?? 0;
  const row = { query, runs: times.length, p50Ms: Math.round(p50), maxMs: Math.round(times[times.length - 1] ?? 0), outputSeries, outputPoints, pointsPerSecond: Math.round(outputPoints / (p50 / 1000)) };
  results.push(row);
  process.stdout.write(`${query}\n  p50 ${row.p50Ms} ms, max ${row.maxMs} ms over ${row.runs} runs; ${outputSeries} series, ${outputPoints} points\n`);
}
const report = { bench: 'promql', series: data.length, samplesPerQueryInput: samples, stepMs: STEP_MS, rangeMs: DAY, results, note: 'engine only: in-memory Queryable, no store/HTTP; shared 2-core machine' };
await mkdir(join(import.meta.dirname, '..', 'results'), { recursive: true });
await writeFile(join(import.meta.dirname, '..', 'results', 'promql.json'), `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(`wrote bench/results/promql.json\n`);
