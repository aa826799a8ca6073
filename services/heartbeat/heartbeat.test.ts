/**
 * HeartbeatService against real parts: a real nats-server (JetStream, KV), real gRPC
 * streams over loopback, the real agent SDK. Intervals and grace are shortened through
 * configuration so the suite stays fast; timing asserts are generous bounds only.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create, fromBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startHeartbeat as startAgent, type HeartbeatHandle } from '../../libs/agent-sdk/heartbeat.js';
import { agentsSubject, BUCKETS, connectBus, samplesSubject, type Bus } from '../../libs/bus/index.js';
import { startTestNats, testLogger, type TestNats } from '../../libs/bus/testing.js';
import { MatchType } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { AgentEventSchema, SampleBatchSchema, type AgentEvent, type SampleBatch } from '../../libs/contracts/telemesh/events/v1/events_pb.js';
import { AgentSchema, AgentState } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_pb.js';
import { ConnectRequestSchema, HeartbeatService, type ConnectRequest } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import { authInterceptor, defaultAccessPolicy } from '../../libs/runtime/auth/index.js';
import { createTestAuth } from '../../libs/runtime/auth/testing.js';
import { loadConfig } from '../../libs/runtime/config.js';
import { HealthRegistry } from '../../libs/runtime/health.js';
import { errorInterceptor } from '../../libs/runtime/interceptors.js';
import { createRegistry } from '../../libs/runtime/metrics.js';
import { RpcServer } from '../../libs/runtime/server.js';
import { HeartbeatServiceImpl } from './heartbeat-service.js';
import { startHeartbeat } from './module.js';
import { AgentRegistry, isCasConflict } from './registry.js';

const logger = testLogger();
const auth = createTestAuth();

interface Replica {
  readonly name: string;
  readonly url: string;
  readonly impl: HeartbeatServiceImpl;
  readonly metrics: ReturnType<typeof createRegistry>;
  stop(): Promise<void>;
  /** Dies without the clean stop: streams cut, bus gone, lease no longer renewed. */
  crash(): Promise<void>;
}

const FLAGS: Array<[string, string]> = [
  ['heartbeat.graceMs', '300'],
  ['heartbeat.sweepIntervalMs', '50'],
  ['heartbeat.acceptablePauseMs', '300'],
  ['heartbeat.minStdDevMs', '100'],
  ['heartbeat.leaseTtlMs', '2000'],
  ['heartbeat.upIntervalMs', '1000'],
];

async function startReplica(nats: TestNats, name: string, extra: Array<[string, string]> = []): Promise<Replica> {
  const config = loadConfig({ flags: [['replica', name], ...FLAGS, ...extra] });
  const metrics = createRegistry();
  const health = new HealthRegistry();
  const server = new RpcServer(
    { host: '127.0.0.1', httpPort: 0, grpcPort: 0, tlsCertFile: '', tlsKeyFile: '', maxRequestBytes: 1 << 20, shutdownTimeoutMs: 2000 },
    {
      logger,
      registry: metrics,
      health,
      interceptors: [errorInterceptor(logger), authInterceptor({ verifier: auth.verifier, policy: defaultAccessPolicy })],
      readiness: () => ({ ready: true, modules: new Map() }),
    },
  );
  await server.listen();
  const bus = await connectBus({ url: nats.url, name, logger, registry: metrics });
  await bus.ensureTopology();
  const started = await startHeartbeat({ config, server, bus, registry: metrics, health, logger });
  let stopping: Promise<void> | undefined;
  return {
    name,
    url: server.urls.grpc,
    impl: started.value,
    metrics,
    stop: () =>
      (stopping ??= (async () => {
        await started.stop?.();
        await server.close();
        await bus.close();
      })()),
    crash: () =>
      (stopping ??= (async () => {
        await bus.close();
        await server.close();
        // Only to release timers and the watch: with the bus gone nothing reaches NATS.
        await started.stop?.();
      })()),
  };
}

/** Collects agent events and `up` samples straight off NATS. */
class Observer {
  readonly events: AgentEvent[] = [];
  /** Nats-Msg-Id of each event, by index into {@link events}. */
  readonly msgIds: string[] = [];
  readonly up: SampleBatch[] = [];
  constructor(readonly nc: NatsConnection) {
    nc.subscribe('telemesh.agents.v1.>', {
      callback: (_e, m) => {
        this.events.push(fromBinary(AgentEventSchema, m.data));
        this.msgIds.push(m.headers?.get('Nats-Msg-Id') ?? '');
      },
    });
    nc.subscribe('telemesh.samples.v1.>', { callback: (_e, m) => void this.up.push(fromBinary(SampleBatchSchema, m.data)) });
  }
  of(agentId: string): AgentEvent[] {
    return this.events.filter((e) => e.agentId === agentId);
  }
  states(agentId: string): string[] {
    return this.of(agentId).map((e) => AgentState[e.state]!);
  }
  upValues(agentId: string): number[] {
    const out: number[] = [];
    for (const b of this.up) for (const s of b.series) if (s.labels.some((l) => l.name === 'agent_id' && l.value === agentId)) out.push(...s.values);
    return out;
  }
}

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A hand-driven stream for protocol-level cases the SDK never produces. */
function rawStream(url: string, token: string) {
  const client = createClient(HeartbeatService, createGrpcTransport({ baseUrl: url }));
  const items: ConnectRequest[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  const abort = new AbortController();
  const reqs = (async function* () {
    for (;;) {
      while (items.length) yield items.shift()!;
      if (closed) return;
      await new Promise<void>((r) => (wake = r));
    }
  })();
  const responses = client.connect(reqs, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
  const it = responses[Symbol.asyncIterator]();
  return {
    send(m: MessageInitShape<typeof ConnectRequestSchema>['msg']) {
      items.push(create(ConnectRequestSchema, { msg: m }));
      wake?.();
    },
    next: () => it.next(),
    end() {
      closed = true;
      wake?.();
    },
    abort: () => abort.abort(),
  };
}

const hello = (agentId: string, requestedIntervalMs = 1000n) => ({ case: 'hello' as const, value: { agentId, hostname: 'h', version: '1', labels: [], requestedIntervalMs } });

describe('heartbeat service', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let obs: Observer;
  let r1: Replica;
  let agentToken: string;
  let readerToken: string;
  const agents: HeartbeatHandle[] = [];
  const agent = (agentId: string, extra: Partial<Parameters<typeof startAgent>[0]> = {}) => {
    const h = startAgent({ url: r1.url, token: agentToken, agentId, hostname: `${agentId}.local`, version: '1.0', intervalMs: 1000, backoff: { initialMs: 50, maxMs: 200 }, ...extra });
    agents.push(h);
    return h;
  };
  const reader = () => createClient(HeartbeatService, createGrpcTransport({ baseUrl: r1.url }));
  const rh = () => ({ headers: { authorization: `Bearer ${readerToken}` } });

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    obs = new Observer(nc);
    r1 = await startReplica(nats, 'r1');
    agentToken = await auth.token(['agent'], 'acme');
    readerToken = await auth.token(['reader'], 'acme');
  });
  after(async () => {
    await Promise.allSettled(agents.map((a) => a.stop(false)));
    await r1?.stop();
    await nc?.close();
    await nats?.stop();
  });

  it('registers an agent (alive event, registry entry, up=1) and a goodbye makes it left, not dead', async () => {
    const a = agent('a1', { labels: { env: 'prod' } });
    await eventually(() => obs.states('a1').includes('ALIVE'), 'alive event');
    await eventually(() => obs.upValues('a1').includes(1), 'up=1 sample');
    const got = await reader().getAgent({ agentId: 'a1' }, rh());
    assert.equal(got.agent?.state, AgentState.ALIVE);
    assert.equal(got.agent?.ownerReplica, 'r1');
    assert.equal(got.agent?.hostname, 'a1.local');
    assert.equal(got.agent?.intervalMs, 1000n);
    await eventually(() => a.connected && a.intervalMs === 1000, 'directive');
    await new Promise((r) => setTimeout(r, 2200));
    assert.deepEqual(obs.states('a1'), ['ALIVE'], 'a beating agent must not change state');
    await a.stop();
    await eventually(() => obs.states('a1').includes('LEFT'), 'left event');
    assert.deepEqual(obs.states('a1'), ['ALIVE', 'LEFT']);
    assert.match(obs.of('a1')[1]!.reason, /goodbye/);
    await eventually(() => obs.upValues('a1').includes(0), 'up=0 sample');
    await new Promise((r) => setTimeout(r, 600));
    assert.deepEqual(obs.states('a1'), ['ALIVE', 'LEFT'], 'left is final: no dead after a goodbye');
  });

  it('a stream reset makes the agent suspect at once and dead after the grace', async () => {
    const a = agent('a2');
    await eventually(() => obs.states('a2').includes('ALIVE'), 'alive');
    await a.stop(false);
    await eventually(() => obs.states('a2').includes('DEAD'), 'dead');
    const [, suspect, dead] = obs.of('a2');
    assert.deepEqual(obs.states('a2'), ['ALIVE', 'SUSPECT', 'DEAD']);
    assert.match(suspect!.reason, /stream broke without goodbye/);
    assert.match(dead!.reason, /did not reconnect within 300 ms/);
    const gap = Number(dead!.atMs - suspect!.atMs);
    assert.ok(gap >= 280 && gap < 3000, `suspect → dead took ${gap} ms`);
  });

  it('a silent agent (stream open, no heartbeats) goes suspect → dead by phi, then recovers', async () => {
    const a = agent('a3');
    await eventually(() => obs.states('a3').includes('ALIVE'), 'alive');
    await new Promise((r) => setTimeout(r, 2100));
    a.setPaused(true);
    await eventually(() => obs.states('a3').includes('DEAD'), 'dead', 15_000);
    assert.deepEqual(obs.states('a3'), ['ALIVE', 'SUSPECT', 'DEAD']);
    assert.match(obs.of('a3')[2]!.reason, /phi .* >= deadPhi 8/);
    a.setPaused(false);
    await eventually(() => obs.states('a3').length === 4, 'recovery');
    assert.equal(obs.states('a3')[3], 'ALIVE');
    assert.match(obs.of('a3')[3]!.reason, /recovered/);
  });

  it('refuses bad input with clear errors and never disturbs another agent’s stream', async () => {
    const ok = agent('b-ok');
    await eventually(() => obs.states('b-ok').includes('ALIVE'), 'alive');

    // A first message that is not the hello.
    const s1 = rawStream(r1.url, agentToken);
    s1.send({ case: 'beat', value: { seq: 1n, sentAtMs: 0n, status: '' } });
    await assert.rejects(s1.next(), (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /first message of a stream must be hello/.test(ConnectError.from(e).rawMessage));

    // An interval outside 1–60 s.
    const s2 = rawStream(r1.url, agentToken);
    s2.send(hello('b-int', 500n));
    await assert.rejects(s2.next(), (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /hello\.requested_interval_ms.*1–60 s/.test(ConnectError.from(e).rawMessage));

    // The same agent id while its live stream holds it.
    const s3 = rawStream(r1.url, agentToken);
    s3.send(hello('b-ok'));
    await assert.rejects(s3.next(), (e: unknown) => ConnectError.from(e).code === Code.AlreadyExists && /held by another live stream/.test(ConnectError.from(e).rawMessage));

    // A sequence going backwards is ignored and counted.
    const s4 = rawStream(r1.url, agentToken);
    s4.send(hello('b-seq'));
    assert.equal((await s4.next()).value?.intervalMs, 1000n);
    s4.send({ case: 'beat', value: { seq: 5n, sentAtMs: 0n, status: '' } });
    s4.send({ case: 'beat', value: { seq: 3n, sentAtMs: 0n, status: '' } });
    await eventually(async () => /reason="seq_backwards"} 1/.test(await r1.metrics.metrics()), 'seq_backwards counted');
    s4.send({ case: 'goodbye', value: { reason: 'done' } });
    s4.end();
    assert.equal((await s4.next()).done, true);

    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(obs.states('b-ok'), ['ALIVE'], 'the held agent kept beating undisturbed');
    assert.ok(ok.connected);
    assert.equal(ok.connects, 1);
    await ok.stop();
  });

  it('lists agents filtered by state and labels, paginated, and watches state changes', async () => {
    const watchAbort = new AbortController();
    const seen: Array<[string, string, string]> = [];
    const watching = (async () => {
      try {
        for await (const c of reader().watchAgents({ matchers: [{ type: MatchType.EQUAL, name: 'team', value: 'blue' }] }, { ...rh(), signal: watchAbort.signal })) {
          seen.push([c.agent!.agentId, AgentState[c.previousState]!, AgentState[c.agent!.state]!]);
        }
      } catch {
        // cancelled
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    const hs = ['l1', 'l2', 'l3', 'l4', 'l5'].map((id, i) => agent(id, { labels: { team: i % 2 === 0 ? 'blue' : 'red' } }));
    await eventually(() => hs.every((h) => h.connected), 'all connected');
    await hs[4]!.stop(false);
    await eventually(() => obs.states('l5').includes('DEAD'), 'l5 dead');

    const c = reader();
    const blue = await c.listAgents({ matchers: [{ type: MatchType.EQUAL, name: 'team', value: 'blue' }] }, rh());
    assert.deepEqual(blue.agents.map((a) => a.agentId), ['l1', 'l3', 'l5']);
    const aliveBlue = await c.listAgents({ states: [AgentState.ALIVE], matchers: [{ type: MatchType.EQUAL, name: 'team', value: 'blue' }] }, rh());
    assert.deepEqual(aliveBlue.agents.map((a) => a.agentId), ['l1', 'l3']);
    const ids: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const p = await c.listAgents({ matchers: [{ type: MatchType.REGEX, name: 'agent_id', value: 'l.' }], pageSize: 2, pageToken }, rh());
      ids.push(...p.agents.map((a) => a.agentId));
      pageToken = p.nextPageToken;
      pages++;
    } while (pageToken !== '');
    assert.deepEqual(ids, ['l1', 'l2', 'l3', 'l4', 'l5']);
    assert.equal(pages, 3);
    await assert.rejects(c.listAgents({ pageSize: -1 }, rh()), (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument);
    await assert.rejects(c.getAgent({ agentId: 'nope' }, rh()), (e: unknown) => ConnectError.from(e).code === Code.NotFound);
    // Another tenant sees none of them.
    const other = await c.listAgents({}, { headers: { authorization: `Bearer ${await auth.token(['reader'], 'other')}` } });
    assert.equal(other.agents.length, 0);

    await eventually(() => seen.some(([id, , to]) => id === 'l5' && to === 'DEAD'), 'watch saw l5 dead');
    assert.ok(seen.some(([id, from, to]) => id === 'l1' && from === 'UNSPECIFIED' && to === 'ALIVE'), JSON.stringify(seen));
    assert.ok(!seen.some(([id]) => id === 'l2' || id === 'l4'), 'label filter applies to the watch');
    watchAbort.abort();
    await watching;
    await Promise.all(hs.slice(0, 4).map((h) => h.stop()));
  });

  it('changes the interval of connected agents when the rules change, and rules beat the agent’s wish', async () => {
    const a = agent('i1', { intervalMs: 2000, labels: { tier: 'db' } });
    await eventually(() => a.connected && a.intervalMs === 2000, 'requested interval honoured');
    r1.impl.setIntervalRules('acme{tier="db"}=3');
    await eventually(() => a.intervalMs === 3000, 'new directive while connected');
    r1.impl.setIntervalRules('');
    await eventually(() => a.intervalMs === 2000, 'back to the wish');
    await a.stop();
  });

  it('the registry is compare-and-set on the revision', async () => {
    const bus: Bus = await connectBus({ url: nats.url, name: 'cas', logger, registry: createRegistry() });
    try {
      const reg = new AgentRegistry(await bus.kv(BUCKETS.agents), logger);
      await reg.start();
      const rec = create(AgentSchema, { tenant: 'cas', agentId: 'x', state: AgentState.ALIVE });
      const rev = await reg.compareAndSet(rec, 0);
      await assert.rejects(reg.compareAndSet(rec, 0), (e: unknown) => isCasConflict(e), 'create twice');
      const rev2 = await reg.compareAndSet(create(AgentSchema, { ...rec, state: AgentState.DEAD }), rev);
      await assert.rejects(reg.compareAndSet(rec, rev), (e: unknown) => isCasConflict(e), 'stale revision');
      assert.equal((await reg.fetch('cas', 'x'))?.revision, rev2);
      reg.close();
    } finally {
      await bus.close();
    }
  });
});

describe('heartbeat service with several replicas', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let obs: Observer;

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    obs = new Observer(nc);
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('when a replica stops its agents move, agents that never return are declared dead exactly once', async () => {
    const [a, b, c] = [await startReplica(nats, 'ra'), await startReplica(nats, 'rb'), await startReplica(nats, 'rc')];
    const token = await auth.token(['agent'], 'acme');
    const movers = ['m1', 'm2', 'm3'].map((id) =>
      startAgent({ urls: [a.url, b.url, c.url], token, agentId: id, intervalMs: 1000, backoff: { initialMs: 50, maxMs: 300 } }),
    );
    // Ghosts hold streams on `ra` only and never reconnect anywhere.
    const ghosts = ['g1', 'g2'].map((id) => {
      const s = rawStream(a.url, token);
      s.send(hello(id));
      return s;
    });
    try {
      await eventually(() => movers.every((m) => m.replica === 'ra'), 'movers on ra');
      for (const g of ghosts) await g.next();
      await a.stop();
      await eventually(() => movers.every((m) => m.connected && (m.replica === 'rb' || m.replica === 'rc')), 'movers moved');
      await eventually(() => ['g1', 'g2'].every((g) => obs.states(g).includes('DEAD')), 'ghosts dead after lease expiry', 15_000);
      // Both survivors scanned the orphans; give a losing replica time to (wrongly) publish too.
      await new Promise((r) => setTimeout(r, 2500));
      for (const g of ['g1', 'g2']) {
        assert.equal(obs.states(g).filter((s) => s === 'DEAD').length, 1, `${g}: exactly one dead event`);
        assert.match(obs.of(g).at(-1)!.reason, /lease of replica ra expired/);
        assert.ok(['rb', 'rc'].includes(obs.of(g).at(-1)!.replica));
      }
      for (const m of ['m1', 'm2', 'm3']) assert.ok(!obs.states(m).includes('DEAD'), `${m} was never dead`);
      const list = await createClient(HeartbeatService, createGrpcTransport({ baseUrl: b.url })).listAgents({}, { headers: { authorization: `Bearer ${await auth.token(['reader'], 'acme')}` } });
      const byId = new Map(list.agents.map((x) => [x.agentId, x]));
      for (const m of ['m1', 'm2', 'm3']) {
        assert.equal(byId.get(m)?.state, AgentState.ALIVE);
        assert.ok(['rb', 'rc'].includes(byId.get(m)!.ownerReplica));
      }
      assert.equal(byId.get('g1')?.state, AgentState.DEAD);
    } finally {
      await Promise.allSettled(movers.map((m) => m.stop()));
      for (const g of ghosts) g.abort();
      await Promise.allSettled([a.stop(), b.stop(), c.stop()]);
    }
  });

  it('a replica that dies without stopping: its lease lapses, survivors race, each orphan is declared dead once', async () => {
    // A lease longer than the hold window, so movers get in before the orphans are judged.
    const lease: Array<[string, string]> = [['heartbeat.leaseTtlMs', '5000']];
    const [a, b, c] = [await startReplica(nats, 'ka', lease), await startReplica(nats, 'kb', lease), await startReplica(nats, 'kc', lease)];
    const token = await auth.token(['agent'], 'acme');
    const movers = ['km1', 'km2'].map((id) => startAgent({ urls: [a.url, b.url, c.url], token, agentId: id, intervalMs: 1000, backoff: { initialMs: 50, maxMs: 300 } }));
    const ghosts = ['kg1', 'kg2'].map((id) => {
      const s = rawStream(a.url, token);
      s.send(hello(id));
      return s;
    });
    const bus = await connectBus({ url: nats.url, name: 'peek', logger, registry: createRegistry() });
    try {
      await eventually(() => movers.every((m) => m.replica === 'ka'), 'movers on ka');
      for (const g of ghosts) await g.next();
      const crashedAt = Date.now();
      await a.crash();
      await eventually(() => movers.every((m) => m.connected && (m.replica === 'kb' || m.replica === 'kc')), 'movers moved', 15_000);
      await eventually(() => ['kg1', 'kg2'].every((g) => obs.states(g).includes('DEAD')), 'ghosts dead after the lease lapsed', 20_000);
      await new Promise((r) => setTimeout(r, 2500));
      const peek = new AgentRegistry(await bus.kv(BUCKETS.agents), logger);
      for (const g of ['kg1', 'kg2']) {
        const deaths = obs.events.flatMap((e, i) => (e.agentId === g && e.state === AgentState.DEAD ? [{ e, id: obs.msgIds[i]! }] : []));
        assert.equal(deaths.length, 1, `${g}: exactly one dead event`);
        const { e, id } = deaths[0]!;
        assert.match(e.reason, /lease of replica ka expired/);
        assert.ok(['kb', 'kc'].includes(e.replica), e.replica);
        assert.ok(Number(e.atMs) >= crashedAt + 3000, `not before the lease lapsed: ${Number(e.atMs) - crashedAt} ms`);
        // The event id names the registry revision that recorded the death.
        const entry = await peek.fetch('acme', g);
        assert.equal(entry?.agent.state, AgentState.DEAD);
        assert.equal(id, HeartbeatServiceImpl.eventMsgId('acme', g, entry!.revision));
      }
      for (const m of ['km1', 'km2']) assert.ok(!obs.states(m).includes('DEAD'), `${m} was never dead: ${obs.states(m).join(',')}`);
    } finally {
      await Promise.allSettled(movers.map((m) => m.stop()));
      for (const g of ghosts) g.abort();
      await Promise.allSettled([a.stop(), b.stop(), c.stop()]);
      await bus.close();
    }
  });

  it('an orphan whose entry changed since it was read (the agent came back elsewhere): the CAS loses and nothing is published', async () => {
    const bus = await connectBus({ url: nats.url, name: 'cas-lost', logger, registry: createRegistry() });
    await bus.ensureTopology();
    try {
      const kv = await bus.kv(BUCKETS.agents);
      const writer = new AgentRegistry(kv, logger);
      const now = Date.now();
      // A replica whose lease lapsed a minute ago, and an agent it still names as owner.
      await writer.putReplica('gone', { expiresMs: now - 60_000, renewedMs: now - 75_000, stopping: false });
      const rev = await writer.compareAndSet(create(AgentSchema, { tenant: 'lost', agentId: 'x1', state: AgentState.ALIVE, ownerReplica: 'gone', lastSeenMs: BigInt(now - 75_000) }), 0);
      // The survivor's view is read once and not followed (no watch), so it is stale on purpose.
      const stale = new AgentRegistry(kv, logger);
      await stale.fetch('lost', 'x1');
      await stale.putReplica('gone', { expiresMs: now - 60_000, renewedMs: now - 75_000, stopping: false });
      // Meanwhile the agent reconnected to another replica, which rewrote the entry.
      await writer.compareAndSet(create(AgentSchema, { tenant: 'lost', agentId: 'x1', state: AgentState.ALIVE, ownerReplica: 'elsewhere', lastSeenMs: BigInt(now) }), rev);
      const metrics = createRegistry();
      const survivor = new HeartbeatServiceImpl({
        config: loadConfig({ flags: FLAGS }).heartbeat,
        replica: 'survivor',
        registry: stale,
        publisher: bus,
        agentsSubject,
        samplesSubject,
        metrics,
        logger,
      });
      survivor.sweep();
      await eventually(async () => /telemesh_heartbeat_registry_conflicts_total 1/.test(await metrics.metrics()), 'the lost CAS counted');
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(obs.states('x1'), [], 'the losing replica published no event');
      const entry = await writer.fetch('lost', 'x1');
      assert.equal(entry?.agent.ownerReplica, 'elsewhere');
      assert.equal(entry?.agent.state, AgentState.ALIVE);
      assert.doesNotMatch(await metrics.metrics(), /telemesh_heartbeat_transitions_total\{/, 'no transition decided');
    } finally {
      await bus.close();
    }
  });
});

/** A client nobody here wrote, built from the .proto files: plain gRPC, the native path. */
describe('heartbeat service with a @grpc/grpc-js client (native gRPC path)', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let obs: Observer;
  let r1: Replica;
  let client: grpc.Client;
  let agentToken: string;
  const streams: grpc.ClientDuplexStream<object, GrpcResponse>[] = [];

  interface GrpcResponse {
    intervalMs: string;
    replica: string;
    reason: string;
  }

  /** Opens an agent stream; collects what comes back. */
  const open = (token = agentToken) => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    const call = (client as unknown as Record<string, (md: grpc.Metadata) => grpc.ClientDuplexStream<object, GrpcResponse>>).Connect!(md);
    streams.push(call);
    const got: GrpcResponse[] = [];
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('data', (r: GrpcResponse) => got.push(r));
    call.on('error', () => {});
    return { call, got, status };
  };
  const helloMsg = (agentId: string) => ({ hello: { agentId, hostname: `${agentId}.local`, version: '1', labels: [], requestedIntervalMs: '1000' } });

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    obs = new Observer(nc);
    r1 = await startReplica(nats, 'g1');
    agentToken = await auth.token(['agent'], 'acme');
    const def = protoLoader.loadSync(['telemesh/heartbeat/v1/heartbeat_service.proto'], {
      includeDirs: [join(import.meta.dirname, '../../proto')],
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { telemesh: { heartbeat: { v1: { HeartbeatService: grpc.ServiceClientConstructor } } } };
    client = new pkg.telemesh.heartbeat.v1.HeartbeatService(new URL(r1.url).host, grpc.credentials.createInsecure());
  });
  after(async () => {
    for (const s of streams) s.cancel();
    client?.close();
    await r1?.stop();
    await nc?.close();
    await nats?.stop();
  });

  it('welcomes the agent, takes heartbeats, sends directives, and a goodbye makes it left', async () => {
    const { call, got, status } = open();
    call.write(helloMsg('g-a1'));
    await eventually(() => got.length > 0, 'welcome');
    assert.deepEqual(got[0], { intervalMs: '1000', replica: 'g1', reason: 'welcome' });
    for (let seq = 1; seq <= 3; seq++) call.write({ beat: { seq: String(seq), sentAtMs: String(Date.now()), status: 'ok' } });
    await eventually(async () => (await r1.metrics.getSingleMetricAsString('telemesh_heartbeat_beats_total')).includes(' 3'), 'three beats counted', 5000);
    r1.impl.setIntervalRules('acme=2');
    await eventually(() => got.some((r) => r.reason === 'interval changed' && r.intervalMs === '2000'), 'interval directive');
    r1.impl.setIntervalRules('');
    assert.ok(obs.states('g-a1').includes('ALIVE'));
    call.write({ goodbye: { reason: 'shutdown' } });
    call.end();
    assert.equal((await status).code, grpc.status.OK);
    await eventually(() => obs.states('g-a1').includes('LEFT'), 'left event');
    assert.ok(!obs.states('g-a1').includes('SUSPECT'));
  });

  it('a reset (RST_STREAM) makes the agent suspect at once and dead after the grace', async () => {
    const { call, got } = open();
    call.write(helloMsg('g-a2'));
    await eventually(() => got.length > 0, 'welcome');
    call.cancel();
    await eventually(() => obs.states('g-a2').includes('SUSPECT'), 'suspect at once', 2000);
    await eventually(() => obs.states('g-a2').includes('DEAD'), 'dead after the grace', 5000);
  });

  it('refuses a bad token (UNAUTHENTICATED), an agent role missing (PERMISSION_DENIED) and a first message that is not hello (INVALID_ARGUMENT)', async () => {
    const bad = open('not-a-jwt');
    bad.call.write(helloMsg('g-a3'));
    assert.equal((await bad.status).code, grpc.status.UNAUTHENTICATED);
    const reader = open(await auth.token(['reader'], 'acme'));
    reader.call.write(helloMsg('g-a3'));
    assert.equal((await reader.status).code, grpc.status.PERMISSION_DENIED);
    const wrong = open();
    wrong.call.write({ beat: { seq: '1' } });
    const st = await wrong.status;
    assert.equal(st.code, grpc.status.INVALID_ARGUMENT);
    assert.match(st.details, /first message of a stream must be hello/);
    const badId = open();
    badId.call.write(helloMsg('has a space'));
    assert.equal((await badId.status).code, grpc.status.INVALID_ARGUMENT);
    assert.deepEqual(obs.states('g-a3'), []);
  });

  it('a second stream for a held agent gets ALREADY_EXISTS; a Connect-protocol client still reaches the same method through connect-es', async () => {
    const first = open();
    first.call.write(helloMsg('g-a4'));
    await eventually(() => first.got.length > 0, 'welcome');
    const second = open();
    second.call.write(helloMsg('g-a4'));
    assert.equal((await second.status).code, grpc.status.ALREADY_EXISTS);
    first.call.write({ goodbye: { reason: '' } });
    first.call.end();
    await first.status;
    // Connect protocol over HTTP/2: not plain gRPC, so served by connect-es with the same session core.
    const connectClient = createClient(HeartbeatService, createConnectTransport({ baseUrl: r1.url, httpVersion: '2' }));
    const reqs = (async function* () {
      yield create(ConnectRequestSchema, { msg: hello('g-a5') });
      await new Promise((r) => setTimeout(r, 200));
      yield create(ConnectRequestSchema, { msg: { case: 'goodbye', value: { reason: 'done' } } });
    })();
    const reasons: string[] = [];
    for await (const r of connectClient.connect(reqs, { headers: { authorization: `Bearer ${agentToken}` } })) reasons.push(r.reason);
    assert.deepEqual(reasons, ['welcome']);
    await eventually(() => obs.states('g-a5').includes('LEFT'), 'left event (connect protocol)');
  });

  it('graceful shutdown ends open streams with UNAVAILABLE', async () => {
    const { call, got, status } = open();
    call.write(helloMsg('g-a6'));
    await eventually(() => got.length > 0, 'welcome');
    await r1.stop();
    assert.equal((await status).code, grpc.status.UNAVAILABLE);
  });
});
