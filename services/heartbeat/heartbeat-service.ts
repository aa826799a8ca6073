/**
 * The HeartbeatService implementation: agent streams, the failure detector, ownership
 * leases, agent events and `up` samples.
 *
 * Each agent whose stream this replica holds is "owned": it has a phi accrual detector and
 * a lease in the registry that the owner renews. A sweep checks every owned agent: phi
 * over the suspect threshold → suspect, over the dead threshold → dead; a stream that broke
 * without a goodbye is suspect at once and dead after the grace unless the agent came back.
 * Agents whose owner stopped renewing (a replica that died) are declared dead by whichever
 * surviving replica wins the compare-and-set on the registry entry, so exactly one replica
 * publishes each transition.
 */
import { hostname as osHostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { create, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { LabelSchema, SeriesSchema, type Label, type LabelMatcher, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { AgentEventSchema, SampleBatchSchema } from '../../libs/contracts/telemesh/events/v1/events_pb.js';
import { AgentSchema, AgentState, type Agent } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_pb.js';
import {
  ConnectResponseSchema,
  GetAgentResponseSchema,
  ListAgentsResponseSchema,
  WatchAgentsResponseSchema,
  type ConnectRequest,
  type ConnectResponse,
  type GetAgentRequest,
  type GetAgentResponse,
  type HeartbeatService,
  type Hello,
  type ListAgentsRequest,
  type ListAgentsResponse,
  type WatchAgentsRequest,
  type WatchAgentsResponse,
} from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import { assertSubjectToken } from '../../libs/bus/subjects.js';
import { compileMatcher, isValidLabelName, matchersFromWire, matchesAll, type CompiledMatcher } from '../../libs/model/index.js';
import { requirePrincipal } from '../../libs/runtime/auth/index.js';
import { InvalidArgumentError, NotFoundError, TelemeshError } from '../../libs/runtime/errors.js';
import { requestLogger } from '../../libs/runtime/logger.js';
import { counter, gauge, histogram } from '../../libs/runtime/metrics.js';
import { MAX_INTERVAL_MS, MIN_INTERVAL_MS, parseIntervalRules, resolveInterval, type HeartbeatConfig, type IntervalRule } from './config.js';
import { PhiAccrualDetector } from './phi.js';
import { agentKey, isCasConflict, type AgentRegistry, type RegistryEntry } from './registry.js';

/** Another live stream holds the agent id. Maps to `already_exists`. */
export class AgentHeldError extends TelemeshError {
  readonly kind = 'already_exists';
}

/** What the service needs from the bus: a typed publish resolving on JetStream's ack. */
export interface EventPublisher {
  publish<D extends DescMessage>(subject: string, schema: D, message: MessageShape<D>, opts: { msgId: string }): Promise<unknown>;
}

/** Dependencies of {@link HeartbeatServiceImpl}. */
export interface HeartbeatDeps {
  readonly config: HeartbeatConfig;
  /** This replica's name (owner of its agents' leases). */
  readonly replica: string;
  readonly registry: AgentRegistry;
  readonly publisher: EventPublisher;
  readonly agentsSubject: (tenant: string, agentId: string) => string;
  readonly samplesSubject: (tenant: string) => string;
  readonly metrics: Registry;
  readonly logger: Logger;
  /** Aborted when the server shuts down, to end long-lived streams. */
  readonly shutdown?: AbortSignal;
  readonly now?: () => number;
}

/** A local agent this replica owns. */
interface Owned {
  readonly tenant: string;
  readonly agentId: string;
  readonly key: string;
  agent: Agent;
  revision: number;
  detector: PhiAccrualDetector;
  requestedMs: number;
  stream: Outbox | undefined;
  brokenAtMs: number | undefined;
  lastSeq: bigint;
  lastSeenMs: number;
  leaseWrittenMs: number;
  /** Serializes registry writes of this agent, so each CAS uses the latest revision. */
  chain: Promise<void>;
  /** True once the registry says another replica took the agent over. */
  lost: boolean;
  /** False while the stream's registration is in flight: the detector must not judge yet. */
  registered: boolean;
}

/** A minimal async queue feeding one server stream. */
class Outbox<T = ConnectResponse> {
  readonly #items: T[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  #error: unknown;

  push(item: T): void {
    if (this.#closed) return;
    this.#items.push(item);
    this.#wake?.();
  }

  close(error?: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#error = error;
    this.#wake?.();
  }

  get closed(): boolean {
    return this.#closed;
  }

  async *drain(): AsyncGenerator<T> {
    for (;;) {
      while (this.#items.length > 0) yield this.#items.shift()!;
      if (this.#closed) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }
}

/** A sensible default replica name: host name plus a short random suffix. */
export function defaultReplicaName(): string {
  const host = osHostname().replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 48) || 'replica';
  return `${host}-${randomBytes(3).toString('hex')}`;
}

const UP_SERIES_PER_BATCH = 1000;
const ORPHAN_SCAN_MS = 1000;
const REPLICA_RENEW_MS = 1000;
const REPLICA_TTL_MS = 3000;

/** Implements `telemesh.heartbeat.v1.HeartbeatService`. */
export class HeartbeatServiceImpl implements Partial<ServiceImpl<typeof HeartbeatService>> {
  readonly #d: HeartbeatDeps;
  readonly #now: () => number;
  readonly #owned = new Map<string, Owned>();
  readonly #watchers = new Set<{ tenant: string; matchers: CompiledMatcher[]; out: Outbox<WatchAgentsResponse> }>();
  #rules: IntervalRule[];
  readonly #timers: NodeJS.Timeout[] = [];
  #lastSweepMs = 0;
  #lastOrphanScanMs = 0;
  #skippedLast = false;
  #stopped = false;
  readonly #m;

  constructor(deps: HeartbeatDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    this.#rules = parseIntervalRules(deps.config.intervalRules);
    const r = deps.metrics;
    this.#m = {
      ignored: counter(r, { name: 'telemesh_heartbeat_ignored_messages_total', help: 'Agent stream messages ignored, by reason.', labelNames: ['reason'] }),
      rejected: counter(r, { name: 'telemesh_heartbeat_rejected_streams_total', help: 'Agent streams refused, by reason.', labelNames: ['reason'] }),
      transitions: counter(r, { name: 'telemesh_heartbeat_transitions_total', help: 'Agent state transitions decided by this replica, by new state.', labelNames: ['state'] }),
      beats: counter(r, { name: 'telemesh_heartbeat_beats_total', help: 'Heartbeats received.' }),
      publishFailures: counter(r, { name: 'telemesh_heartbeat_publish_failures_total', help: 'Agent events or up samples that could not be published, by kind.', labelNames: ['kind'] }),
      casConflicts: counter(r, { name: 'telemesh_heartbeat_registry_conflicts_total', help: 'Registry writes that lost a compare-and-set.' }),
      owned: gauge(r, { name: 'telemesh_heartbeat_owned_agents', help: 'Agents whose stream this replica holds or whose death it still has to decide.' }),
      skippedSweeps: counter(r, { name: 'telemesh_heartbeat_skipped_sweeps_total', help: 'Detector sweeps skipped because the event loop had stalled (heartbeats may be unread).' }),
      sweep: histogram(r, { name: 'telemesh_heartbeat_sweep_duration_seconds', help: 'Duration of one failure-detector sweep.', buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5] }),
    };
    deps.registry.onChange((after, before) => this.#notifyWatchers(after, before));
    // One listener for all streams (not one per stream: 10,000 agents would be 10,000).
    deps.shutdown?.addEventListener('abort', () => this.#endStreams(), { once: true });
  }

  /** Ends every agent stream with `unavailable` and every watch, so clients go elsewhere. */
  #endStreams(): void {
    for (const o of this.#owned.values()) o.stream?.close(new UnavailableReplicaError(`replica ${this.#d.replica} is shutting down; reconnect`));
    for (const w of this.#watchers) w.out.close();
  }

  /** Starts the sweep, the replica liveness renewal and the periodic `up` samples. */
  async start(): Promise<void> {
    await this.#renewReplica();
    this.#lastSweepMs = this.#now();
    const every = (ms: number, fn: () => unknown) => {
      const t = setInterval(() => void fn(), ms);
      t.unref();
      this.#timers.push(t);
    };
    every(this.#d.config.sweepIntervalMs, () => this.sweep());
    every(REPLICA_RENEW_MS, () => this.#renewReplica());
    every(this.#d.config.upIntervalMs, () => this.#publishAllUp());
  }

  /**
   * Stops: ends every agent stream with `unavailable` (agents reconnect to another
   * replica), drops the replica's liveness entry so they may move at once, ends watches.
   * Leases stay: an agent that never comes back is declared dead by a survivor.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#endStreams();
    await Promise.allSettled([...this.#owned.values()].map((o) => o.chain));
    await this.#d.registry.deleteReplica(this.#d.replica).catch(() => {});
  }

  /** Replaces the interval rules while running; connected agents get a new directive. */
  setIntervalRules(text: string): void {
    this.#rules = parseIntervalRules(text);
    for (const o of this.#owned.values()) {
      const ms = resolveInterval(this.#rules, o.tenant, o.agent.labels, o.requestedMs, this.#d.config.defaultIntervalMs);
      if (BigInt(ms) !== o.agent.intervalMs) {
        o.agent = create(AgentSchema, { ...o.agent, intervalMs: BigInt(ms) });
        o.detector.reset(ms);
        o.detector.start(this.#now());
        o.stream?.push(create(ConnectResponseSchema, { intervalMs: BigInt(ms), replica: this.#d.replica, reason: 'interval changed' }));
      }
    }
  }

  /** Number of agents this replica owns (for tests and the benchmark). */
  get ownedCount(): number {
    return this.#owned.size;
  }

  // ---------------------------------------------------------------- Connect

  /** The agent stream: hello, then beats; answers with directives. */
  async *connect(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse> {
    const { tenant } = requirePrincipal(ctx);
    const log = requestLogger(ctx, this.#d.logger);
    const it = requests[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done) return;
    if (first.value.msg.case !== 'hello') {
      this.#m.rejected.inc({ reason: 'no_hello' });
      throw new InvalidArgumentError(`msg: the first message of a stream must be hello, got ${first.value.msg.case ?? 'an empty message'}`, [
        { field: 'msg', description: 'first message must be hello' },
      ]);
    }
    const hello = first.value.msg.value;
    const labels = this.#validateHello(hello);
    const out = new Outbox();
    const o = await this.#register(tenant, hello, labels, out);
    log.debug({ agent_id: hello.agentId }, 'heartbeat: agent connected');
    out.push(create(ConnectResponseSchema, { intervalMs: o.agent.intervalMs, replica: this.#d.replica, reason: 'welcome' }));

    // Read the agent's messages beside the writer; their end (or error) decides the outcome.
    void (async () => {
      let goodbye = false;
      try {
        for (;;) {
          const r = await it.next();
          if (r.done || out.closed) break;
          const msg = r.value.msg;
          if (msg.case === 'beat') this.#beat(o, out, msg.value.seq, msg.value.status);
          else if (msg.case === 'goodbye') {
            goodbye = true;
            await this.#goodbye(o, out, msg.value.reason);
            break;
          } else {
            this.#m.ignored.inc({ reason: msg.case === 'hello' ? 'repeated_hello' : 'empty_message' });
          }
        }
      } catch {
        // The client reset the stream: handled below like an end without goodbye.
      } finally {
        if (!goodbye) this.#broken(o, out);
        out.close();
      }
    })();
    yield* out.drain();
  }

  #validateHello(hello: Hello): Label[] {
    assertSubjectToken('hello.agent_id', hello.agentId);
    const req = Number(hello.requestedIntervalMs);
    if (req !== 0 && (req < MIN_INTERVAL_MS || req > MAX_INTERVAL_MS)) {
      this.#m.rejected.inc({ reason: 'bad_interval' });
      const description = `must be 0 (no preference) or from ${MIN_INTERVAL_MS} to ${MAX_INTERVAL_MS} ms (1–60 s); got ${req}`;
      throw new InvalidArgumentError(`hello.requested_interval_ms: ${description}`, [{ field: 'hello.requested_interval_ms', description }]);
    }
    for (const [i, l] of hello.labels.entries()) {
      if (!isValidLabelName(l.name) || l.name.startsWith('__') || l.name === 'agent_id' || l.name === 'hostname') {
        this.#m.rejected.inc({ reason: 'bad_label' });
        const description = `label name ${JSON.stringify(l.name)} is not a valid label name (or is reserved: agent_id, hostname, __*)`;
        throw new InvalidArgumentError(`hello.labels[${i}].name: ${description}`, [{ field: `hello.labels[${i}].name`, description }]);
      }
    }
    return hello.labels.map((l) => create(LabelSchema, { name: l.name, value: l.value }));
  }

  async #register(tenant: string, hello: Hello, labels: Label[], out: Outbox): Promise<Owned> {
    const key = agentKey(tenant, hello.agentId);
    const now = this.#now();
    const existing = this.#owned.get(key);
    if (existing?.stream && !existing.stream.closed) {
      this.#m.rejected.inc({ reason: 'agent_held' });
      throw new AgentHeldError(`agent_id ${JSON.stringify(hello.agentId)} of tenant ${tenant} is held by another live stream on replica ${this.#d.replica}`);
    }
    const requestedMs = Number(hello.requestedIntervalMs);
    const intervalMs = resolveInterval(this.#rules, tenant, labels, requestedMs, this.#d.config.defaultIntervalMs);
    let o = existing;
    if (!o) {
      o = {
        tenant,
        agentId: hello.agentId,
        key,
        agent: create(AgentSchema, { tenant, agentId: hello.agentId }),
        revision: 0,
        detector: this.#detector(intervalMs),
        requestedMs,
        stream: undefined,
        brokenAtMs: undefined,
        lastSeq: 0n,
        lastSeenMs: now,
        leaseWrittenMs: 0,
        chain: Promise.resolve(),
        lost: false,
        registered: false,
      };
    } else {
      o.detector.reset(intervalMs);
      o.requestedMs = requestedMs;
    }
    o.stream = out;
    o.brokenAtMs = undefined;
    o.lastSeq = 0n;
    o.lastSeenMs = now;
    // Not judged until the registry write is done and the agent has its directive.
    o.registered = false;
    const owned = o;
    const taken = new Promise<void>((resolve, reject) => {
      owned.chain = owned.chain.then(async () => {
        try {
          await this.#takeOwnership(owned, hello, labels, intervalMs);
          resolve();
        } catch (err) {
          reject(err);
        }
      });
    });
    this.#owned.set(key, o);
    try {
      await taken;
    } catch (err) {
      if (this.#owned.get(key) === o && o.stream === out) this.#owned.delete(key);
      this.#m.owned.set(this.#owned.size);
      throw err;
    }
    // The clock starts when the agent learns its interval, not when it said hello: a slow
    // registration (a busy registry) must not count against the agent.
    o.detector.start(this.#now());
    o.lastSeenMs = this.#now();
    o.registered = true;
    this.#m.owned.set(this.#owned.size);
    return o;
  }

  /** Writes the registry entry naming this replica as owner (CAS, retried on conflicts). */
  async #takeOwnership(o: Owned, hello: Hello, labels: Label[], intervalMs: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const now = this.#now();
      // First try from what we know (our own entry, else the watched cache): one round trip
      // less per registration; a stale guess only costs a lost CAS and a fresh read.
      const cur =
        attempt === 0
          ? o.revision > 0
            ? { agent: o.agent, revision: o.revision }
            : this.#d.registry.get(o.tenant, o.agentId)
          : await this.#d.registry.fetch(o.tenant, o.agentId);
      const prev = cur?.agent;
      if (
        prev &&
        prev.ownerReplica !== this.#d.replica &&
        prev.state === AgentState.ALIVE &&
        Number(prev.leaseExpiresMs) > now &&
        this.#d.registry.replicaAlive(prev.ownerReplica, now)
      ) {
        this.#m.rejected.inc({ reason: 'agent_held' });
        throw new AgentHeldError(`agent_id ${JSON.stringify(o.agentId)} of tenant ${o.tenant} is held by another live stream on replica ${prev.ownerReplica}`);
      }
      const prevState = prev?.state ?? AgentState.UNSPECIFIED;
      const reason =
        prevState === AgentState.DEAD ? 'recovered: agent reconnected after being declared dead'
        : prevState === AgentState.SUSPECT ? 'reconnected'
        : prevState === AgentState.ALIVE ? `stream moved to replica ${this.#d.replica}`
        : 'registered';
      const next = create(AgentSchema, {
        tenant: o.tenant,
        agentId: o.agentId,
        hostname: hello.hostname,
        version: hello.version,
        labels,
        state: AgentState.ALIVE,
        lastSeenMs: BigInt(now),
        ownerReplica: this.#d.replica,
        intervalMs: BigInt(intervalMs),
        reason: prevState === AgentState.ALIVE ? prev!.reason : reason,
        stateSinceMs: prevState === AgentState.ALIVE ? prev!.stateSinceMs : BigInt(now),
        leaseExpiresMs: BigInt(now + this.#d.config.leaseTtlMs),
        status: prev?.status ?? '',
      });
      try {
        o.revision = await this.#d.registry.compareAndSet(next, cur?.revision ?? 0);
      } catch (err) {
        if (isCasConflict(err) && attempt < 5) {
          this.#m.casConflicts.inc();
          continue;
        }
        throw err;
      }
      o.agent = next;
      o.lost = false;
      o.leaseWrittenMs = now;
      if (prevState !== AgentState.ALIVE) this.#announce(next, prevState, reason, o.revision);
      return;
    }
  }

  #beat(o: Owned, out: Outbox, seq: bigint, status: string): void {
    if (o.stream !== out) {
      this.#m.ignored.inc({ reason: 'stale_stream' });
      return;
    }
    if (seq <= o.lastSeq) {
      this.#m.ignored.inc({ reason: 'seq_backwards' });
      return;
    }
    this.#m.beats.inc();
    const now = this.#now();
    o.lastSeq = seq;
    o.lastSeenMs = now;
    o.detector.heartbeat(now);
    if (status !== o.agent.status) o.agent = create(AgentSchema, { ...o.agent, status });
    o.agent.lastSeq = seq;
    if (o.agent.state === AgentState.SUSPECT) this.#transition(o, AgentState.ALIVE, 'heartbeats resumed');
    else if (o.agent.state === AgentState.DEAD) this.#transition(o, AgentState.ALIVE, 'recovered: heartbeats resumed after being declared dead');
  }

  async #goodbye(o: Owned, out: Outbox, reason: string): Promise<void> {
    if (o.stream !== out) return;
    o.stream = undefined;
    this.#transition(o, AgentState.LEFT, `goodbye${reason ? `: ${reason}` : ''}`);
    await o.chain;
    if (this.#owned.get(o.key) === o && !o.stream) this.#owned.delete(o.key);
    this.#m.owned.set(this.#owned.size);
  }

  #broken(o: Owned, out: Outbox): void {
    if (o.stream !== out) return;
    o.stream = undefined;
    o.brokenAtMs = this.#now();
    if (o.agent.state === AgentState.ALIVE) this.#transition(o, AgentState.SUSPECT, 'stream broke without goodbye');
  }

  // ---------------------------------------------------------------- detection

  #detector(intervalMs: number): PhiAccrualDetector {
    const c = this.#d.config;
    return new PhiAccrualDetector({ windowSize: c.windowSize, minStdDevMs: c.minStdDevMs, acceptablePauseMs: c.acceptablePauseMs, firstIntervalMs: intervalMs });
  }

  /**
   * One detector pass over every owned agent, plus lease renewal and (once a second) the
   * orphan scan. Public so tests can drive it; the timer calls it every sweepIntervalMs.
   */
  sweep(): void {
    if (this.#stopped) return;
    const start = process.hrtime.bigint();
    const now = this.#now();
    const late = now - this.#lastSweepMs - this.#d.config.sweepIntervalMs;
    this.#lastSweepMs = now;
    // After an event-loop stall (GC, a busy machine) heartbeats that did arrive may still sit
    // unread in socket buffers; convicting now would blame agents for our own pause. Skip
    // this pass so I/O runs first — but never two in a row, or a constantly lagging process
    // would stop detecting anything.
    if (late > Math.max(250, this.#d.config.sweepIntervalMs) && !this.#skippedLast) {
      this.#skippedLast = true;
      this.#m.skippedSweeps.inc();
      return;
    }
    this.#skippedLast = false;
    const c = this.#d.config;
    for (const o of this.#owned.values()) {
      if (o.lost || !o.registered) continue;
      const state = o.agent.state;
      if (o.brokenAtMs !== undefined) {
        if (now - o.brokenAtMs >= c.graceMs && (state === AgentState.ALIVE || state === AgentState.SUSPECT)) {
          this.#transition(o, AgentState.DEAD, `stream broke without goodbye and the agent did not reconnect within ${c.graceMs} ms`);
        }
        continue;
      }
      if (state === AgentState.ALIVE || state === AgentState.SUSPECT) {
        const phi = o.detector.phi(now);
        if (state === AgentState.ALIVE && phi >= c.suspectPhi) {
          this.#transition(o, AgentState.SUSPECT, `phi ${phi.toFixed(1)} >= suspectPhi ${c.suspectPhi}: no heartbeat for ${now - o.lastSeenMs} ms`);
        }
        if (phi >= c.deadPhi) {
          this.#transition(o, AgentState.DEAD, `phi ${phi === Infinity ? 'inf' : phi.toFixed(1)} >= deadPhi ${c.deadPhi}: no heartbeat for ${now - o.lastSeenMs} ms`);
        }
      }
      if (o.stream && now - o.leaseWrittenMs >= c.leaseTtlMs / 2) this.#renewLease(o);
    }
    if (now - this.#lastOrphanScanMs >= ORPHAN_SCAN_MS) {
      this.#lastOrphanScanMs = now;
      this.#scanOrphans(now);
    }
    this.#m.sweep.observe(Number(process.hrtime.bigint() - start) / 1e9);
  }

  /** Queues a state change of an owned agent: CAS the registry, then announce. */
  #transition(o: Owned, state: AgentState, reason: string): void {
    const from = o.agent.state;
    // Applied locally at once so the next sweep does not queue the same change again.
    o.agent = create(AgentSchema, { ...o.agent, state, reason, stateSinceMs: BigInt(this.#now()) });
    const snapshot = o.agent;
    o.chain = o.chain.then(() => this.#write(o, snapshot, from, reason, true));
  }

  #renewLease(o: Owned): void {
    const now = this.#now();
    o.leaseWrittenMs = now;
    o.chain = o.chain.then(() => this.#write(o, o.agent, o.agent.state, '', false));
  }

  async #write(o: Owned, agent: Agent, from: AgentState, reason: string, announce: boolean): Promise<void> {
    if (o.lost) return;
    const now = this.#now();
    const next = create(AgentSchema, { ...agent, lastSeenMs: BigInt(o.lastSeenMs), leaseExpiresMs: BigInt(now + this.#d.config.leaseTtlMs), ownerReplica: this.#d.replica });
    try {
      o.revision = await this.#casWithRetry(next, o);
      o.leaseWrittenMs = now;
    } catch (err) {
      if (!isCasConflict(err)) {
        // Still owned locally: the next sweep renews the lease; a transition whose write
        // failed is re-decided by the detector (its local state was rolled back below).
        this.#d.logger.warn({ err, agent_id: o.agentId, tenant: o.tenant }, 'heartbeat: registry write failed');
        if (announce) o.agent = create(AgentSchema, { ...o.agent, state: from });
        return;
      }
      this.#m.casConflicts.inc();
      const cur = await this.#d.registry.fetch(o.tenant, o.agentId).catch(() => undefined);
      if (!cur || cur.agent.ownerReplica !== this.#d.replica) {
        // Another replica owns the agent now (it reconnected there, or a survivor declared
        // it dead): let go, and end our stream if it is somehow still open.
        o.lost = true;
        o.stream?.close(new AgentHeldError(`agent ${o.agentId} moved to replica ${cur?.agent.ownerReplica ?? '?'}`));
        if (this.#owned.get(o.key) === o) this.#owned.delete(o.key);
        this.#m.owned.set(this.#owned.size);
        return;
      }
      // Our own entry at a newer revision: retry once on top of it.
      o.revision = cur.revision;
      try {
        o.revision = await this.#d.registry.compareAndSet(next, o.revision);
      } catch (err2) {
        this.#d.logger.warn({ err: err2, agent_id: o.agentId }, 'heartbeat: registry write failed twice');
        return;
      }
    }
    if (announce) {
      o.agent = create(AgentSchema, { ...o.agent, leaseExpiresMs: next.leaseExpiresMs, ownerReplica: next.ownerReplica });
      this.#announce(next, from, reason, o.revision);
      if (agent.state === AgentState.DEAD && !o.stream && this.#owned.get(o.key) === o) {
        this.#owned.delete(o.key);
        this.#m.owned.set(this.#owned.size);
      }
    }
  }

  /** CAS with a few retries on transient bus errors (a lost CAS is returned at once). */
  async #casWithRetry(next: Agent, o: Owned): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#d.registry.compareAndSet(next, o.revision);
      } catch (err) {
        if (isCasConflict(err) || attempt >= 2 || this.#stopped) throw err;
        await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
      }
    }
  }

  /** Agents whose owner stopped renewing their lease: the CAS winner declares them dead. */
  #scanOrphans(now: number): void {
    for (const e of this.#d.registry.entries()) {
      const a = e.agent;
      if (a.state !== AgentState.ALIVE && a.state !== AgentState.SUSPECT) continue;
      if (Number(a.leaseExpiresMs) > now) continue;
      if (this.#owned.has(agentKey(a.tenant, a.agentId))) continue;
      void this.#declareOrphanDead(e, now);
    }
  }

  async #declareOrphanDead(e: RegistryEntry, now: number): Promise<void> {
    const a = e.agent;
    const reason = `lease of replica ${a.ownerReplica || '?'} expired ${now - Number(a.leaseExpiresMs)} ms ago without renewal; last heartbeat ${now - Number(a.lastSeenMs)} ms ago`;
    const next = create(AgentSchema, { ...a, state: AgentState.DEAD, reason, stateSinceMs: BigInt(now), ownerReplica: this.#d.replica, leaseExpiresMs: 0n });
    try {
      const rev = await this.#d.registry.compareAndSet(next, e.revision);
      this.#announce(next, a.state, reason, rev);
    } catch (err) {
      // Losing the CAS means another replica decided first (or the agent came back).
      if (isCasConflict(err)) this.#m.casConflicts.inc();
      else this.#d.logger.warn({ err, agent_id: a.agentId }, 'heartbeat: could not declare orphan dead');
    }
  }

  // ---------------------------------------------------------------- output

  /** Publishes the agent event and the `up` sample of a committed transition. */
  #announce(agent: Agent, from: AgentState, reason: string, revision: number): void {
    this.#m.transitions.inc({ state: AgentState[agent.state] ?? String(agent.state) });
    const at = this.#now();
    const event = create(AgentEventSchema, {
      tenant: agent.tenant,
      agentId: agent.agentId,
      previousState: from,
      state: agent.state,
      reason,
      atMs: BigInt(at),
      replica: this.#d.replica,
    });
    const msgId = `${agentKey(agent.tenant, agent.agentId)}@${revision}`;
    void this.#publishWithRetry('event', this.#d.agentsSubject(agent.tenant, agent.agentId), AgentEventSchema, event, msgId);
    const up = agent.state === AgentState.ALIVE || agent.state === AgentState.SUSPECT ? 1 : 0;
    const batch = create(SampleBatchSchema, { tenant: agent.tenant, batchId: `up:${msgId}`, receivedAtMs: BigInt(at), series: [upSeries(agent, at, up)] });
    void this.#publishWithRetry('up', this.#d.samplesSubject(agent.tenant), SampleBatchSchema, batch, batch.batchId);
  }

  async #publishWithRetry<D extends DescMessage>(kind: string, subject: string, schema: D, msg: MessageShape<D>, msgId: string): Promise<void> {
    // The msg id makes retries safe: JetStream drops a repeat inside its duplicate window.
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        await this.#d.publisher.publish(subject, schema, msg, { msgId });
        return;
      } catch (err) {
        if (attempt === 3) {
          this.#m.publishFailures.inc({ kind });
          this.#d.logger.warn({ err, subject }, `heartbeat: could not publish ${kind}`);
          return;
        }
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
  }

  /** Periodic `up` samples of every owned agent, so PromQL sees a continuous series. */
  async #publishAllUp(): Promise<void> {
    const now = this.#now();
    const tick = Math.floor(now / this.#d.config.upIntervalMs);
    const byTenant = new Map<string, ReturnType<typeof upSeries>[]>();
    for (const o of this.#owned.values()) {
      if (o.lost || o.revision === 0) continue;
      const s = o.agent.state;
      const up = s === AgentState.ALIVE || s === AgentState.SUSPECT ? 1 : 0;
      let list = byTenant.get(o.tenant);
      if (!list) byTenant.set(o.tenant, (list = []));
      list.push(upSeries(o.agent, now, up));
    }
    for (const [tenant, series] of byTenant) {
      for (let i = 0; i < series.length; i += UP_SERIES_PER_BATCH) {
        const batchId = `up:${this.#d.replica}:${tenant}:${tick}/${i / UP_SERIES_PER_BATCH}`;
        const batch = create(SampleBatchSchema, { tenant, batchId, receivedAtMs: BigInt(now), series: series.slice(i, i + UP_SERIES_PER_BATCH) });
        await this.#publishWithRetry('up', this.#d.samplesSubject(tenant), SampleBatchSchema, batch, batchId);
      }
    }
  }

  async #renewReplica(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#d.registry.putReplica(this.#d.replica, this.#now() + REPLICA_TTL_MS);
    } catch (err) {
      this.#d.logger.warn({ err }, 'heartbeat: could not renew replica liveness');
    }
  }

  // ---------------------------------------------------------------- reads

  /** The registry's view of one agent, with this replica's fresher last-seen if it owns it. */
  #view(e: RegistryEntry): Agent {
    const o = this.#owned.get(agentKey(e.agent.tenant, e.agent.agentId));
    if (o && !o.lost && o.revision >= e.revision) return create(AgentSchema, { ...o.agent, lastSeenMs: BigInt(o.lastSeenMs) });
    return e.agent;
  }

  /** GetAgent: one agent of the caller's tenant. */
  getAgent(req: GetAgentRequest, ctx: HandlerContext): GetAgentResponse {
    const { tenant } = requirePrincipal(ctx);
    assertSubjectToken('agent_id', req.agentId);
    const e = this.#d.registry.get(tenant, req.agentId);
    if (!e) throw new NotFoundError(`agent ${JSON.stringify(req.agentId)} not found in tenant ${tenant}`);
    return create(GetAgentResponseSchema, { agent: this.#view(e) });
  }

  /** ListAgents: the caller's agents by id, filtered by state and labels, paginated. */
  listAgents(req: ListAgentsRequest, ctx: HandlerContext): ListAgentsResponse {
    const { tenant } = requirePrincipal(ctx);
    if (req.pageSize < 0 || req.pageSize > 10_000) {
      const description = `must be from 0 (default 100) to 10000; got ${req.pageSize}`;
      throw new InvalidArgumentError(`page_size: ${description}`, [{ field: 'page_size', description }]);
    }
    const size = req.pageSize === 0 ? 100 : req.pageSize;
    const after = req.pageToken === '' ? '' : Buffer.from(req.pageToken, 'base64url').toString('utf8');
    const matchers = compileMatchers(req.matchers, 'matchers');
    const states = new Set(req.states);
    const all: Agent[] = [];
    for (const e of this.#d.registry.entries()) {
      const a = e.agent;
      if (a.tenant !== tenant || a.agentId <= after) continue;
      if (states.size > 0 && !states.has(a.state)) continue;
      if (!matchesAll(agentLabels(a), matchers)) continue;
      all.push(this.#view(e));
    }
    all.sort((x, y) => (x.agentId < y.agentId ? -1 : x.agentId > y.agentId ? 1 : 0));
    const page = all.slice(0, size);
    const next = all.length > size ? Buffer.from(page[page.length - 1]!.agentId, 'utf8').toString('base64url') : '';
    return create(ListAgentsResponseSchema, { agents: page, nextPageToken: next });
  }

  /** WatchAgents: state changes of the caller's agents (from any replica) until cancelled. */
  async *watchAgents(req: WatchAgentsRequest, ctx: HandlerContext): AsyncGenerator<WatchAgentsResponse> {
    const { tenant } = requirePrincipal(ctx);
    const w = { tenant, matchers: compileMatchers(req.matchers, 'matchers'), out: new Outbox<WatchAgentsResponse>() };
    if (this.#stopped) return;
    this.#watchers.add(w);
    const end = () => w.out.close();
    ctx.signal.addEventListener('abort', end, { once: true });
    try {
      yield* w.out.drain();
    } finally {
      this.#watchers.delete(w);
      ctx.signal.removeEventListener('abort', end);
    }
  }

  #notifyWatchers(after: RegistryEntry, before: RegistryEntry | undefined): void {
    const from = before?.agent.state ?? AgentState.UNSPECIFIED;
    if (from === after.agent.state || this.#watchers.size === 0) return;
    for (const w of this.#watchers) {
      if (w.tenant !== after.agent.tenant || !matchesAll(agentLabels(after.agent), w.matchers)) continue;
      w.out.push(create(WatchAgentsResponseSchema, { agent: after.agent, previousState: from, reason: after.agent.reason }));
    }
  }
}

/** `unavailable` for streams ended because this replica stops. */
class UnavailableReplicaError extends TelemeshError {
  readonly kind = 'unavailable';
}

/** The labels an agent is matched on: its own plus `agent_id` and `hostname`. */
function agentLabels(a: Agent): Label[] {
  return [...a.labels, create(LabelSchema, { name: 'agent_id', value: a.agentId }), create(LabelSchema, { name: 'hostname', value: a.hostname })];
}

function upSeries(a: Agent, atMs: number, value: number): Series {
  const labels = [
    { name: '__name__', value: 'up' },
    { name: 'agent_id', value: a.agentId },
    ...(a.hostname ? [{ name: 'hostname', value: a.hostname }] : []),
    { name: 'job', value: 'telemesh-agent' },
    ...a.labels.filter((l) => l.name !== 'job' && l.value !== ''),
  ].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  return create(SeriesSchema, { labels: labels.map((l) => create(LabelSchema, l)), timestampsMs: [BigInt(atMs)], values: [value] });
}

function compileMatchers(ms: readonly LabelMatcher[], field: string): CompiledMatcher[] {
  return matchersFromWire(ms, field).map(compileMatcher);
}
