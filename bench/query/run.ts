/**
 * `npm run bench:query`: what the query path costs, next to Debian's Prometheus holding
 * the same data.
 *
 * 1. Store write throughput alone: realistic series (counters, noisy gauges, classic
 *    histograms) written to a fresh DuckDB file in scrape-shaped batches.
 * 2. Bytes per stored sample: that file's size after one compaction (samples older than
 *    2 h sealed, the last hour still rows, rollup tiers built) and close (DuckDB
 *    checkpoints on close), divided by the samples in it. `npm run bench:store` splits
 *    this further (rows, chunks, rollups).
 * 3. Query latency p50/p95/p99 of dashboard-like queries through the Prometheus HTTP API
 *    (HTTP, JSON, auth, engine, store) against the same queries sent to Prometheus 2.42,
 *    with the ratios, and the CPU time each server spent per query (the figure to compare
 *    on a busy shared machine, where wall time mostly measures the other work). The store is compacted after loading, as its periodic compactor
 *    would have done: older samples sealed into chunks, rollup tiers built. The 30-day
 *    query is range-aligned to its step (as Grafana sends it) and served from the hourly
 *    tier; the bench reports which tier answered and how far that answer is from the one
 *    computed from raw samples.
 *
 * Bounded: fixed data sizes, at most `ITERATIONS` runs and `QUERY_BUDGET_MS` per query and
 * system; everything binds 127.0.0.1 and is removed at the end. Sizes can be scaled down
 * with BENCH_QUERY_SERIES (default 1000) and BENCH_QUERY_ITERATIONS (default 30).
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../libs/runtime/logger.js';
import { createTokenVerifier, mintToken } from '../../libs/runtime/auth/index.js';
import { loadConfig } from '../../libs/runtime/config.js';
import { openDuckDbStore, type MetricStore } from '../../libs/store/index.js';
import { measureBytesPerSample } from '../../libs/store/measure.js';
import type { SeriesSamples } from '../../libs/model/index.js';
import { prometheusApiRoutes } from '../../services/aggregation/prom-api.js';
import { Querier, tenantQueryable } from '../../services/aggregation/querier.js';
import { rangeQuery, type PromValue } from '../../libs/promql/index.js';
import { havePrometheus, startPrometheus, timeSlices, type PeerSeries, type PrometheusPeer } from '../../test/prometheus-peer.js';
import { seededRandom } from '../../test/random.js';

const SERIES = Number(process.env.BENCH_QUERY_SERIES ?? 1000);
const ITERATIONS = Number(process.env.BENCH_QUERY_ITERATIONS ?? 30);
const QUERY_BUDGET_MS = 45_000;
const SCRAPE_MS = 15_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TENANT = 'bench';
const logger = createLogger({ level: 'warn', service: 'bench-query' });

type Gen = { labels: Record<string, string>; next: (k: number) => number };

/** Realistic series: counters, gauges with noise, classic histograms (buckets, sum, count). */
function realisticSeries(instances: number, rand: () => number): Gen[] {
  const out: Gen[] = [];
  const LE = ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '+Inf'];
  for (let i = 0; i < instances; i++) {
    const job = `job${i % 10}`;
    const instance = `host-${i}:9100`;
    let counter = Math.floor(rand() * 1e6);
    out.push({ labels: { __name__: 'bench_requests_total', job, instance }, next: () => (counter += Math.floor(rand() * 100)) });
    let cpu = rand() * 1000;
    out.push({ labels: { __name__: 'bench_cpu_seconds_total', job, instance, mode: 'user' }, next: () => (cpu += 15 * rand()) });
    const phase = rand() * 6;
    out.push({ labels: { __name__: 'bench_temperature_celsius', job, instance }, next: (k) => Math.round((40 + 5 * Math.sin(k / 40 + phase) + rand()) * 10) / 10 });
    out.push({ labels: { __name__: 'bench_memory_free_bytes', job, instance }, next: () => 8e9 + Math.floor(rand() * 2e8) * 4096 });
    // Histogram: per scrape some observations, buckets cumulative.
    const counts = LE.map(() => 0);
    let sum = 0;
    let lastK = -1;
    const observe = (k: number) => {
      if (k === lastK) return;
      lastK = k;
      const n = Math.floor(rand() * 30);
      for (let o = 0; o < n; o++) {
        const x = rand() ** 3 * 2;
        sum += x;
        for (const [b, le] of LE.entries()) if (le === '+Inf' || x <= Number(le)) counts[b]! += 1;
      }
    };
    for (const [b, le] of LE.entries()) out.push({ labels: { __name__: 'bench_latency_seconds_bucket', job, instance, le }, next: (k) => (observe(k), counts[b]!) });
    out.push({ labels: { __name__: 'bench_latency_seconds_sum', job, instance }, next: (k) => (observe(k), sum) });
    out.push({ labels: { __name__: 'bench_latency_seconds_count', job, instance }, next: (k) => (observe(k), counts[LE.length - 1]!) });
  }
  return out;
}

/** Samples of every generator for scrapes `[k0, k1)`, one series entry each. */
function scrapeBatch(gens: Gen[], base: number, intervalMs: number, k0: number, k1: number, rand: () => number): SeriesSamples[] {
  return gens.map((g) => {
    const ts: number[] = [];
    const vs: number[] = [];
    for (let k = k0; k < k1; k++) {
      // Scrapes jitter by a few milliseconds, as real ones do.
      ts.push(base + k * intervalMs + Math.floor(rand() * 5));
      vs.push(g.next(k));
    }
    return { labels: Object.entries(g.labels).map(([name, value]) => ({ name, value })), timestampsMs: ts, values: vs };
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Part 1 and 2: write throughput and bytes per sample. */
async function storeFigures(dir: string) {
  const path = join(dir, 'bytes', 'telemesh.duckdb');
  const store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0 });
  const rand = seededRandom(7);
  const gens = realisticSeries(Math.max(10, Math.floor(SERIES / 10)), rand);
  const scrapes = 6 * 60 * 4; // 6 hours at 15 s
  const perBatch = 40; // 10 minutes of scrapes per batch, as an agent buffering would send
  const base = Date.now() - 7 * HOUR;
  let samples = 0;
  const t0 = performance.now();
  for (let k = 0; k < scrapes; k += perBatch) {
    const batch = scrapeBatch(gens, base, SCRAPE_MS, k, Math.min(scrapes, k + perBatch), rand);
    const r = await store.write(TENANT, `b-${k}`, batch);
    samples += r.samplesWritten;
  }
  const writeMs = performance.now() - t0;
  // As the periodic compactor would have: samples older than 2 hours sealed into chunks,
  // rollup windows built. Bytes then count what a running store keeps.
  await store.compact();
  await store.close();
  const m = await measureBytesPerSample(path);
  return {
    series: gens.length,
    samples,
    batches: Math.ceil(scrapes / perBatch),
    writeSeconds: round(writeMs / 1000, 3),
    samplesPerSecond: Math.round(samples / (writeMs / 1000)),
    fileBytes: m.fileBytes,
    // Blocks in use: DuckDB keeps blocks that sealing freed in the file for reuse.
    usedBytes: m.usedBytes,
    bytesPerSample: round(m.bytesPerSample, 3),
    sealedPayloadBytesPerSample: round(m.sealedPayloadBytesPerSample, 3),
    rollupRows: m.rollupRows,
  };
}

interface QueryCase {
  readonly name: string;
  readonly query: string;
  readonly start: number;
  readonly end: number;
  readonly step: string;
  servedFrom?: string;
  maxRelativeErrorVsRaw?: number;
}

const LONG_QUERY = 'avg by (job) (avg_over_time(longterm_temperature_celsius[1h]))';

/**
 * Which tier answers `query` over [start, end] at 1 h steps, and the largest relative
 * difference between that answer and the one evaluated from raw samples.
 */
async function checkRollups(store: MetricStore, limits: ReturnType<typeof loadConfig>['query'], query: string, start: number, end: number) {
  const q = tenantQueryable(store, TENANT, limits);
  const uses: string[] = [];
  const served = await rangeQuery(q, query, start, end, HOUR, {
    onRollup: (u) => uses.push(`${u.resolutionMs % HOUR === 0 ? `${u.resolutionMs / HOUR}h` : `${u.resolutionMs / MINUTE}m`} rollups for ${u.steps} steps, raw samples for ${u.rawSteps}`),
  });
  const raw = await rangeQuery({ select: q.select }, query, start, end, HOUR);
  const byLabels = (v: PromValue & { type: 'matrix' }) => new Map(v.value.map((s) => [JSON.stringify(s.labels), s.points]));
  const want = byLabels(raw);
  let maxRelativeError = 0;
  for (const [k, pts] of byLabels(served)) {
    const exact = new Map(want.get(k)?.map(([t, v]) => [t, v]) ?? []);
    for (const [t, v] of pts) {
      const e = exact.get(t);
      maxRelativeError = Math.max(maxRelativeError, e === undefined ? Infinity : Math.abs(v - e) / Math.abs(e));
    }
  }
  return { servedFrom: uses.length > 0 ? uses.join('; ') : 'raw samples', maxRelativeError: Number(maxRelativeError.toPrecision(3)) };
}

/**
 * CPU time (ms) the server answering a query spent on it. Wall time on a shared 2-core
 * machine mostly measures the other work running; CPU time barely moves with it. For
 * Telemesh the server is this process (its DuckDB threads included, and the bench's own
 * fetch and JSON parsing, a small share); for Prometheus, its process, found by the listen
 * address on its command line.
 */
type CpuClock = () => number;

const selfCpu: CpuClock = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function processCpu(listen: string): Promise<CpuClock | undefined> {
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmd.startsWith('prometheus\0') || !cmd.includes(`--web.listen-address=${listen}\0`)) continue;
    // utime and stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second
    // on Linux); the fields after the parenthesised command name, which may hold spaces.
    return () => {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) * 10;
    };
  }
  return undefined;
}

/** Waits (at most a minute) until `cpu` advances less than 50 ms in a second; seconds waited. */
async function untilIdle(cpu: CpuClock): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < 60; i++) {
    const c0 = cpu();
    await new Promise((r) => setTimeout(r, 1000));
    if (cpu() - c0 < 50) break;
  }
  return round((performance.now() - t0) / 1000, 1);
}

async function timeQuery(url: string, headers: Record<string, string>, q: QueryCase, cpu?: CpuClock): Promise<{ ms: number[]; cpuMs: number[]; series: number; points: number; error?: string }> {
  const params = new URLSearchParams({ query: q.query, start: String(q.start / 1000), end: String(q.end / 1000), step: q.step });
  const ms: number[] = [];
  const cpuMs: number[] = [];
  let series = 0;
  let points = 0;
  const started = performance.now();
  for (let i = 0; i < ITERATIONS + 2 && performance.now() - started < QUERY_BUDGET_MS; i++) {
    const c0 = cpu?.();
    const t0 = performance.now();
    const res = await fetch(`${url}/api/v1/query_range`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: params.toString() });
    const body = (await res.json()) as { status: string; error?: string; data?: { result: Array<{ values: unknown[] }> } };
    const elapsed = performance.now() - t0;
    const cpuSpent = c0 === undefined ? undefined : cpu!() - c0;
    if (body.status !== 'success') return { ms, cpuMs, series, points, error: body.error };
    series = body.data!.result.length;
    points = body.data!.result.reduce((n, r) => n + r.values.length, 0);
    // The first two warm caches up.
    if (i >= 2) {
      ms.push(elapsed);
      if (cpuSpent !== undefined) cpuMs.push(cpuSpent);
    }
  }
  return { ms: ms.sort((a, b) => a - b), cpuMs: cpuMs.sort((a, b) => a - b), series, points };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'telemesh-bench-query-'));
  let prom: PrometheusPeer | undefined;
  let server: Server | undefined;
  let store: MetricStore | undefined;
  try {
    process.stdout.write(`bench:query — ${SERIES} series, ${ITERATIONS} iterations per query\n`);
    const storeResult = await storeFigures(dir);
    process.stdout.write(
      `store write: ${storeResult.samples} samples in ${storeResult.writeSeconds} s = ${storeResult.samplesPerSecond} samples/s (${storeResult.series} series, ${storeResult.batches} batches)\n` +
        `bytes per sample after compaction (blocks in use; rollups, series and the rows not yet sealed included): ${storeResult.bytesPerSample} (${storeResult.usedBytes} of ${storeResult.fileBytes} file bytes; sealed chunks alone ${storeResult.sealedPayloadBytesPerSample})\n`,
    );

    // Query data: 1 h (+5 m for rate windows) of SERIES counters and SERIES/10 histograms
    // of 10 buckets at 15 s, and 10 gauges over 30 days at 60 s.
    const now = Math.floor(Date.now() / MINUTE) * MINUTE;
    const longEnd = Math.floor(now / HOUR) * HOUR;
    const rand = seededRandom(11);
    const shortBase = now - HOUR - 5 * MINUTE;
    const shortScrapes = (HOUR + 5 * MINUTE) / SCRAPE_MS + 1;
    const counters: Gen[] = [];
    for (let i = 0; i < SERIES; i++) {
      let v = Math.floor(rand() * 1e5);
      counters.push({ labels: { __name__: 'dash_requests_total', job: `job${i % 10}`, instance: `host-${i}` }, next: () => (v += Math.floor(rand() * 50)) });
    }
    const histos = realisticSeries(Math.max(1, Math.floor(SERIES / 10)), rand).filter((g) => g.labels.__name__ === 'bench_latency_seconds_bucket');
    const longBase = now - 30 * DAY;
    const longScrapes = (30 * DAY) / MINUTE + 1;
    const longGens: Gen[] = [];
    for (let i = 0; i < 10; i++) {
      const phase = rand() * 6;
      longGens.push({ labels: { __name__: 'longterm_temperature_celsius', job: `job${i % 2}`, instance: `host-${i}` }, next: (k) => Math.round((20 + 5 * Math.sin(k / 720 + phase) + rand()) * 10) / 10 });
    }
    const shortData = scrapeBatch([...counters, ...histos], shortBase, SCRAPE_MS, 0, shortScrapes, rand);
    const longData = scrapeBatch(longGens, longBase, MINUTE, 0, longScrapes, rand);
    const querySamples = [...shortData, ...longData].reduce((n, s) => n + s.values.length, 0);

    // Telemesh: raw retention long enough to hold the 30 days, so the rollup-served answer
    // can be checked against the one computed from raw samples.
    const qstore = await openDuckDbStore({
      path: join(dir, 'query', 'telemesh.duckdb'),
      logger,
      compactionIntervalMs: 0,
      retentionIntervalMs: 0,
      retention: { rawRetentionMs: 60 * DAY, tiers: [{ resolutionMs: 5 * MINUTE, retentionMs: 90 * DAY }, { resolutionMs: HOUR, retentionMs: 730 * DAY }] },
    });
    store = qstore;
    const loadT0 = performance.now();
    const CHUNK = 200;
    for (let i = 0; i < shortData.length; i += CHUNK) await qstore.write(TENANT, `short-${i}`, shortData.slice(i, i + CHUNK));
    for (const [i, s] of longData.entries()) await qstore.write(TENANT, `long-${i}`, [s]);
    const loadMs = performance.now() - loadT0;
    process.stdout.write(`loaded ${querySamples} samples into DuckDB in ${round(loadMs / 1000)} s\n`);
    const compactT0 = performance.now();
    const compaction = await qstore.compact();
    process.stdout.write(`compacted (rollup windows ${compaction.windows}, rows ${compaction.rows}; samples older than 2 h sealed) in ${round((performance.now() - compactT0) / 1000)} s\n`);

    const secret = randomBytes(32).toString('base64url');
    const config = loadConfig({ env: {} });
    const routes = prometheusApiRoutes({
      querier: new Querier(qstore, config.query),
      verifier: createTokenVerifier({ hs256Secret: secret }),
      logger,
      maxRequestBytes: config.server.maxRequestBytes,
      version: 'bench',
    });
    server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      const route = routes.find((r) => (r.path.endsWith('/') ? path.startsWith(r.path) : path === r.path));
      if (!route) {
        res.writeHead(404).end();
        return;
      }
      void route.handler(req, res);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const telemeshUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const auth = { authorization: `Bearer ${await mintToken(secret, { subject: 'bench', tenant: TENANT, roles: ['reader'], ttlSec: 3600 })}` };

    let promUrl: string | undefined;
    let promCpu: CpuClock | undefined;
    if (await havePrometheus()) {
      prom = await startPrometheus(['--storage.tsdb.retention.time=60d']);
      const toPeer = (s: SeriesSamples): PeerSeries => ({
        labels: Object.fromEntries(s.labels.map((l) => [l.name, l.value])),
        samples: s.timestampsMs.map((t, i) => [t, s.values[i]!] as const),
      });
      const pT0 = performance.now();
      for (const slice of timeSlices([...longData, ...shortData].map(toPeer), 30 * MINUTE)) await prom.remoteWrite(slice);
      process.stdout.write(`loaded the same samples into Prometheus by remote_write in ${round((performance.now() - pT0) / 1000)} s\n`);
      promUrl = prom.url;
      promCpu = await processCpu(new URL(prom.url).host);
      // Prometheus compacts what it was just sent in the background; timing either
      // system meanwhile would measure that work, as both share the two cores.
      if (promCpu !== undefined) process.stdout.write(`waited ${await untilIdle(promCpu)} s for Prometheus to go idle\n`);
    } else {
      process.stdout.write('prometheus not installed: Telemesh figures only\n');
    }

    const cases: QueryCase[] = [
      { name: `sum by (job) (rate) 1h@15s, ${SERIES} series`, query: 'sum by (job) (rate(dash_requests_total[5m]))', start: now - HOUR, end: now, step: '15s' },
      { name: 'histogram_quantile(0.99) 1h@15s', query: 'histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))', start: now - HOUR, end: now, step: '15s' },
      { name: 'topk(5, rate) 1h@1m', query: 'topk(5, rate(dash_requests_total[5m]))', start: now - HOUR, end: now, step: '1m' },
      { name: '30d avg_over_time@1h, 10 series', query: LONG_QUERY, start: longEnd - 30 * DAY + HOUR, end: longEnd, step: '1h' },
    ];
    const rollupCheck = await checkRollups(qstore, config.query, LONG_QUERY, longEnd - 30 * DAY + HOUR, longEnd);
    process.stdout.write(`30-day query: ${rollupCheck.servedFrom}; largest relative difference from the raw-sample answer ${rollupCheck.maxRelativeError}\n`);
    const results = [];
    for (const q of cases) {
      if (q.query === LONG_QUERY) Object.assign(q, { servedFrom: rollupCheck.servedFrom, maxRelativeErrorVsRaw: rollupCheck.maxRelativeError });
      const t = await timeQuery(telemeshUrl, auth, q, selfCpu);
      const p = promUrl ? await timeQuery(promUrl, {}, q, promCpu) : undefined;
      const fig = (r: { ms: number[]; cpuMs: number[] }) => ({
        p50: round(percentile(r.ms, 50)),
        p95: round(percentile(r.ms, 95)),
        p99: round(percentile(r.ms, 99)),
        runs: r.ms.length,
        cpuP50: r.cpuMs.length > 0 ? round(percentile(r.cpuMs, 50)) : undefined,
        cpuP95: r.cpuMs.length > 0 ? round(percentile(r.cpuMs, 95)) : undefined,
      });
      const row = {
        name: q.name,
        query: q.query,
        step: q.step,
        rangeHours: round((q.end - q.start) / HOUR),
        servedFrom: q.servedFrom,
        maxRelativeErrorVsRaw: q.maxRelativeErrorVsRaw,
        telemesh: { ...fig(t), series: t.series, points: t.points, error: t.error },
        prometheus: p ? { ...fig(p), series: p.series, points: p.points, error: p.error } : undefined,
        ratioP50: p ? round(percentile(t.ms, 50) / percentile(p.ms, 50)) : undefined,
        ratioP95: p ? round(percentile(t.ms, 95) / percentile(p.ms, 95)) : undefined,
        ratioCpuP50: p && p.cpuMs.length > 0 ? round(percentile(t.cpuMs, 50) / percentile(p.cpuMs, 50)) : undefined,
      };
      results.push(row);
      process.stdout.write(
        `${q.name}\n  telemesh   p50 ${row.telemesh.p50} ms  p95 ${row.telemesh.p95} ms  p99 ${row.telemesh.p99} ms  CPU p50 ${row.telemesh.cpuP50} ms  p95 ${row.telemesh.cpuP95} ms  (${row.telemesh.runs} runs, ${t.series} series, ${t.points} points)${t.error ? `  ERROR ${t.error}` : ''}\n` +
          (row.prometheus
            ? `  prometheus p50 ${row.prometheus.p50} ms  p95 ${row.prometheus.p95} ms  p99 ${row.prometheus.p99} ms  CPU p50 ${row.prometheus.cpuP50 ?? '?'} ms  p95 ${row.prometheus.cpuP95 ?? '?'} ms  (${row.prometheus.runs} runs, ${p!.series} series, ${p!.points} points)\n  ratio telemesh/prometheus p50 ${row.ratioP50}  p95 ${row.ratioP95}  CPU p50 ${row.ratioCpuP50 ?? '?'}\n`
            : ''),
      );
    }
    const out = {
      benchmark: 'query',
      date: new Date().toISOString(),
      machine: {
        cpus: (await import('node:os')).cpus().length,
        node: process.version,
        loadAverage: (await import('node:os')).loadavg().map((x) => round(x)),
        note: 'shared machine; other work may run concurrently: compare CPU per query (cpuP50/cpuP95), which load moves far less than wall time',
      },
      store: storeResult,
      querySamplesLoaded: querySamples,
      targets: { dashboardP95Ms: 100, thirtyDayP95Ms: 250, bytesPerSample: 2 },
      queries: results,
    };
    await mkdir(new URL('../results/', import.meta.url), { recursive: true });
    await writeFile(new URL('../results/query.json', import.meta.url), JSON.stringify(out, null, 2) + '\n');
    process.stdout.write('wrote bench/results/query.json\n');
  } finally {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await store?.close();
    await prom?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
