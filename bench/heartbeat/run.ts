/**
 * `npm run bench:heartbeat`: failure detection at scale.
 *
 * Phase 1 — one heartbeat replica (`telemesh serve --target=heartbeat`, its own process, so
 * its CPU and RSS are measured alone) and N simulated agents (default 10,000) at a 1 s
 * interval, each on its own gRPC bidi stream (streams multiplexed over a pool of HTTP/2
 * connections; the simulator in sim.ts frames gRPC itself on node:http2, see there why).
 * After a steady period: kill a random 1% abruptly (stream
 * reset, no goodbye) and freeze another 1% (stream open, no heartbeats), and measure the
 * time from each failure to its `dead` event (p50/p99/max per kind), then keep running to
 * count false positives (any `dead` or `suspect` of an agent that did not fail).
 *
 * Phase 2 — two replicas, agents split between them; halfway, SIGKILL one replica and at
 * the same moment kill 1% of the agents that were on it (they never come back). Checks:
 * every other agent moves to the survivor and stays alive (none lost), the never-returning
 * agents are declared dead by the survivor once their leases expire, and no agent has two
 * `dead` events.
 *
 * Bounded: a default run takes about 6–7 minutes. Flags: `--agents=10000`,
 * `--soak=150` (phase 1 seconds after ramp-up; `--soak=300` for the full 5-minute run),
 * `--phase2=90` (seconds; 0 skips it), `--connections=250` (HTTP/2 connections the agents
 * share), `--out=heartbeat.json` (file under bench/results), `--load=0` (extra busy-loop
 * processes to load the machine). The simulator's own CPU is reported beside the service's. Everything binds 127.0.0.1; results go to
 * bench/results/heartbeat.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fromBinary } from '@bufbuild/protobuf';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort, startTestNats, type TestNats } from '../../libs/bus/testing.js';
import { AgentEventSchema } from '../../libs/contracts/telemesh/events/v1/events_pb.js';
import { AgentState, type Agent } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_pb.js';
import { HeartbeatService } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import { mintToken } from '../../libs/runtime/auth/index.js';
import { SimAgent, simConnections, startTicker, streamEnds, type SimConnection } from './sim.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, 'cmd', 'telemesh.js');

function arg(name: string, def: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  const v = a ? Number(a.slice(name.length + 3)) : def;
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a non-negative number`);
  return v;
}

const AGENTS = Math.min(arg('agents', 10_000), 20_000);
const SOAK_S = Math.min(arg('soak', 150), 900);
const PHASE2_S = Math.min(arg('phase2', 90), 600);
const CONNECTIONS = Math.max(1, Math.min(arg('connections', 250), 1000));
const LOAD = Math.min(arg('load', 0), 4);
const INTERVAL_MS = 1000;
const TENANT = 'bench';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const out = (s: string) => void process.stdout.write(s + '\n');

interface Ev {
  agentId: string;
  state: AgentState;
  atMs: number;
  replica: string;
  reason: string;
}

/** A heartbeat service process and its resource readings from /proc. */
class ServiceProc {
  readonly child: ChildProcess;
  #log = '';
  constructor(
    readonly name: string,
    readonly http: number,
    readonly grpc: number,
    natsUrl: string,
    secret: string,
    dataDir: string,
  ) {
    // V8's tick log is written as it goes, so a profile survives a service that is killed.
    const prof = process.env.BENCH_SERVICE_PROF ? ['--prof', '--no-logfile-per-isolate', `--logfile=${join(process.env.BENCH_SERVICE_PROF, `${name}.v8.log`)}`] : [];
    // Extra node flags for the service, e.g. `--heapsnapshot-signal=SIGUSR2` to inspect memory.
    const flags = (process.env.BENCH_SERVICE_FLAGS ?? '').split(' ').filter((f) => f !== '');
    this.child = spawn(process.execPath, [...prof, ...flags, BIN, 'serve', '--target=heartbeat'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        TELEMESH_DATA_DIR: dataDir,
        TELEMESH_NATS_URL: natsUrl,
        TELEMESH_SERVER_HOST: '127.0.0.1',
        TELEMESH_SERVER_HTTP_PORT: String(http),
        TELEMESH_SERVER_GRPC_PORT: String(grpc),
        TELEMESH_AUTH_HS256_SECRET: secret,
        TELEMESH_REPLICA: name,
        TELEMESH_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (d: Buffer) => {
      this.#log = (this.#log + d.toString()).slice(-20_000);
      if (process.env.BENCH_SERVICE_LOG) process.stderr.write(d);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
  }
  get url(): string {
    return `http://127.0.0.1:${this.grpc}`;
  }
  async ready(): Promise<void> {
    const end = Date.now() + 60_000;
    while (Date.now() < end) {
      if (this.child.exitCode !== null) throw new Error(`${this.name} exited:\n${this.#log}`);
      try {
        if ((await fetch(`http://127.0.0.1:${this.http}/readyz`)).status === 200) return;
      } catch {
        // not yet listening
      }
      await sleep(100);
    }
    throw new Error(`${this.name} not ready:\n${this.#log}`);
  }
  /** CPU seconds (user + system) and RSS bytes of the process. */
  async usage(): Promise<{ cpuS: number; rss: number }> {
    const stat = await readFile(`/proc/${this.child.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuS = (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
    const status = await readFile(`/proc/${this.child.pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
    return { cpuS, rss };
  }
  /** V8 heap used and off-heap ("external", e.g. buffers) bytes, from the service's own /metrics. */
  async heap(): Promise<{ heapUsed: number; external: number }> {
    try {
      const text = await (await fetch(`http://127.0.0.1:${this.http}/metrics`)).text();
      const read = (name: string) => Number(new RegExp(`^telemesh_${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
      return { heapUsed: read('nodejs_heap_size_used_bytes'), external: read('nodejs_external_memory_bytes') };
    } catch {
      return { heapUsed: NaN, external: NaN };
    }
  }
  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null) this.child.kill(signal);
  }
  /** SIGTERM, then SIGKILL if it has not exited within `ms`. */
  async terminate(ms = 5000): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await Promise.race([exited, sleep(ms)]);
    this.kill('SIGKILL');
  }
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return { count: s.length, p50: pct(s, 50), p99: pct(s, 99), max: s.length ? s[s.length - 1]! : NaN };
}
function pick<T>(xs: readonly T[], n: number, exclude: Set<T> = new Set()): T[] {
  const pool = xs.filter((x) => !exclude.has(x));
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, n);
}

/** Starts simulated agents in waves so the service is not hit by 10,000 hellos at once. */
async function startAgents(ids: string[], token: string, connsFor: (i: number) => SimConnection[]): Promise<{ agents: Map<string, SimAgent>; stop: () => void }> {
  const agents = new Map<string, SimAgent>();
  ids.forEach((id, i) => agents.set(id, new SimAgent(id, i, connsFor(i), token, { rack: `r${i % 20}` })));
  const stopTicker = startTicker([...agents.values()], INTERVAL_MS);
  // Waves of 250 hellos every 100 ms (2,500/s offered): faster than one replica accepts
  // streams, so the ramp time measures the service, not this pacing.
  let i = 0;
  for (const a of agents.values()) {
    a.start();
    if (++i % 250 === 0) await sleep(100);
  }
  const end = Date.now() + 120_000;
  let lastReport = Date.now();
  while ([...agents.values()].some((a) => !a.connected) && Date.now() < end) {
    await sleep(250);
    if (Date.now() - lastReport >= 10_000) {
      lastReport = Date.now();
      out(`    … ${[...agents.values()].filter((a) => a.connected).length}/${ids.length} connected; stream ends so far: ${JSON.stringify(Object.fromEntries(streamEnds))}`);
    }
  }
  return {
    agents,
    stop: () => {
      stopTicker();
      for (const a of agents.values()) a.kill();
    },
  };
}

function collect(nc: NatsConnection, tenant: string): Ev[] {
  const events: Ev[] = [];
  nc.subscribe(`telemesh.agents.v1.${tenant}.>`, {
    callback: (_e, m) => {
      const e = fromBinary(AgentEventSchema, m.data);
      events.push({ agentId: e.agentId, state: e.state as AgentState, atMs: Number(e.atMs), replica: e.replica, reason: e.reason });
    },
  });
  return events;
}

async function listAll(url: string, token: string): Promise<Agent[]> {
  const c = createClient(HeartbeatService, createGrpcTransport({ baseUrl: url }));
  const all: Agent[] = [];
  let pageToken = '';
  do {
    // Bounded, so a saturated service fails the listing instead of hanging the benchmark.
    const p = await c.listAgents({ pageSize: 5000, pageToken }, { headers: { authorization: `Bearer ${token}` }, timeoutMs: 60_000 });
    all.push(...p.agents);
    pageToken = p.nextPageToken;
  } while (pageToken !== '');
  return all;
}

async function phase1(secret: string, agentToken: string, readerToken: string, dataDir: string) {
  out(`phase 1: ${AGENTS} agents at ${INTERVAL_MS} ms against one replica; soak ${SOAK_S} s`);
  const nats = await startTestNats();
  const nc = await connect({ servers: nats.url });
  const events = collect(nc, TENANT);
  const svc = new ServiceProc('hb-1', await freePort(), await freePort(), nats.url, secret, join(dataDir, 'p1'));
  const lag = monitorEventLoopDelay({ resolution: 20 });
  let sim: Awaited<ReturnType<typeof startAgents>> | undefined;
  try {
    await svc.ready();
    const conns = simConnections(`127.0.0.1:${svc.grpc}`, CONNECTIONS);
    const ids = Array.from({ length: AGENTS }, (_, i) => `agent-${String(i).padStart(5, '0')}`);
    const t0 = Date.now();
    const rampCpu0 = (await svc.usage()).cpuS;
    sim = await startAgents(ids, agentToken, (i) => [conns[i % CONNECTIONS]!]);
    const agents = sim.agents;
    const connected = [...agents.values()].filter((a) => a.connected).length;
    const rampS = (Date.now() - t0) / 1000;
    const rampCpuS = (await svc.usage()).cpuS - rampCpu0;
    out(`  ramp-up: ${connected}/${AGENTS} connected in ${rampS.toFixed(1)} s; service CPU ${rampCpuS.toFixed(1)} s during it (${((rampCpuS / Math.max(1, connected)) * 1e3).toFixed(2)} ms per connected agent)`);
    for (const [why, n] of streamEnds) out(`    streams ended during ramp-up ×${n}: ${why}`);
    streamEnds.clear();
    const rampEnd = Date.now();
    lag.enable();

    await sleep(10_000);
    const u0 = await svc.usage();
    const sim0 = process.cpuUsage();
    const tA = Date.now();
    let peakRss = u0.rss;
    const steadyS = Math.min(30, Math.max(5, SOAK_S / 4));
    for (let i = 0; i < steadyS; i++) {
      await sleep(1000);
      peakRss = Math.max(peakRss, (await svc.usage()).rss);
    }
    const u1 = await svc.usage();
    const cpuPct = ((u1.cpuS - u0.cpuS) / ((Date.now() - tA) / 1000)) * 100;
    const simUsage = process.cpuUsage(sim0);
    const simCpuPct = ((simUsage.user + simUsage.system) / 1e6 / ((Date.now() - tA) / 1000)) * 100;
    const heap = await svc.heap();
    out(`  simulator (this process) CPU ${simCpuPct.toFixed(1)}% of one core`);
    out(`  steady state: service CPU ${cpuPct.toFixed(1)}% of one core, RSS ${(u1.rss / 2 ** 20).toFixed(0)} MiB (peak ${(peakRss / 2 ** 20).toFixed(0)} MiB; V8 heap used ${(heap.heapUsed / 2 ** 20).toFixed(0)} MiB, external ${(heap.external / 2 ** 20).toFixed(0)} MiB)`);

    const n = Math.max(1, Math.round(AGENTS / 100));
    const killed = pick(ids, n);
    const frozen = pick(ids, n, new Set(killed));
    const failedAt = new Map<string, number>();
    for (const id of frozen) {
      failedAt.set(id, Date.now());
      agents.get(id)!.paused = true;
    }
    for (const id of killed) {
      failedAt.set(id, Date.now());
      agents.get(id)!.kill();
    }
    out(`  injected: ${killed.length} killed (stream reset), ${frozen.length} frozen (silent)`);
    const deadAt = (id: string) => events.find((e) => e.agentId === id && e.state === AgentState.DEAD && e.atMs >= failedAt.get(id)!)?.atMs;
    const waitEnd = Date.now() + 30_000;
    while (Date.now() < waitEnd && [...killed, ...frozen].some((id) => deadAt(id) === undefined)) await sleep(200);
    const killLat = killed.flatMap((id) => (deadAt(id) !== undefined ? [deadAt(id)! - failedAt.get(id)!] : []));
    const frozenLat = frozen.flatMap((id) => (deadAt(id) !== undefined ? [deadAt(id)! - failedAt.get(id)!] : []));
    const sample = events.find((e) => e.agentId === frozen[0] && e.state === AgentState.DEAD);
    if (sample) out(`    e.g. ${sample.agentId}: ${sample.reason}`);
    const killS = stats(killLat);
    const frozenS = stats(frozenLat);
    out(`  connection loss → dead: p50 ${killS.p50} ms, p99 ${killS.p99} ms, max ${killS.max} ms (${killS.count}/${killed.length} detected)`);
    out(`  silent failure  → dead: p50 ${frozenS.p50} ms, p99 ${frozenS.p99} ms, max ${frozenS.max} ms (${frozenS.count}/${frozen.length} detected)`);

    const soakEnd = rampEnd + SOAK_S * 1000;
    while (Date.now() < soakEnd) {
      await sleep(1000);
      peakRss = Math.max(peakRss, (await svc.usage()).rss);
    }
    lag.disable();
    const failed = new Set([...killed, ...frozen]);
    const fpDead = events.filter((e) => e.state === AgentState.DEAD && !failed.has(e.agentId) && e.atMs >= rampEnd);
    const fpSuspect = events.filter((e) => e.state === AgentState.SUSPECT && !failed.has(e.agentId) && e.atMs >= rampEnd);
    const u2 = await svc.usage();
    out(`  false positives over ${SOAK_S} s: ${new Set(fpDead.map((e) => e.agentId)).size} dead, ${new Set(fpSuspect.map((e) => e.agentId)).size} suspect (of ${AGENTS - failed.size} healthy agents)`);
    out(`  simulator event-loop delay: p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms, max ${(lag.max / 1e6).toFixed(1)} ms; service peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`);
    const list = await listAll(svc.url, readerToken).catch((err: unknown) => (out(`  listing agents failed: ${String(err)}`), [] as Agent[]));
    return {
      agents: AGENTS,
      connected,
      rampSeconds: Number(rampS.toFixed(1)),
      rampServiceCpuSeconds: Number(rampCpuS.toFixed(1)),
      intervalMs: INTERVAL_MS,
      soakSeconds: SOAK_S,
      service: { cpuPercentOfOneCore: Number(cpuPct.toFixed(1)), rssMiB: Number((u1.rss / 2 ** 20).toFixed(1)), heapUsedMiB: Number((heap.heapUsed / 2 ** 20).toFixed(1)), externalMiB: Number((heap.external / 2 ** 20).toFixed(1)), peakRssMiB: Number((peakRss / 2 ** 20).toFixed(1)), cpuSecondsTotal: u2.cpuS },
      connectionLossToDeadMs: killS,
      silentFailureToDeadMs: frozenS,
      falsePositives: { dead: new Set(fpDead.map((e) => e.agentId)).size, suspect: new Set(fpSuspect.map((e) => e.agentId)).size, examples: fpDead.slice(0, 5) },
      registry: { listed: list.length, alive: list.filter((a) => a.state === AgentState.ALIVE).length, dead: list.filter((a) => a.state === AgentState.DEAD).length },
      simulatorLoopDelayMs: { p99: lag.percentile(99) / 1e6, max: lag.max / 1e6 },
      simulatorCpuPercentOfOneCore: Number(simCpuPct.toFixed(1)),
      targets: {
        connectionLossUnder1500ms: killS.max < 1500 && killS.count === killed.length,
        silentUnder5000ms: frozenS.max < 5000 && frozenS.count === frozen.length,
        zeroFalsePositives: fpDead.length === 0,
      },
    };
  } finally {
    await svc.terminate();
    sim?.stop();
    await nc.close();
    await nats.stop();
  }
}

async function phase2(secret: string, agentToken: string, readerToken: string, dataDir: string) {
  out(`phase 2: ${AGENTS} agents over two replicas for ${PHASE2_S} s; one replica SIGKILLed halfway`);
  const nats: TestNats = await startTestNats();
  const nc = await connect({ servers: nats.url });
  const events = collect(nc, TENANT);
  const a = new ServiceProc('hb-a', await freePort(), await freePort(), nats.url, secret, join(dataDir, 'pa'));
  const b = new ServiceProc('hb-b', await freePort(), await freePort(), nats.url, secret, join(dataDir, 'pb'));
  let sim: Awaited<ReturnType<typeof startAgents>> | undefined;
  try {
    await Promise.all([a.ready(), b.ready()]);
    const perSide = Math.max(1, Math.floor(CONNECTIONS / 2));
    const ca = simConnections(`127.0.0.1:${a.grpc}`, perSide);
    const cb = simConnections(`127.0.0.1:${b.grpc}`, perSide);
    const ids = Array.from({ length: AGENTS }, (_, i) => `agent-${String(i).padStart(5, '0')}`);
    const t0 = Date.now();
    streamEnds.clear();
    sim = await startAgents(ids, agentToken, (i) => (i % 2 === 0 ? [ca[i % perSide]!, cb[i % perSide]!] : [cb[i % perSide]!, ca[i % perSide]!]));
    const agents = sim.agents;
    out(`  ramp-up: ${[...agents.values()].filter((x) => x.connected).length}/${AGENTS} connected in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const start = Date.now();
    await sleep((PHASE2_S * 1000) / 2);
    const onA = ids.filter((id) => agents.get(id)!.replica === 'hb-a');
    const never = pick(onA, Math.max(1, Math.round(AGENTS / 100)));
    const killAt = Date.now();
    a.kill('SIGKILL');
    for (const id of never) agents.get(id)!.kill();
    out(`  killed replica hb-a holding ${onA.length} agents; ${never.length} of them never come back`);
    const neverSet = new Set(never);
    const deadAt = (id: string) => events.find((e) => e.agentId === id && e.state === AgentState.DEAD && e.atMs >= killAt)?.atMs;
    const end = start + PHASE2_S * 1000;
    while (Date.now() < end) await sleep(500);
    // Let the last moves and lease expiries settle before judging.
    const settle = Date.now() + 30_000;
    while (Date.now() < settle && (never.some((id) => deadAt(id) === undefined) || [...agents.entries()].some(([id, h]) => !neverSet.has(id) && h.replica !== 'hb-b'))) await sleep(500);
    const list = await listAll(b.url, readerToken).catch((err: unknown) => (out(`  listing agents failed: ${String(err)}`), [] as Agent[]));
    const byId = new Map(list.map((x) => [x.agentId, x]));
    const lost = ids.filter((id) => !neverSet.has(id) && (byId.get(id)?.state !== AgentState.ALIVE || byId.get(id)?.ownerReplica !== 'hb-b'));
    const deadCounts = new Map<string, number>();
    for (const e of events) if (e.state === AgentState.DEAD) deadCounts.set(e.agentId, (deadCounts.get(e.agentId) ?? 0) + 1);
    const duplicates = [...deadCounts.values()].filter((c) => c > 1).length;
    const falseDead = [...deadCounts.keys()].filter((id) => !neverSet.has(id)).length;
    // When the false deaths happened, relative to the replica kill (s): ramp-up, failover, later.
    const falseDeadAtS = events.filter((e) => e.state === AgentState.DEAD && !neverSet.has(e.agentId)).map((e) => Math.round((e.atMs - killAt) / 1000));
    if (falseDeadAtS.length > 0) out(`    false dead at (s after the kill): ${JSON.stringify(Object.fromEntries([...new Set(falseDeadAtS)].sort((x, y) => x - y).map((t) => [t, falseDeadAtS.filter((x) => x === t).length])))}`);
    const reasons = new Map<string, number>();
    for (const e of events) if (e.state === AgentState.DEAD) {
      const k = `${e.replica}: ${e.reason.replace(/\d+/g, 'N')}`;
      reasons.set(k, (reasons.get(k) ?? 0) + 1);
    }
    for (const [k, v] of reasons) out(`    dead reason ×${v}: ${k}`);
    const neverLat = stats(never.flatMap((id) => (deadAt(id) !== undefined ? [deadAt(id)! - killAt] : [])));
    const moved = onA.filter((id) => !neverSet.has(id) && agents.get(id)!.replica === 'hb-b').length;
    out(`  moved to hb-b: ${moved}/${onA.length - never.length}; lost: ${lost.length}; duplicate dead events: ${duplicates}; false dead: ${falseDead}`);
    out(`    simulator stream ends in phase 2: ${JSON.stringify(Object.fromEntries(streamEnds))}`);
    out(`  never-returning agents → dead (by the survivor, after lease expiry): p50 ${neverLat.p50} ms, p99 ${neverLat.p99} ms, max ${neverLat.max} ms (${neverLat.count}/${never.length})`);
    return {
      seconds: PHASE2_S,
      agentsOnKilledReplica: onA.length,
      neverReturning: never.length,
      moved,
      lost: lost.length,
      lostExamples: lost.slice(0, 5).map((id) => ({ id, state: byId.get(id) ? AgentState[byId.get(id)!.state] : 'missing', owner: byId.get(id)?.ownerReplica })),
      duplicateDeadEvents: duplicates,
      falseDead,
      falseDeadSecondsAfterKill: falseDeadAtS,
      neverReturningToDeadMs: neverLat,
      targets: { noAgentLost: lost.length === 0, noDuplicateDead: duplicates === 0, allOrphansDead: neverLat.count === never.length },
    };
  } finally {
    a.kill('SIGKILL');
    await b.terminate();
    sim?.stop();
    await nc.close();
    await nats.stop();
  }
}

async function main(): Promise<void> {
  const secret = randomBytes(32).toString('base64url');
  const agentToken = await mintToken(secret, { subject: 'bench-agent', tenant: TENANT, roles: ['agent'], ttlSec: 7200 });
  const readerToken = await mintToken(secret, { subject: 'bench-reader', tenant: TENANT, roles: ['reader'], ttlSec: 7200 });
  const dataDir = await mkdtemp(join(tmpdir(), 'telemesh-bench-hb-'));
  const loaders: ChildProcess[] = [];
  for (let i = 0; i < LOAD; i++) loaders.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
  const started = new Date().toISOString();
  try {
    const p1 = await phase1(secret, agentToken, readerToken, dataDir);
    const p2 = PHASE2_S > 0 ? await phase2(secret, agentToken, readerToken, dataDir) : undefined;
    const result = { benchmark: 'heartbeat', started, finished: new Date().toISOString(), machine: { cpus: (await import('node:os')).cpus().length, node: process.version }, extraLoadProcesses: LOAD, phase1: p1, phase2: p2 };
    await mkdir(join(ROOT, 'bench', 'results'), { recursive: true });
    const name = process.argv.find((x) => x.startsWith('--out='))?.slice(6) ?? 'heartbeat.json';
    if (!/^[\w.-]+\.json$/.test(name)) throw new Error('--out must be a plain file name ending in .json');
    await writeFile(join(ROOT, 'bench', 'results', name), JSON.stringify(result, null, 2) + '\n');
    out(`results written to bench/results/${name}`);
  } finally {
    for (const l of loaders) l.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
