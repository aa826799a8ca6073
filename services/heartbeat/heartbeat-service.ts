/**
 * The HeartbeatService implementation: agent streams, the failure detector, ownership,
 * agent events and `up` samples.
 *
 * Each agent whose stream this replica holds is "owned": it has a phi accrual detector, and
 * its registry entry names this replica as owner. Ownership is leased per replica: the
 * replica renews its one lease entry every second (see registry.ts), and its agents'
 * entries are written only when something changes (registration, state transitions, a
 * move) plus a slow, spread-out last-seen refresh; the owner answers reads of its agents
 * from memory. So the registry's write rate does not grow with heartbeats.
 *
 * The detector only looks at agents that can be due: after each check an agent gets the
 * time at which its phi can next cross a threshold (or its grace ends), and the sweep skips
 * it until then. phi over the suspect threshold → suspect, over the dead threshold → dead;
 * a stream that broke without a goodbye is suspect at once and dead after the grace unless
 * the agent came back. Right after this replica's own event loop stalled, phi is judged as
 * of before the stall, so agents are not blamed for heartbeats we had not read yet.
 *
 * When a replica's lease expires (it died, or lost the bus), every survivor sees its
 * agents as orphans and tries to declare each dead with a compare-and-set on the entry's
 * revision. An agent that reconnected elsewhere was already rewritten by its new owner, so
 * that CAS loses; of several survivors exactly one wins. Only the winner publishes the
 * event, and the event's Nats-Msg-Id is derived from (tenant, agent, revision), so even a
 * retried publish is stored once: no agent is declared dead twice.
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
import { InvalidArgumentError, NotFoundError, TelemeshError, UnavailableError } from '../../libs/runtime/errors.js';
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
  /** This replica's name: the owner named in the registry entries of the agents it holds. */
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
  /** The entry as last written by this replica (plus status and sequence kept in memory). */
  agent: Agent;
  revision: number;
  detector: PhiAccrualDetector;
  requestedMs: number;
  stream: AgentSink | undefined;
  brokenAtMs: number | undefined;
  lastSeq: bigint;
  lastSeenMs: number;
  /** The sweep skips the agent before this time: no threshold can be crossed earlier. */
  dueMs: number;
  /** When the registry's copy of lastSeenMs is next refreshed. */
  refreshAtMs: number;
  /** Labels of the agent's `up` series, sorted (fixed while the stream lasts). */
  upLabels: Label[];
  /** Serializes registry writes of this agent, so each CAS uses the latest revision. */
  chain: Promise<void>;
  /** True once the registry says another replica took the agent over. */
  lost: boolean;
  /** False while the stream's registration is in flight: the detector must not judge yet. */
  registered: boolean;
}

/**
 * The response side of one agent stream, whatever serves it: connect-es (an {@link Outbox}
 * drained by the handler) or the server's native gRPC path (its call object).
 */
export interface AgentSink {
  /** Sends a directive; ignored once ended. */
  send(response: ConnectResponse): void;
  /** Ends the stream, with `error` as its status when given; the first call wins. */
  end(error?: unknown): void;
  readonly ended: boolean;
}

/** The request side of one agent stream: its messages and its end, fed by the transport. */
export interface AgentSession {
  onMessage(request: ConnectRequest): void;
  /** The agent half-closed (no error) or the stream broke (reset, lost connection, bad input). */
  onEnd(error?: unknown): void;
}

// Messages an agent may send before its registration completes and it gets its welcome;
// beyond that, beats are dropped (an agent beats once per interval, at least a second).
const MAX_EARLY_MESSAGES = 64;

/** A minimal async queue feeding one server stream. */
class Outbox<T = ConnectResponse> {
  readonly #items: T[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #error: unknown;

  send(item: T): void {
    if (this.#ended) return;
    this.#items.push(item);
    this.#wake?.();
  }

  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#wake?.();
  }

  get ended(): boolean {
    return this.#ended;
  }

  async *drain(): AsyncGenerator<T> {
    for (;;) {
      while (this.#items.length > 0) yield this.#items.shift()!;
      if (this.#ended) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }
}

/**
 * Runs at most `max` tasks at once, the rest in arrival order. Registry writes and event
 * publishes go through one each: 10,000 agents reconnecting together must queue here, not
 * as 10,000 concurrent JetStream requests that time out, fail the streams and come back
 * as a second wave.
 */
class Limiter {
  #active = 0;
  readonly #queue: Array<() => void> = [];
  constructor(readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#active >= this.max) await new Promise<void>((r) => this.#queue.push(r));
    else this.#active++;
    try {
      return await task();
    } finally {
      // Hand the slot straight to the next waiter (the count stays), or free it.
      const next = this.#queue.shift();
      if (next) next();
      else this.#active--;
    }
  }
}

/** A sensible default replica name: host name plus a short random suffix. */
export function defaultReplicaName(): string {
  const host = osHostname().replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 48) || 'replica';
  return `${host}-${randomBytes(3).toString('hex')}`;
}

// Up samples go out in batches of at most this many series (NATS' default max payload is 1 MiB).
const UP_SERIES_PER_BATCH = 1000;
const ORPHAN_SCAN_MS = 1000;
const REPLICA_RENEW_MS = 1000;
// Another replica holds an agent's stream only while it renews its lease: a replica silent
// for this long may be dead, and a reconnecting agent must not wait for the whole lease.
const HOLD_FRESH_MS = 3 * REPLICA_RENEW_MS;
// Up samples of transitions are coalesced per tenant for this long, so a burst (thousands of
// registrations at start, a wave of deaths) costs a few publishes, not one each.
const UP_FLUSH_MS = 100;
// Registry writes and publishes in flight at once: enough to keep the bus busy, few enough
// that a burst waits in our queue rather than in request timeouts.
const MAX_REGISTRY_WRITES = 64;
// After an event-loop stall of S ms (longer than STALL_MS) phi is judged S ms in the past,
// and that allowance shrinks as fast as time passes, so it is gone S ms later: heartbeats
// that arrived during our own pause may still be unread, and a burst of work (thousands
// of agents moving here) can stall us for seconds. Detection is late by at most the stall.
const STALL_MS = 250;
const MAX_PUBLISHES = 128;

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
  /** Length and end of the last event-loop stall (see STALL_MS). */
  #stallMs = 0;
  #stallEndMs = 0;
  #stopped = false;
  /** Heartbeats counted since the last sweep (one counter update per sweep, not per beat). */
  #beats = 0;
  /** Orphans whose compare-and-set is in flight (the next scan must not start another). */
  readonly #declaring = new Set<string>();
  /** Owners named by agent entries that have no lease entry: when first seen that way. */
  readonly #unknownOwners = new Map<string, number>();
  /** Entries naming this replica whose stream it does not hold: when first seen that way. */
  #unheld = new Map<string, number>();
  /** `up` samples of transitions waiting for the next flush, per tenant. */
  readonly #pendingUp = new Map<string, Series[]>();
  #upFlushes = 0;
  readonly #incarnation = randomBytes(4).toString('hex');
  readonly #writes = new Limiter(MAX_REGISTRY_WRITES);
  readonly #publishes = new Limiter(MAX_PUBLISHES);
  readonly #m;

  constructor(deps: HeartbeatDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    this.#rules = parseIntervalRules(deps.config.intervalRules);
    // The time before the first sweep is no stall of ours.
    this.#lastSweepMs = this.#now();
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
    deps.registry.onChange((after, before) => {
      this.#checkTakenOver(after);
      this.#notifyWatchers(after, before);
    });
    // One listener for all streams (not one per stream: 10,000 agents would be 10,000).
    deps.shutdown?.addEventListener('abort', () => this.#endStreams(), { once: true });
  }

  /** Ends every agent stream with `unavailable` and every watch, so clients go elsewhere. */
  #endStreams(): void {
    for (const o of this.#owned.values()) o.stream?.end(new UnavailableReplicaError(`replica ${this.#d.replica} is shutting down; reconnect`));
    for (const w of this.#watchers) w.out.end();
  }

  /** Starts the sweep, the replica lease renewal and the periodic `up` samples. */
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
    every(UP_FLUSH_MS, () => this.#flushUp());
  }

  /**
   * Stops: ends every agent stream with `unavailable` (agents reconnect to another
   * replica) and ends watches. The lease is written once more, marked stopping: other
   * replicas take this replica's agents at once when they reconnect, and declare dead,
   * after one more lease lifetime, those that never come back.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#endStreams();
    await Promise.allSettled([...this.#owned.values()].map((o) => o.chain));
    this.#flushUp();
    const now = this.#now();
    await this.#d.registry.putReplica(this.#d.replica, { expiresMs: now + this.#d.config.leaseTtlMs, renewedMs: now, stopping: true }).catch(() => {});
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
        o.dueMs = 0;
        o.stream?.send(create(ConnectResponseSchema, { intervalMs: BigInt(ms), replica: this.#d.replica, reason: 'interval changed' }));
      }
    }
  }

  /** Number of agents this replica owns (for tests and the benchmark). */
  get ownedCount(): number {
    return this.#owned.size;
  }

  // ---------------------------------------------------------------- Connect

  /**
   * The agent stream on connect-es (Connect, gRPC-Web, and gRPC with compression): feeds the
   * request iterable into the same session as the native gRPC path, and yields its output.
   */
  async *connect(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse> {
    const out = new Outbox();
    const session = this.openConnect(ctx, out);
    void (async () => {
      try {
        for await (const r of requests) {
          session.onMessage(r);
          if (out.ended) break;
        }
        session.onEnd();
      } catch (err) {
        session.onEnd(err);
      }
    })();
    yield* out.drain();
  }

  /**
   * One agent stream, independent of the transport: hello, then beats; answers with
   * directives through `out`. Whoever serves the stream calls the returned session's
   * `onMessage` per request and `onEnd` once, and ends the response when `out` is ended.
   * @throws UnauthenticatedError when the context carries no principal.
   */
  openConnect(ctx: Pick<HandlerContext, 'values'>, out: AgentSink): AgentSession {
    const { tenant } = requirePrincipal(ctx);
    const log = requestLogger(ctx, this.#d.logger);
    // hello: waiting for the first message; registering: it was a hello, registration in
    // flight (messages wait); open: beats flow; done: goodbye, end or error decided it.
    let phase: 'hello' | 'registering' | 'open' | 'done' = 'hello';
    let owned: Owned | undefined;
    const early: ConnectRequest[] = [];
    let earlyEnd: { error: unknown } | undefined;

    // The agent's messages after the welcome; their end (or error) decides the outcome.
    const handle = (o: Owned, req: ConnectRequest) => {
      if (out.ended) return finish(o);
      const msg = req.msg;
      if (msg.case === 'beat') this.#beat(o, out, msg.value.seq, msg.value.status);
      else if (msg.case === 'goodbye') {
        phase = 'done';
        const end = () => out.end();
        this.#goodbye(o, out, msg.value.reason).then(end, end);
      } else {
        this.#m.ignored.inc({ reason: msg.case === 'hello' ? 'repeated_hello' : 'empty_message' });
      }
    };
    // The stream ended without goodbye (half-close, reset, or the server ended it).
    const finish = (o: Owned) => {
      phase = 'done';
      this.#broken(o, out);
      out.end();
    };
    const register = async (hello: Hello) => {
      let o: Owned;
      try {
        const labels = this.#validateHello(hello);
        o = await this.#register(tenant, hello, labels, out);
      } catch (err) {
        phase = 'done';
        out.end(err);
        return;
      }
      owned = o;
      log.debug({ agent_id: hello.agentId }, 'heartbeat: agent connected');
      out.send(create(ConnectResponseSchema, { intervalMs: o.agent.intervalMs, replica: this.#d.replica, reason: 'welcome' }));
      phase = 'open';
      for (const r of early.splice(0)) {
        if (phase !== 'open') return;
        handle(o, r);
      }
      if (earlyEnd && phase === 'open') finish(o);
    };

    return {
      onMessage: (req) => {
        if (phase === 'open') {
          try {
            handle(owned!, req);
          } catch {
            // Handled like a stream that broke: the agent is suspect, the stream ends.
            finish(owned!);
          }
        } else if (phase === 'registering') {
          if (early.length < MAX_EARLY_MESSAGES || req.msg.case !== 'beat') early.push(req);
          else this.#m.ignored.inc({ reason: 'before_welcome' });
        } else if (phase === 'hello') {
          if (req.msg.case !== 'hello') {
            phase = 'done';
            this.#m.rejected.inc({ reason: 'no_hello' });
            out.end(
              new InvalidArgumentError(`msg: the first message of a stream must be hello, got ${req.msg.case ?? 'an empty message'}`, [
                { field: 'msg', description: 'first message must be hello' },
              ]),
            );
            return;
          }
          phase = 'registering';
          void register(req.msg.value);
        }
      },
      onEnd: (error) => {
        if (phase === 'open') finish(owned!);
        else if (phase === 'registering') earlyEnd ??= { error };
        else if (phase === 'hello') {
          // Ended before saying anything: nothing to register or to suspect.
          phase = 'done';
          out.end(error);
        }
      },
    };
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

  async #register(tenant: string, hello: Hello, labels: Label[], out: AgentSink): Promise<Owned> {
    const key = agentKey(tenant, hello.agentId);
    const now = this.#now();
    const existing = this.#owned.get(key);
    if (existing?.stream && !existing.stream.ended) {
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
        dueMs: 0,
        refreshAtMs: Infinity,
        upLabels: [],
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
      if (err instanceof TelemeshError) throw err;
      // The bus is slow or away (a timeout, a lost connection, CAS retries exhausted): the
      // agent should retry, elsewhere or here a little later; it is not an internal error.
      this.#m.rejected.inc({ reason: 'registry_unavailable' });
      throw new UnavailableError(`agent registry unavailable, retry: ${err instanceof Error ? err.message : String(err)}`, 1000, { cause: err });
    }
    // The clock starts when the agent learns its interval, not when it said hello: a slow
    // registration (a busy registry) must not count against the agent.
    o.detector.start(this.#now());
    o.lastSeenMs = this.#now();
    o.dueMs = 0;
    // Spread the refreshes of agents that connected together over the whole period.
    const refresh = this.#d.config.lastSeenRefreshMs;
    o.refreshAtMs = refresh > 0 ? o.lastSeenMs + refresh * (0.5 + Math.random()) : Infinity;
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
          : await this.#writes.run(() => this.#d.registry.fetch(o.tenant, o.agentId));
      const prev = cur?.agent;
      if (prev && prev.ownerReplica !== this.#d.replica && prev.state === AgentState.ALIVE && this.#holds(prev.ownerReplica, now)) {
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
        status: prev?.status ?? '',
      });
      try {
        o.revision = await this.#writes.run(() => this.#d.registry.compareAndSet(next, cur?.revision ?? 0));
      } catch (err) {
        if (isCasConflict(err) && attempt < 5) {
          this.#m.casConflicts.inc();
          continue;
        }
        throw err;
      }
      o.agent = next;
      o.lost = false;
      o.upLabels = upLabels(next);
      if (prevState !== AgentState.ALIVE) this.#announce(next, prevState, reason, o.revision);
      return;
    }
  }

  #beat(o: Owned, out: AgentSink, seq: bigint, status: string): void {
    if (o.stream !== out) {
      this.#m.ignored.inc({ reason: 'stale_stream' });
      return;
    }
    if (seq <= o.lastSeq) {
      this.#m.ignored.inc({ reason: 'seq_backwards' });
      return;
    }
    // Per-beat work stays O(1) and allocation-free: no registry write, no log, no span.
    this.#beats++;
    const now = this.#now();
    o.lastSeq = seq;
    o.lastSeenMs = now;
    o.detector.heartbeat(now);
    if (status !== o.agent.status) o.agent = create(AgentSchema, { ...o.agent, status });
    o.agent.lastSeq = seq;
    if (o.agent.state === AgentState.SUSPECT || o.agent.state === AgentState.DEAD) {
      this.#transition(o, AgentState.ALIVE, o.agent.state === AgentState.SUSPECT ? 'heartbeats resumed' : 'recovered: heartbeats resumed after being declared dead');
      o.dueMs = 0;
    }
  }

  async #goodbye(o: Owned, out: AgentSink, reason: string): Promise<void> {
    if (o.stream !== out) return;
    o.stream = undefined;
    this.#transition(o, AgentState.LEFT, `goodbye${reason ? `: ${reason}` : ''}`);
    await o.chain;
    if (this.#owned.get(o.key) === o && !o.stream) this.#owned.delete(o.key);
    this.#m.owned.set(this.#owned.size);
  }

  #broken(o: Owned, out: AgentSink): void {
    if (o.stream !== out) return;
    o.stream = undefined;
    o.brokenAtMs = this.#now();
    o.dueMs = o.brokenAtMs + this.#d.config.graceMs;
    if (o.agent.state === AgentState.ALIVE) this.#transition(o, AgentState.SUSPECT, 'stream broke without goodbye');
  }

  // ---------------------------------------------------------------- detection

  #detector(intervalMs: number): PhiAccrualDetector {
    const c = this.#d.config;
    return new PhiAccrualDetector({ windowSize: c.windowSize, minStdDevMs: c.minStdDevMs, acceptablePauseMs: c.acceptablePauseMs, firstIntervalMs: intervalMs });
  }

  /**
   * One detector pass over the owned agents that are due, the last-seen refreshes that are
   * due and (once a second) the orphan scan. Public so tests can drive it; the timer calls
   * it every sweepIntervalMs.
   */
  sweep(): void {
    if (this.#stopped) return;
    const start = process.hrtime.bigint();
    const now = this.#now();
    const late = now - this.#lastSweepMs - this.#d.config.sweepIntervalMs;
    this.#lastSweepMs = now;
    if (this.#beats > 0) {
      this.#m.beats.inc(this.#beats);
      this.#beats = 0;
    }
    // Remember the stall: phi is judged in the past for a while after it (see STALL_MS).
    if (late > STALL_MS && late > this.#stallCredit(now)) {
      this.#stallMs = late;
      this.#stallEndMs = now;
    }
    // After an event-loop stall (GC, a busy machine) heartbeats that did arrive may still sit
    // unread in socket buffers; convicting now would blame agents for our own pause. Skip
    // this pass so I/O runs first — but never two in a row, or a constantly lagging process
    // would stop detecting anything.
    if (late > Math.max(STALL_MS, this.#d.config.sweepIntervalMs) && !this.#skippedLast) {
      this.#skippedLast = true;
      this.#m.skippedSweeps.inc();
      return;
    }
    this.#skippedLast = false;
    for (const o of this.#owned.values()) {
      if (o.lost || !o.registered) continue;
      if (now >= o.dueMs) this.#judge(o, now);
      if (now >= o.refreshAtMs) {
        o.refreshAtMs = now + this.#d.config.lastSeenRefreshMs;
        if (o.stream) this.#refresh(o);
      }
    }
    // Not right after a stall of our own: hellos of agents moving here may still be unread,
    // and they must win the race against being declared orphans.
    if (now - this.#lastOrphanScanMs >= ORPHAN_SCAN_MS && this.#stallCredit(now) === 0) {
      this.#lastOrphanScanMs = now;
      this.#scanOrphans(now);
    }
    this.#m.sweep.observe(Number(process.hrtime.bigint() - start) / 1e9);
  }

  /** Checks one due agent, moves it on if a threshold was crossed, and sets its next due time. */
  #judge(o: Owned, now: number): void {
    const c = this.#d.config;
    const state = o.agent.state;
    if (state !== AgentState.ALIVE && state !== AgentState.SUSPECT) {
      // Dead or left: nothing to detect until a heartbeat or a new stream resets dueMs.
      o.dueMs = Infinity;
      return;
    }
    if (o.brokenAtMs !== undefined) {
      if (now - o.brokenAtMs >= c.graceMs) {
        this.#transition(o, AgentState.DEAD, `stream broke without goodbye and the agent did not reconnect within ${c.graceMs} ms`);
        o.dueMs = Infinity;
      } else {
        o.dueMs = o.brokenAtMs + c.graceMs;
      }
      return;
    }
    const credit = Math.round(this.#stallCredit(now));
    const phi = o.detector.phi(now - credit);
    const allowing = credit > 0 ? ` (allowing ${credit} ms for this replica's own stall)` : '';
    if (state === AgentState.ALIVE && phi >= c.suspectPhi) {
      this.#transition(o, AgentState.SUSPECT, `phi ${phi.toFixed(1)} >= suspectPhi ${c.suspectPhi}: no heartbeat for ${now - o.lastSeenMs} ms${allowing}`);
    }
    if (phi >= c.deadPhi) {
      this.#transition(o, AgentState.DEAD, `phi ${phi === Infinity ? 'inf' : phi.toFixed(1)} >= deadPhi ${c.deadPhi}: no heartbeat for ${now - o.lastSeenMs} ms${allowing}`);
      o.dueMs = Infinity;
      return;
    }
    // phi only grows until the next heartbeat, and a heartbeat only moves the crossing later,
    // so nothing can happen before this time.
    const last = o.detector.lastHeartbeatMs ?? now;
    o.dueMs = last + o.detector.elapsedAtPhi(o.agent.state === AgentState.ALIVE ? c.suspectPhi : c.deadPhi);
  }

  /** How far in the past phi is judged now, after the last stall (see STALL_MS). */
  #stallCredit(now: number): number {
    return Math.max(0, this.#stallMs - (now - this.#stallEndMs));
  }

  /** Queues a state change of an owned agent: CAS the registry, then announce. */
  #transition(o: Owned, state: AgentState, reason: string): void {
    const from = o.agent.state;
    // Applied locally at once so the next sweep does not queue the same change again.
    o.agent = create(AgentSchema, { ...o.agent, state, reason, stateSinceMs: BigInt(this.#now()) });
    const snapshot = o.agent;
    o.chain = o.chain.then(() => this.#write(o, snapshot, from, reason, true));
  }

  /** Queues a rewrite of the registry entry with the current last-seen time (no event). */
  #refresh(o: Owned): void {
    o.chain = o.chain.then(() => this.#write(o, o.agent, o.agent.state, '', false));
  }

  async #write(o: Owned, agent: Agent, from: AgentState, reason: string, announce: boolean): Promise<void> {
    if (o.lost) return;
    const next = create(AgentSchema, { ...agent, lastSeenMs: BigInt(o.lastSeenMs), lastSeq: o.lastSeq, leaseExpiresMs: 0n, ownerReplica: this.#d.replica });
    try {
      o.revision = await this.#casWithRetry(next, o);
    } catch (err) {
      if (!isCasConflict(err)) {
        // Still owned locally: a transition whose write failed is re-decided by the detector
        // (its local state is rolled back here).
        this.#d.logger.warn({ err, agent_id: o.agentId, tenant: o.tenant }, 'heartbeat: registry write failed');
        if (announce) {
          o.agent = create(AgentSchema, { ...o.agent, state: from });
          o.dueMs = 0;
        }
        return;
      }
      this.#m.casConflicts.inc();
      const cur = await this.#d.registry.fetch(o.tenant, o.agentId).catch(() => undefined);
      if (!cur || cur.agent.ownerReplica !== this.#d.replica) {
        // Another replica owns the agent now (it reconnected there, or a survivor declared
        // it dead): let go. The winner of that write announced it; we announce nothing.
        this.#letGo(o, cur?.agent.ownerReplica ?? '?');
        return;
      }
      // Our own entry at a newer revision: retry once on top of it.
      o.revision = cur.revision;
      try {
        o.revision = await this.#d.registry.compareAndSet(next, o.revision);
      } catch (err2) {
        this.#d.logger.warn({ err: err2, agent_id: o.agentId }, 'heartbeat: registry write failed twice');
        if (announce) {
          o.agent = create(AgentSchema, { ...o.agent, state: from });
          o.dueMs = 0;
        }
        return;
      }
    }
    if (announce) {
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
        return await this.#writes.run(() => this.#d.registry.compareAndSet(next, o.revision));
      } catch (err) {
        if (isCasConflict(err) || attempt >= 2 || this.#stopped) throw err;
        await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
      }
    }
  }

  /** Forgets an agent another replica took over, and ends its stream here if still open. */
  #letGo(o: Owned, newOwner: string): void {
    o.lost = true;
    const stream = o.stream;
    o.stream = undefined;
    stream?.end(new AgentHeldError(`agent ${o.agentId} moved to replica ${newOwner}`));
    if (this.#owned.get(o.key) === o) this.#owned.delete(o.key);
    this.#m.owned.set(this.#owned.size);
  }

  /**
   * A registry change by another replica to an agent we hold (it declared the agent dead
   * because our lease looked expired, or the agent reconnected there): we no longer own it.
   */
  #checkTakenOver(after: RegistryEntry): void {
    const a = after.agent;
    if (a.ownerReplica === this.#d.replica) return;
    const o = this.#owned.get(agentKey(a.tenant, a.agentId));
    // While a registration is in flight its compare-and-set decides; only a write newer
    // than our last one can have taken the agent.
    if (!o || o.lost || !o.registered || after.revision <= o.revision) return;
    this.#letGo(o, a.ownerReplica);
  }

  /** Whether `replica` holds its streams now: its lease is fresh and it is not stopping. */
  #holds(replica: string, now: number): boolean {
    const lease = this.#d.registry.replica(replica);
    return lease !== undefined && !lease.stopping && lease.expiresMs > now && now - lease.renewedMs < HOLD_FRESH_MS;
  }

  /**
   * When the ownership of an agent entry owned by `owner` ends, Unix ms: its lease expiry;
   * for an owner without a lease entry, one lease lifetime after we first saw it that way.
   * (Entries naming this replica that it does not hold are handled in the scan.)
   */
  #ownershipEndsMs(owner: string, now: number): number {
    const ttl = this.#d.config.leaseTtlMs;
    const lease = this.#d.registry.replica(owner);
    if (lease) return lease.expiresMs;
    let since = this.#unknownOwners.get(owner);
    if (since === undefined) this.#unknownOwners.set(owner, (since = now));
    return since + ttl;
  }

  /** Agents whose owner's lease expired: the CAS winner among the survivors declares them dead. */
  #scanOrphans(now: number): void {
    const ends = new Map<string, number>();
    const unheld = new Map<string, number>();
    for (const e of this.#d.registry.entries()) {
      const a = e.agent;
      if (a.state !== AgentState.ALIVE && a.state !== AgentState.SUSPECT) continue;
      const key = agentKey(a.tenant, a.agentId);
      if (this.#owned.has(key) || this.#declaring.has(key)) continue;
      let end: number | undefined;
      if (a.ownerReplica === this.#d.replica) {
        // Named as owner but not holding the stream: a previous incarnation's agent (same
        // name, restarted), or a registration whose write landed after we gave up on it.
        // Like any orphan it gets one lease lifetime to reconnect.
        const since = this.#unheld.get(key) ?? now;
        unheld.set(key, since);
        end = since + this.#d.config.leaseTtlMs;
      } else {
        end = ends.get(a.ownerReplica);
        if (end === undefined) ends.set(a.ownerReplica, (end = this.#ownershipEndsMs(a.ownerReplica, now)));
      }
      if (end > now) continue;
      this.#declaring.add(key);
      void this.#declareOrphanDead(e, end, now).finally(() => this.#declaring.delete(key));
    }
    for (const owner of this.#unknownOwners.keys()) if (this.#d.registry.replica(owner)) this.#unknownOwners.delete(owner);
    this.#unheld = unheld;
  }

  async #declareOrphanDead(e: RegistryEntry, endedMs: number, now: number): Promise<void> {
    const a = e.agent;
    const reason = `lease of replica ${a.ownerReplica || '?'} expired ${now - endedMs} ms ago and the agent did not reconnect; last recorded heartbeat ${now - Number(a.lastSeenMs)} ms ago`;
    const next = create(AgentSchema, { ...a, state: AgentState.DEAD, reason, stateSinceMs: BigInt(now), ownerReplica: this.#d.replica, leaseExpiresMs: 0n });
    let rev: number;
    try {
      rev = await this.#writes.run(() => this.#d.registry.compareAndSet(next, e.revision));
    } catch (err) {
      // Losing the CAS means another replica decided first or the agent came back: the
      // winner announced whatever happened, so this replica publishes nothing.
      if (isCasConflict(err)) this.#m.casConflicts.inc();
      else this.#d.logger.warn({ err, agent_id: a.agentId }, 'heartbeat: could not declare orphan dead');
      return;
    }
    this.#announce(next, a.state, reason, rev);
  }

  // ---------------------------------------------------------------- output

  /** The Nats-Msg-Id of the event announcing the entry written at `revision`: one per transition. */
  static eventMsgId(tenant: string, agentId: string, revision: number): string {
    return `${agentKey(tenant, agentId)}@${revision}`;
  }

  /** Publishes the agent event and queues the `up` sample of a committed transition. */
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
    const msgId = HeartbeatServiceImpl.eventMsgId(agent.tenant, agent.agentId, revision);
    void this.#publishWithRetry('event', this.#d.agentsSubject(agent.tenant, agent.agentId), AgentEventSchema, event, msgId);
    const up = agent.state === AgentState.ALIVE || agent.state === AgentState.SUSPECT ? 1 : 0;
    const owned = this.#owned.get(agentKey(agent.tenant, agent.agentId));
    const labels = owned && owned.upLabels.length > 0 ? owned.upLabels : upLabels(agent);
    let list = this.#pendingUp.get(agent.tenant);
    if (!list) this.#pendingUp.set(agent.tenant, (list = []));
    list.push(create(SeriesSchema, { labels, timestampsMs: [BigInt(at)], values: [up] }));
  }

  /** Publishes the queued `up` samples of transitions, one batch per tenant (and 1000 series). */
  #flushUp(): void {
    if (this.#pendingUp.size === 0) return;
    const now = this.#now();
    for (const [tenant, series] of this.#pendingUp) {
      for (let i = 0; i < series.length; i += UP_SERIES_PER_BATCH) {
        // Unique per replica process and flush, and the same for every retry of this batch.
        const batchId = `up:${this.#d.replica}:${this.#incarnation}:${++this.#upFlushes}`;
        const batch = create(SampleBatchSchema, { tenant, batchId, receivedAtMs: BigInt(now), series: series.slice(i, i + UP_SERIES_PER_BATCH) });
        void this.#publishWithRetry('up', this.#d.samplesSubject(tenant), SampleBatchSchema, batch, batchId);
      }
    }
    this.#pendingUp.clear();
  }

  async #publishWithRetry<D extends DescMessage>(kind: string, subject: string, schema: D, msg: MessageShape<D>, msgId: string): Promise<void> {
    // The msg id makes retries safe: JetStream drops a repeat inside its duplicate window.
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        await this.#publishes.run(() => this.#d.publisher.publish(subject, schema, msg, { msgId }));
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
    const byTenant = new Map<string, Series[]>();
    const at = [BigInt(now)];
    for (const o of this.#owned.values()) {
      if (o.lost || o.revision === 0 || o.upLabels.length === 0) continue;
      const s = o.agent.state;
      const up = s === AgentState.ALIVE || s === AgentState.SUSPECT ? 1 : 0;
      let list = byTenant.get(o.tenant);
      if (!list) byTenant.set(o.tenant, (list = []));
      list.push(create(SeriesSchema, { labels: o.upLabels, timestampsMs: at, values: [up] }));
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
    const now = this.#now();
    try {
      await this.#d.registry.putReplica(this.#d.replica, { expiresMs: now + this.#d.config.leaseTtlMs, renewedMs: now, stopping: false });
    } catch (err) {
      this.#d.logger.warn({ err }, 'heartbeat: could not renew the replica lease');
    }
  }


  // ---------------------------------------------------------------- reads

  /**
   * The registry's view of one agent: from memory if this replica owns it (last-seen is
   * only refreshed in the registry now and then), and with the owner's lease expiry.
   */
  #view(e: RegistryEntry): Agent {
    const o = this.#owned.get(agentKey(e.agent.tenant, e.agent.agentId));
    const a = o && !o.lost && o.revision >= e.revision ? create(AgentSchema, { ...o.agent, lastSeenMs: BigInt(o.lastSeenMs), lastSeq: o.lastSeq }) : create(AgentSchema, e.agent);
    a.leaseExpiresMs = BigInt(this.#d.registry.replica(a.ownerReplica)?.expiresMs ?? 0);
    return a;
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
    const end = () => w.out.end();
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
      w.out.send(create(WatchAgentsResponseSchema, { agent: after.agent, previousState: from, reason: after.agent.reason }));
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

/** The sorted labels of an agent's `up` series. */
function upLabels(a: Agent): Label[] {
  const labels = [
    { name: '__name__', value: 'up' },
    { name: 'agent_id', value: a.agentId },
    ...(a.hostname ? [{ name: 'hostname', value: a.hostname }] : []),
    { name: 'job', value: 'telemesh-agent' },
    ...a.labels.filter((l) => l.name !== 'job' && l.value !== ''),
  ].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  return labels.map((l) => create(LabelSchema, l));
}

function compileMatchers(ms: readonly LabelMatcher[], field: string): CompiledMatcher[] {
  return matchersFromWire(ms, field).map(compileMatcher);
}
