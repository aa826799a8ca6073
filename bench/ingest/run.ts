/**
 * `npm run bench:ingest`: ingestion throughput, measured, never asserted in a test.
 *
 * Everything runs on this machine, over loopback, with the real binaries:
 * - a nats-server (JetStream, file storage, temp dir) started here;
 * - `telemesh serve --target=ingestion` and `--target=aggregation` as separate processes
 *   (or one `--target=all` with `--target=all`), spawned through test/harness.ts;
 * - load from the agent SDK (AgentClient, gRPC bidi streams), each stream sending batches
 *   of `--series` (default 10 000) series × 1 sample, at most `maxInflightBatches` unacked.
 *
 * Scenarios (each `--runs` times, default 3, `--seconds` each, default 8):
 * 1. ingestion alone: SDK → ingestion → JetStream publish ack (no aggregation running), with
 *    tracing off (OTEL_SDK_DISABLED=true) and on (OTLP/HTTP exporter to a local sink),
 *    interleaved, giving the tracing overhead;
 * 2. remote_write: the same snappy payloads to Debian's Prometheus
 *    (--web.enable-remote-write-receiver, temp TSDB) and to our /api/v1/write (ingestion
 *    alone), giving the ratio;
 * 3. end to end: SDK → ingestion → JetStream → aggregation → DuckDB; the clock stops when
 *    aggregation's durable consumer has nothing pending, and the samples written (from
 *    aggregation's own counter) are checked against the samples sent.
 *
 * Reports peak RSS (VmHWM) of every process, load average before and after, and each
 * figure's run-to-run spread. Writes bench/results/ingest.json. Binds 127.0.0.1 only.
 *
 * Flags: --runs=3 --seconds=8 --series=10000 --streams=2 --target=separate|all
 *        --rw-payloads=10 --skip=tracing,rw,e2e --profile (writes .cpuprofile files of the
 *        telemesh processes under bench/results/profiles/)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { compressSync } from 'snappy';
import { AgentClient, type SeriesInput } from '../../libs/agent-sdk/index.js';
import { CONSUMERS, startNatsServer, STREAMS, type NatsServer } from '../../libs/bus/index.js';
import { freePort } from '../../libs/bus/testing.js';
import { LabelSchema, type Label } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { WriteRequestSchema } from '../../libs/contracts/prometheus/remote_pb.js';
import { ROOT, startMesh, testSecret, token, type MeshProcess } from '../../test/harness.js';

// ---- options -------------------------------------------------------------------------
const argv = new Map(
  process.argv.slice(2).map((a) => {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    return [m?.[1] ?? a, m?.[2] ?? ''] as const;
  }),
);
const num = (k: string, d: number) => (argv.has(k) ? Number(argv.get(k)) : d);
const RUNS = Math.min(10, Math.max(1, num('runs', 3)));
const SECONDS = Math.min(60, Math.max(1, num('seconds', 8)));
const SERIES = Math.min(100_000, Math.max(1, num('series', 10_000)));
const STREAMS_N = Math.min(8, Math.max(1, num('streams', 2)));
const RW_PAYLOADS = Math.min(100, Math.max(1, num('rw-payloads', 10)));
const TARGET = argv.get('target') === 'all' ? 'all' : 'separate';
const SKIP = new Set((argv.get('skip') ?? '').split(',').filter(Boolean));
const PROFILE = argv.has('profile');
const TENANT = 'bench';
const RESULTS = join(ROOT, 'bench', 'results');

// ---- helpers --------------------------------------------------------------------------
const log = (line: string) => process.stdout.write(line + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Peak resident set (VmHWM) of a process, MiB; undefined once it is gone. */
async function peakRssMiB(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process used so far, seconds; 0 once it is gone. */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th there.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return 0;
  }
}

/** The first descendant of `pid` running `comm` (nats-server runs under a shell supervisor). */
async function descendantNamed(pid: number, comm: string): Promise<number | undefined> {
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    try {
      if ((await readFile(`/proc/${p}/comm`, 'utf8')).trim() === comm) return p;
      const kids = (await readFile(`/proc/${p}/task/${p}/children`, 'utf8')).trim();
      if (kids) queue.push(...kids.split(/\s+/).map(Number));
    } catch {
      // gone
    }
  }
  return undefined;
}

interface Spread {
  readonly runs: number[];
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** (max − min) / median. */
  readonly spread: number;
}
function spread(runs: number[]): Spread {
  const s = [...runs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return { runs: runs.map(Math.round), median: Math.round(median), min: Math.round(s[0]!), max: Math.round(s[s.length - 1]!), spread: +((s[s.length - 1]! - s[0]!) / median).toFixed(3) };
}
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const show = (name: string, s: Spread, unit = 'samples/s') =>
  log(`  ${name.padEnd(34)} median ${fmt(s.median).padStart(10)} ${unit}  (runs ${s.runs.map(fmt).join(', ')}; spread ${(s.spread * 100).toFixed(1)}%)`);

/** Scrapes one counter (summed over its label sets) from a /metrics page. */
async function scrapeCounter(httpUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name + '{') || line.startsWith(name + ' ')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

/** A local OTLP/HTTP sink: accepts trace exports, counts them, keeps nothing. */
async function startSink(): Promise<{ endpoint: string; requests: () => number; close: () => Promise<void> }> {
  let requests = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return { endpoint: `http://127.0.0.1:${port}`, requests: () => requests, close: () => new Promise((r) => server.close(() => r())) };
}

// ---- load -----------------------------------------------------------------------------
/** Label sets of one stream's series, built once. */
function seriesLabels(stream: number): Label[][] {
  const out: Label[][] = [];
  for (let i = 0; i < SERIES; i++) {
    out.push([
      create(LabelSchema, { name: '__name__', value: 'bench_ingest_value' }),
      create(LabelSchema, { name: 'instance', value: `stream-${stream}` }),
      create(LabelSchema, { name: 'series', value: String(i) }),
    ]);
  }
  return out;
}

interface LoadResult {
  readonly samples: number;
  readonly ackedAtMs: number;
  readonly startedAtMs: number;
}

/**
 * Streams batches of SERIES series for `seconds` through STREAMS_N AgentClients, keeping
 * each client's pipe full (a few batches buffered beyond the in-flight window), then
 * flushes. Resolves when every batch is acknowledged.
 */
async function drive(grpcUrl: string, agentToken: string, seconds: number, labels: Label[][][]): Promise<LoadResult> {
  const startedAtMs = Date.now();
  const end = startedAtMs + seconds * 1000;
  let t = Date.now() - 120_000;
  const results = await Promise.all(
    labels.map(async (lbls, k) => {
      let wake: (() => void) | undefined;
      const client = new AgentClient({
        agentId: `bench-${k}`,
        baseUrl: grpcUrl,
        token: agentToken,
        maxBatchSamples: SERIES,
        maxBufferedSamples: SERIES * 16,
        maxInflightBatches: 4,
        onAck: () => {
          wake?.();
          wake = undefined;
        },
        onError: (e) => log(`    stream ${k}: ${e.message}`),
      });
      client.start();
      while (Date.now() < end) {
        if (client.stats().bufferedSamples >= SERIES * 6) {
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, 200);
          });
          continue;
        }
        // The same label arrays every batch (the SDK owns them and encodes each set once),
        // timestamps as numbers (no BigInt per sample).
        const ts = [++t];
        const batch: SeriesInput[] = new Array(lbls.length);
        for (let i = 0; i < lbls.length; i++) batch[i] = { labels: lbls[i]!, timestampsMs: ts, values: [i] };
        client.addSeries(batch);
        // Let acknowledgements in between batches.
        await new Promise<void>((r) => setImmediate(r));
      }
      const stats = await client.close(120_000);
      if (stats.bufferedSamples > 0 || stats.droppedSamples > 0 || stats.rejectedSamples > 0) {
        log(`    stream ${k}: ${stats.bufferedSamples} unacked, ${stats.droppedSamples} dropped, ${stats.rejectedSamples} rejected`);
      }
      return stats.acceptedSamples;
    }),
  );
  return { samples: results.reduce((a, b) => a + b, 0), ackedAtMs: Date.now(), startedAtMs };
}

/** Waits until aggregation's durable consumer has nothing pending or unacknowledged. */
async function drained(jsm: JetStreamManager, timeoutMs = 300_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ci = await jsm.consumers.info(STREAMS.samples, CONSUMERS.aggregation);
    if (ci.num_pending === 0 && ci.num_ack_pending === 0) return Date.now();
    if (Date.now() > deadline) throw new Error(`aggregation did not catch up within ${timeoutMs} ms (${ci.num_pending} pending)`);
    await sleep(50);
  }
}

// ---- Prometheus -----------------------------------------------------------------------
interface Prom {
  readonly url: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}
async function startPrometheus(): Promise<Prom> {
  const dir = await mkdtemp(join(tmpdir(), 'telemesh-bench-prom-'));
  await writeFile(join(dir, 'prometheus.yml'), 'global:\n  scrape_interval: 1m\nscrape_configs: []\n');
  const port = await freePort();
  const child = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--web.enable-remote-write-receiver', '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited: ${err}`);
    try {
      if ((await fetch(`${url}/-/ready`)).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`prometheus not ready: ${err}`);
    await sleep(100);
  }
  return {
    url,
    child,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(10_000)]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** remote_write payloads: per shard, a sequence of snappy WriteRequests of SERIES series × 1 sample, timestamps increasing. */
function rwPayloads(shards: number, perShard: number, baseMs: number): Buffer[][] {
  const out: Buffer[][] = [];
  for (let s = 0; s < shards; s++) {
    const labels = Array.from({ length: SERIES }, (_, i) => [
      { name: '__name__', value: 'bench_rw_value' },
      { name: 'instance', value: `shard-${s}` },
      { name: 'series', value: String(i) },
    ]);
    const list: Buffer[] = [];
    for (let p = 0; p < perShard; p++) {
      const ts = BigInt(baseMs + p * 1000);
      const req = create(WriteRequestSchema, { timeseries: labels.map((l, i) => ({ labels: l, samples: [{ value: i + p, timestamp: ts }] })) });
      list.push(compressSync(Buffer.from(toBinary(WriteRequestSchema, req))));
    }
    out.push(list);
  }
  return out;
}

/** Sends each shard's payloads in order (shards in parallel, as Prometheus shards do); returns samples/s. */
async function sendRw(url: string, headers: Record<string, string>, shards: Buffer[][], from: number, to: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    shards.map(async (list) => {
      for (let p = from; p < to; p++) {
        const res = await fetch(url, {
          method: 'POST',
          headers: { ...headers, 'content-type': 'application/x-protobuf', 'content-encoding': 'snappy', 'x-prometheus-remote-write-version': '0.1.0' },
          body: list[p]!,
        });
        await res.arrayBuffer();
        if (res.status !== 204 && res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
      }
    }),
  );
  return ((to - from) * shards.length * SERIES) / ((performance.now() - t0) / 1000);
}

// ---- main -----------------------------------------------------------------------------
async function main(): Promise<void> {
  const loadBefore = loadavg();
  log(`bench:ingest — ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`);
  log(`  ${RUNS} runs × ${SECONDS} s, ${STREAMS_N} SDK streams × batches of ${fmt(SERIES)} series; load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  await mkdir(RESULTS, { recursive: true });
  const profileDir = join(RESULTS, 'profiles');
  if (PROFILE) await mkdir(profileDir, { recursive: true });
  const natsDir = await mkdtemp(join(tmpdir(), 'telemesh-bench-nats-'));
  const nats: NatsServer = await startNatsServer({ port: await freePort(), storeDir: natsDir, logger: pino({ level: 'silent' }) });
  const natsPid = await descendantNamed(nats.pid, 'nats-server');
  const nc = await natsConnect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  const secret = testSecret();
  const agentToken = await token(secret, ['agent'], TENANT);
  const labels = Array.from({ length: STREAMS_N }, (_, k) => seriesLabels(k));
  const procs: MeshProcess[] = [];
  const rss: Record<string, number | undefined> = {};
  const noteRss = async (name: string, pid: number | undefined) => {
    const v = await peakRssMiB(pid);
    if (v !== undefined) rss[name] = Math.max(rss[name] ?? 0, v);
  };
  const serve = async (target: string, env: Record<string, string>, tag: string): Promise<MeshProcess> => {
    const m = await startMesh({
      target,
      secret,
      natsUrl: nats.url,
      env: {
        TELEMESH_LOG_LEVEL: 'warn',
        ...(PROFILE
          ? { NODE_OPTIONS: `--import=${join(ROOT, 'bench', 'ingest', 'cpu-profile.mjs')}`, TELEMESH_BENCH_PROFILE: join(profileDir, `${tag}-${Date.now()}.cpuprofile`) }
          : {}),
        ...env,
      },
    });
    procs.push(m);
    return m;
  };
  const stop = async (m: MeshProcess) => {
    await m.terminate(30_000);
    const i = procs.indexOf(m);
    if (i >= 0) procs.splice(i, 1);
  };
  const result: Record<string, unknown> = {
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, loadBefore },
    params: { runs: RUNS, seconds: SECONDS, seriesPerBatch: SERIES, streams: STREAMS_N, target: TARGET },
  };
  let sink: Awaited<ReturnType<typeof startSink>> | undefined;
  let prom: Prom | undefined;
  try {
    // 1. Ingestion alone, tracing off vs on (interleaved so drift hits both alike).
    const off: number[] = [];
    const on: number[] = [];
    const offCpu: number[] = [];
    const onCpu: number[] = [];
    const natsCpu: number[] = [];
    const sdkCpu: number[] = [];
    sink = await startSink();
    const modes = SKIP.has('tracing') ? (['off'] as const) : (['off', 'on'] as const);
    log('\ningestion alone (SDK → ingestion → JetStream publish ack; aggregation not running)');
    for (let r = 0; r < RUNS; r++) {
      for (const mode of modes) {
        const env: Record<string, string> = mode === 'off' ? { OTEL_SDK_DISABLED: 'true' } : { OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint };
        const ing = await serve('ingestion', env, `ingestion-tracing-${mode}`);
        const [c0, n0, s0] = [await cpuSeconds(ing.child.pid), await cpuSeconds(natsPid), process.cpuUsage()];
        const res = await drive(ing.grpcUrl, agentToken, SECONDS, labels);
        const [c1, n1, s1] = [await cpuSeconds(ing.child.pid), await cpuSeconds(natsPid), process.cpuUsage(s0)];
        if (mode === 'off') sdkCpu.push(res.samples / Math.max(0.01, (s1.user + s1.system) / 1e6));
        const rate = res.samples / ((res.ackedAtMs - res.startedAtMs) / 1000);
        (mode === 'off' ? off : on).push(rate);
        (mode === 'off' ? offCpu : onCpu).push(res.samples / Math.max(0.01, c1 - c0));
        if (mode === 'off') natsCpu.push(res.samples / Math.max(0.01, n1 - n0));
        log(`    run ${r + 1} tracing ${mode}: ${fmt(rate)} samples/s (${fmt(res.samples)} samples; ingestion used ${(c1 - c0).toFixed(1)} CPU-s = ${fmt(res.samples / Math.max(0.01, c1 - c0))} samples per CPU-second)`);
        await noteRss('ingestion', ing.child.pid);
        await stop(ing);
      }
    }
    const offS = spread(off);
    show('ingestion alone (tracing off)', offS);
    show('  per ingestion CPU-second', spread(offCpu), 'samples/CPU-s');
    show('  per nats-server CPU-second', spread(natsCpu), 'samples/CPU-s');
    show('  per SDK (bench process) CPU-second', spread(sdkCpu), 'samples/CPU-s');
    result.ingestionAlone = { wallClock: offS, perIngestionCpuSecond: spread(offCpu), perNatsCpuSecond: spread(natsCpu), perSdkCpuSecond: spread(sdkCpu) };
    if (on.length > 0) {
      const onS = spread(on);
      const onC = spread(onCpu);
      show('ingestion alone (tracing on)', onS);
      show('  per ingestion CPU-second', onC, 'samples/CPU-s');
      const overhead = +(1 - onS.median / offS.median).toFixed(3);
      const cpuOverhead = +(spread(offCpu).median / onC.median - 1).toFixed(3);
      log(`  tracing overhead: ${(overhead * 100).toFixed(1)}% throughput (median vs median), ${(cpuOverhead * 100).toFixed(1)}% more ingestion CPU per sample; ${sink.requests()} OTLP exports received`);
      result.tracing = { off: offS, on: onS, offPerCpuSecond: spread(offCpu), onPerCpuSecond: onC, throughputOverhead: overhead, cpuPerSampleOverhead: cpuOverhead, exportsReceived: sink.requests() };
    }
    await jsm.streams.purge(STREAMS.samples);

    // 2. remote_write: the same payloads to Prometheus and to our /api/v1/write.
    if (!SKIP.has('rw')) {
      log('\nremote_write (same snappy payloads, 2 shards in parallel, each in timestamp order)');
      const perRun = RW_PAYLOADS;
      const shards = rwPayloads(2, 1 + perRun * RUNS, Date.now() - 3_600_000);
      const ing = await serve('ingestion', { OTEL_SDK_DISABLED: 'true' }, 'ingestion-rw');
      prom = await startPrometheus();
      const ours: number[] = [];
      const theirs: number[] = [];
      const oursUrl = `${ing.httpUrl}/api/v1/write`;
      const promUrl = `${prom.url}/api/v1/write`;
      const auth = { authorization: `Bearer ${agentToken}` };
      // Warm-up: the first payload creates the series on both sides; not timed.
      await sendRw(promUrl, {}, shards, 0, 1);
      let oursError: string | undefined;
      try {
        await sendRw(oursUrl, auth, shards, 0, 1);
      } catch (err) {
        oursError = err instanceof Error ? err.message : String(err);
      }
      for (let r = 0; r < RUNS; r++) {
        const from = 1 + r * perRun;
        theirs.push(await sendRw(promUrl, {}, shards, from, from + perRun));
        if (!oursError) ours.push(await sendRw(oursUrl, auth, shards, from, from + perRun));
        log(`    run ${r + 1}: prometheus ${fmt(theirs[r]!)} samples/s${oursError ? '' : `, telemesh ${fmt(ours[r]!)} samples/s`}`);
      }
      await noteRss('prometheus', prom.child.pid);
      await noteRss('ingestion (remote_write)', ing.child.pid);
      const p = spread(theirs);
      show('prometheus 2.42 remote_write', p);
      const rw: Record<string, unknown> = { prometheus: p, payloadSeries: SERIES, payloadBytes: shards[0]![1]!.byteLength };
      if (oursError) {
        log(`  telemesh /api/v1/write failed: ${oursError}`);
        rw.telemeshError = oursError;
      } else {
        const o = spread(ours);
        show('telemesh /api/v1/write (ingestion)', o);
        rw.telemesh = o;
        rw.ratio = +(o.median / p.median).toFixed(3);
        log(`  ratio telemesh / prometheus: ${rw.ratio}`);
      }
      result.remoteWrite = rw;
      await prom.stop();
      prom = undefined;
      await stop(ing);
      await jsm.streams.purge(STREAMS.samples);
    }

    // 3. End to end: the clock stops when aggregation has stored everything.
    if (!SKIP.has('e2e')) {
      log(`\nend to end (SDK → ingestion → JetStream → aggregation → DuckDB; ${TARGET === 'all' ? 'one --target=all process' : 'separate ingestion and aggregation processes'})`);
      const env = { OTEL_SDK_DISABLED: 'true' };
      const ing = TARGET === 'all' ? await serve('all', env, 'all') : await serve('ingestion', env, 'ingestion-e2e');
      const agg = TARGET === 'all' ? ing : await serve('aggregation', env, 'aggregation');
      const rates: number[] = [];
      const ingestRates: number[] = [];
      let sent = 0;
      const written0 = await scrapeCounter(agg.httpUrl, 'telemesh_aggregation_samples_written_total');
      const aggCpu: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        const a0 = await cpuSeconds(agg.child.pid);
        const res = await drive(ing.grpcUrl, agentToken, SECONDS, labels);
        const doneAt = await drained(jsm);
        if (agg !== ing) aggCpu.push(res.samples / Math.max(0.01, (await cpuSeconds(agg.child.pid)) - a0));
        sent += res.samples;
        rates.push(res.samples / ((doneAt - res.startedAtMs) / 1000));
        ingestRates.push(res.samples / ((res.ackedAtMs - res.startedAtMs) / 1000));
        log(`    run ${r + 1}: ${fmt(rates[r]!)} samples/s stored (acked at ${fmt(ingestRates[r]!)} samples/s; ${fmt(res.samples)} samples; drained ${((doneAt - res.ackedAtMs) / 1000).toFixed(1)} s after the last ack)`);
        await noteRss(TARGET === 'all' ? 'telemesh (all)' : 'ingestion (e2e)', ing.child.pid);
        if (agg !== ing) await noteRss('aggregation', agg.child.pid);
      }
      const written = (await scrapeCounter(agg.httpUrl, 'telemesh_aggregation_samples_written_total')) - written0;
      const e = spread(rates);
      show('end to end (stored)', e);
      show('  of which ingestion acked', spread(ingestRates));
      if (aggCpu.length > 0) show('  per aggregation CPU-second', spread(aggCpu), 'samples/CPU-s');
      log(`  samples sent ${fmt(sent)}, written by aggregation ${fmt(written)}${written === sent ? ' (all, once)' : ' (MISMATCH)'}`);
      result.endToEnd = { stored: e, acked: spread(ingestRates), ...(aggCpu.length > 0 ? { perAggregationCpuSecond: spread(aggCpu) } : {}), samplesSent: sent, samplesWritten: written, target: TARGET };
      if (agg !== ing) await stop(agg);
      await stop(ing);
    }
  } finally {
    for (const m of [...procs]) await stop(m).catch(() => undefined);
    await prom?.stop().catch(() => undefined);
    await sink?.close();
    await nc.close().catch(() => undefined);
    await noteRss('nats-server', natsPid);
    await nats.stop();
    await rm(natsDir, { recursive: true, force: true });
  }
  rss['bench (SDK clients)'] = Math.round(process.resourceUsage().maxRSS / 1024);
  const loadAfter = loadavg();
  (result.machine as Record<string, unknown>).loadAfter = loadAfter;
  result.peakRssMiB = rss;
  log('\npeak RSS (VmHWM), MiB: ' + Object.entries(rss).map(([k, v]) => `${k} ${v}`).join(', '));
  log(`load average after ${loadAfter.map((l) => l.toFixed(2)).join(' ')} (2 cores shared with other work: treat spreads above ~10% as noise)`);
  // Noise-independent view: CPU cost per sample of every process on the path, and what two
  // otherwise idle cores would allow end to end at that cost.
  const ia = result.ingestionAlone as { perIngestionCpuSecond: Spread; perNatsCpuSecond: Spread; perSdkCpuSecond: Spread } | undefined;
  const agg = (result.endToEnd as { perAggregationCpuSecond?: Spread } | undefined)?.perAggregationCpuSecond;
  if (ia && agg) {
    const us = (s: Spread) => 1e6 / s.median;
    const cost = { sdk: us(ia.perSdkCpuSecond), ingestion: us(ia.perIngestionCpuSecond), natsServer: us(ia.perNatsCpuSecond), aggregation: us(agg) };
    const total = cost.sdk + cost.ingestion + cost.natsServer + cost.aggregation;
    const ceiling = Math.round((cpus().length * 1e6) / total);
    log(
      `CPU per sample (µs): SDK ${cost.sdk.toFixed(1)}, ingestion ${cost.ingestion.toFixed(1)}, nats-server ${cost.natsServer.toFixed(2)}, aggregation ${cost.aggregation.toFixed(1)}; ` +
        `at that cost ${cpus().length} idle cores allow at most ${fmt(ceiling)} samples/s end to end`,
    );
    result.cpuMicrosPerSample = { ...Object.fromEntries(Object.entries(cost).map(([k, v]) => [k, +v.toFixed(2)])), total: +total.toFixed(2), impliedCeilingSamplesPerSecond: ceiling };
  }
  const e2e = (result.endToEnd as { stored?: Spread } | undefined)?.stored?.median;
  if (e2e !== undefined) log(`target ≥ 300,000 samples/s end to end: ${e2e >= 300_000 ? 'met' : `not met (${fmt(e2e)})`}`);
  result.at = new Date().toISOString();
  await writeFile(join(RESULTS, 'ingest.json'), JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${join('bench', 'results', 'ingest.json')}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:ingest failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
