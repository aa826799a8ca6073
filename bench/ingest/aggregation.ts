/**
 * `node --import tsx bench/ingest/aggregation.ts`: aggregation's per-batch work in one
 * process, without the bus: encoded 10 000-series batches (the same series every batch, as
 * agents send them) decoded and written to a DuckDB file, through `write` (series objects)
 * and through `writeColumns` (columns), alternating. Reports CPU µs per sample
 * (process.cpuUsage, so DuckDB's own threads count too).
 *
 * Flags: --series=10000 --batches=30 --rounds=3 --only=series|columns (for a --cpu-prof of one path)
 * --head=N (the store's in-memory head budget in samples; 0 turns it off)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { SeriesSchema } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { openDuckDbStore } from '../../libs/store/index.js';
import { SeriesDecoder } from '../../services/aggregation/batch-wire.js';

const argv = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const SERIES = Number(argv.get('series') ?? 10_000);
const BATCHES = Number(argv.get('batches') ?? 30);
const ROUNDS = Number(argv.get('rounds') ?? 3);
const ONLY = argv.get('only');

const T0 = Date.now() - 3_600_000;
function batch(k: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < SERIES; i++) {
    const labels = [
      { name: '__name__', value: `bench_metric_${i % 20}` },
      { name: 'host', value: `host-${Math.floor(i / 20)}` },
      { name: 'job', value: 'bench' },
      { name: 'region', value: 'eu-west-1' },
    ];
    out.push(toBinary(SeriesSchema, create(SeriesSchema, { labels, timestampsMs: [BigInt(T0 + k * 1000)], values: [i + k] })));
  }
  return out;
}

const dir = await mkdtemp(join(tmpdir(), 'telemesh-aggbench-'));
// --head=0 turns the store's in-memory head off, to measure what mirroring writes costs.
const headSamples = argv.has('head') ? Number(argv.get('head')) : undefined;
const store = await openDuckDbStore({ path: join(dir, 'a.duckdb'), logger: pino({ level: 'silent' }), compactionIntervalMs: 0, retentionIntervalMs: 0, headSamples });
const decoder = new SeriesDecoder();
const batches = Array.from({ length: 4 }, (_, k) => batch(k));
let seq = 0;
async function run(mode: 'series' | 'columns'): Promise<number> {
  const c0 = process.cpuUsage();
  for (let b = 0; b < BATCHES; b++) {
    const enc = batches[b % batches.length]!;
    const id = `b${seq++}`;
    if (mode === 'columns') await store.writeColumns!('t', id, decoder.decodeColumns(enc));
    else await store.write('t', id, decoder.decodeAll(enc));
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (BATCHES * SERIES);
}
// Warm-up: creates the series rows and JIT-compiles both paths.
if (ONLY !== 'columns') await run('series');
if (ONLY !== 'series') await run('columns');
console.log(`load before ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const res: Record<string, number[]> = { series: [], columns: [] };
for (let r = 0; r < ROUNDS; r++) {
    for (const mode of r % 2 === 0 ? (['series', 'columns'] as const) : (['columns', 'series'] as const)) {
    if (ONLY === undefined || ONLY === mode) res[mode]!.push(await run(mode));
  }
}
for (const [mode, v] of Object.entries(res)) if (v.length > 0) console.log(`${mode.padEnd(8)} CPU µs/sample: ${v.map((x) => x.toFixed(2)).join(', ')}  (min ${Math.min(...v).toFixed(2)})`);
console.log(`load after ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
await store.close();
await rm(dir, { recursive: true, force: true });
