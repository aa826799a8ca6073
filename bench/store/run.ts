/**
 * Store benchmark (`npm run bench:store`): the DuckDB store alone, no bus and no RPC, so
 * the ingestion benchmark's end-to-end figure can be explained.
 *
 * 1. Write throughput: 100 batches × 10,000 samples (1,000 series × 10 samples each) into a
 *    fresh file, periodic jobs off; then the cost of one compaction of everything written.
 * 2. Bytes per stored sample on disk after a checkpoint, for realistic series: 6 hours at
 *    15 s (±2 ms scrape jitter) of 400 counters, 400 noisy gauges (two decimals), 200
 *    histogram bucket counters; kept as rows, sealed into chunks (with the 5 m and 1 h
 *    rollup tiers, 6 and 24 hours), and sealed without rollup tiers (raw samples alone, as
 *    Prometheus counts them); then as a running store keeps them, compacting as it goes:
 *    24 hours and 7 days of the 1,000 series. Bytes are the database's used blocks
 *    (series, batch ids and rollups included) divided by the raw samples.
 * Bounded in count and time; touches only a temp directory. Prints figures and writes
 * bench/results/store.json.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { SeriesSamples } from '../../libs/model/index.js';
import { openDuckDbStore } from '../../libs/store/duckdb.js';
import { DEFAULT_RETENTION } from '../../libs/store/rollup.js';
import { measureBytesPerSample } from '../../libs/store/measure.js';

const logger = pino({ level: 'silent' });
const root = await mkdtemp(join(tmpdir(), 'telemesh-bench-store-'));
const STEP = 15_000;

/** Deterministic PRNG so runs are comparable. */
let seed = 1;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;

type Kind = 'counter' | 'gauge' | 'histogram';
interface Gen {
  readonly labels: { name: string; value: string }[];
  readonly kind: Kind;
  v: number;
}

function generators(count: number): Gen[] {
  return Array.from({ length: count }, (_, i) => {
    const kind: Kind = i < count * 0.4 ? 'counter' : i < count * 0.8 ? 'gauge' : 'histogram';
    const name = kind === 'counter' ? 'http_requests_total' : kind === 'gauge' ? 'node_temperature_celsius' : 'http_duration_seconds_bucket';
    const labels = [
      { name: '__name__', value: name },
      { name: 'instance', value: `host-${String(i % 100).padStart(3, '0')}:9100` },
      { name: 'job', value: 'node' },
      { name: 'series', value: String(i) },
    ];
    if (kind === 'histogram') labels.push({ name: 'le', value: String(0.005 * 2 ** (i % 10)) });
    return { labels, kind, v: kind === 'gauge' ? 50 : Math.floor(rand() * 1e6) };
  });
}

function nextValue(g: Gen, step: number): number {
  if (g.kind === 'counter') g.v += Math.floor(rand() * 100);
  else if (g.kind === 'histogram') g.v += Math.floor(rand() * 5);
  else g.v = Math.round((50 + 10 * Math.sin(step / 100) + rand() * 2) * 100) / 100;
  return g.v;
}

/** One batch: every series, `perSeries` consecutive scrapes from `step`. */
function batch(gens: Gen[], t0: number, step: number, perSeries: number): SeriesSamples[] {
  return gens.map((g) => {
    const ts: number[] = [];
    const vs: number[] = [];
    for (let k = 0; k < perSeries; k++) {
      ts.push(t0 + (step + k) * STEP + Math.floor(rand() * 3));
      vs.push(nextValue(g, step + k));
    }
    return { labels: g.labels, timestampsMs: ts, values: vs };
  });
}

async function writeThroughput() {
  const path = join(root, 'throughput.duckdb');
  const store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0 });
  const gens = generators(1000);
  const t0 = Date.now() - 1000 * STEP;
  const batches = Array.from({ length: 100 }, (_, b) => batch(gens, t0, b * 10, 10));
  const start = performance.now();
  for (let b = 0; b < batches.length; b++) await store.write('bench', `b${b}`, batches[b]);
  const writeS = (performance.now() - start) / 1000;
  const c0 = performance.now();
  const compaction = await store.compact();
  const compactS = (performance.now() - c0) / 1000;
  await store.close();
  return {
    batches: 100,
    samplesPerBatch: 10_000,
    seconds: round(writeS),
    samplesPerSecond: Math.round(1_000_000 / writeS),
    compaction: { ...compaction, seconds: round(compactS), samplesPerSecond: Math.round(1_000_000 / compactS) },
  };
}

/**
 * The same 6 hours written twice: kept as rows (sealing off), and after a compaction that
 * sealed every sample into chunks (what the store does to samples older than 2 hours).
 */
async function bytesPerSample(sealAfterMs: number, rollups: boolean, hours = 6) {
  const path = join(root, `size-${sealAfterMs}-${rollups}-${hours}.duckdb`);
  seed = 1;
  const retention = rollups ? DEFAULT_RETENTION : { ...DEFAULT_RETENTION, tiers: [] };
  const store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0, sealAfterMs, retention });
  const gens = generators(1000);
  const steps = hours * 240; // at 15 s
  // Ending on a 2-hour boundary: the compactor seals whole 2-hour spans only, so with
  // `sealAfterMs` 1 every sample written is then sealed.
  const t0 = Math.floor(Date.now() / 7_200_000) * 7_200_000 - steps * STEP - 60_000;
  // Agents push every 10 scrapes (2.5 minutes), the shape ingestion produces.
  for (let step = 0; step < steps; step += 10) await store.write('bench', `s${step}`, batch(gens, t0, step, 10));
  const c0 = performance.now();
  await store.compact();
  const compactS = (performance.now() - c0) / 1000;
  await store.close();
  return { ...(await measureBytesPerSample(path)), compactionSeconds: round(compactS) };
}

/**
 * 24 hours as a running store keeps them: the clock advances with the writes and the
 * compactor runs after every batch (every 2.5 simulated minutes; the service's default is
 * every minute), so rollup windows are built one by one as they end and samples are
 * sealed as they age past `sealAfterMs` (2 h), rather than all at once at the end.
 */
async function steadyState(hours: number, seriesCount = 1000, compactEvery = 10) {
  const path = join(root, `steady-${hours}.duckdb`);
  seed = 1;
  const gens = generators(seriesCount);
  const steps = hours * 240;
  const t0 = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 30 * 86_400_000;
  let now = t0;
  const store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0, now: () => now });
  let compactS = 0;
  for (let step = 0; step < steps; step += 10) {
    await store.write('bench', `s${step}`, batch(gens, t0, step, 10));
    now = t0 + (step + 10) * STEP + 5_000;
    if ((step + 10) % compactEvery !== 0) continue;
    const c0 = performance.now();
    await store.compact();
    compactS += (performance.now() - c0) / 1000;
  }
  await store.close();
  return { ...(await measureBytesPerSample(path)), compactionSeconds: round(compactS) };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

try {
  const throughput = await writeThroughput();
  console.log(
    `write: ${throughput.samplesPerSecond.toLocaleString()} samples/s (100 × 10k samples in ${throughput.seconds} s); ` +
      `compaction of those 1M samples: ${throughput.compaction.seconds} s (${throughput.compaction.rows} rollup rows)`,
  );
  const rows = await bytesPerSample(0, true);
  const sealed = await bytesPerSample(1, true);
  // What the target names: 24 hours after compaction, rollup tiers included.
  const sealed24h = await bytesPerSample(1, true, 24);
  // Raw samples alone, as Prometheus' ~1.8 bytes/sample counts them: no rollup tiers.
  const sealedRawOnly = await bytesPerSample(1, false);
  // Fixed costs (256 KiB blocks per column, the series table) weigh less on more data.
  const sealedRawOnly24h = await bytesPerSample(1, false, 24);
  const steady24h = await steadyState(24);
  // A week, compaction every 10 minutes: the share of the newest hours still kept as rows
  // (the last 2–4), and of the tables' fixed cost (each column holds at least a 256 KiB
  // block), shrinks as the store fills up towards its retention.
  const steady7d = await steadyState(7 * 24, 1000, 40);
  for (const [name, size] of [
    ['rows (not sealed), with rollups', rows],
    ['sealed chunks, with rollups', sealed],
    ['sealed chunks, with rollups, 24 hours', sealed24h],
    ['sealed chunks, raw only (no rollup tiers)', sealedRawOnly],
    ['sealed chunks, raw only, 24 hours', sealedRawOnly24h],
    ['24 hours as a running store keeps them (compaction every 2.5 min, rollups, the last hours still rows)', steady24h],
    ['7 days as a running store keeps them (compaction every 10 min)', steady7d],
  ] as const) {
    console.log(
      `size, ${name}: ${size.samples.toLocaleString()} samples (${size.sealedSamples.toLocaleString()} sealed), ` +
        `${size.rollupRows.toLocaleString()} rollup windows (${size.sealedWindows.toLocaleString()} sealed, ` +
        `${size.sealedWindowPayloadBytes === null ? '-' : size.sealedWindowPayloadBytes.toFixed(1)} bytes each): ${size.usedBytes.toLocaleString()} bytes in used blocks = ` +
        `${size.bytesPerSample.toFixed(2)} bytes/sample (target ≤ 2); file ${size.fileBytes.toLocaleString()} bytes = ` +
        `${size.fileBytesPerSample.toFixed(2)} (freed blocks are reused, not returned); chunk payload ` +
        `${size.sealedPayloadBytesPerSample.toFixed(2)} bytes/sample; compaction ${size.compactionSeconds} s`,
    );
  }
  const size = { rows, sealed, sealed24h, sealedRawOnly, sealedRawOnly24h, steady24h, steady7d };
  const out = {
    at: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    write: throughput,
    storage: size,
  };
  await mkdir(new URL('../results/', import.meta.url), { recursive: true });
  await writeFile(new URL('../results/store.json', import.meta.url), JSON.stringify(out, null, 2) + '\n');
} finally {
  await rm(root, { recursive: true, force: true });
}
