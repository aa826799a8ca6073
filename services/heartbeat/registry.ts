/**
 * The agent registry: one JetStream KV entry per agent (`a.<tenant>.<agent>`, an encoded
 * telemesh.heartbeat.v1.Agent) plus one lease entry per replica (`r.<replica>`), with a
 * local cache kept current by a KV watch.
 *
 * Ownership is leased per replica, not per agent: an agent entry names its owner replica,
 * and that ownership is valid exactly as long as the owner's own lease entry is. A replica
 * renews only its one entry (once a second), so the bucket sees one write per replica per
 * second however many agents it holds; agent entries are written on state changes and
 * ownership changes (plus a slow last-seen refresh). The lease value carries its own
 * expiry, because nats-server 2.9 has no per-key TTL.
 *
 * Every change of an agent entry is a compare-and-set on the revision the writer last saw,
 * so of two replicas racing for the same transition exactly one wins; only the winner
 * announces it, so no agent is declared dead twice.
 */
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { AgentSchema, type Agent } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_pb.js';

/** A cached agent entry with the KV revision it was read at. */
export interface RegistryEntry {
  readonly agent: Agent;
  readonly revision: number;
}

/** A replica's lease, as stored in its `r.<replica>` entry (the writer's clock). */
export interface ReplicaLease {
  /** When the lease ends unless renewed, Unix ms. Its agents are orphans after it. */
  readonly expiresMs: number;
  /** When it was last renewed, Unix ms. */
  readonly renewedMs: number;
  /** True once the replica stopped cleanly: it holds no streams, its agents may move at once. */
  readonly stopping: boolean;
}

/** A change seen on the watch: the entry after, and the cached one before (if any). */
export type RegistryListener = (after: RegistryEntry, before: RegistryEntry | undefined) => void;

/** The KV key of an agent. Tenant and agent id are subject tokens, so no dot can shift it. */
export function agentKey(tenant: string, agentId: string): string {
  return `a.${tenant}.${agentId}`;
}

/** The KV key of a replica's lease entry. */
export function replicaKey(replica: string): string {
  return `r.${replica}`;
}

// JetStream's "wrong last sequence" (CAS lost) error code.
const WRONG_LAST_SEQUENCE = 10071;

/** True when `err` is a lost compare-and-set. */
export function isCasConflict(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.code === WRONG_LAST_SEQUENCE;
  // Some client paths surface the API error only as a message-bearing Error.
  return err instanceof Error && /wrong last sequence/i.test(err.message);
}

/** Decodes a lease entry; a value that is not one reads as an expired lease. */
export function decodeLease(value: Uint8Array): ReplicaLease {
  try {
    const v = JSON.parse(new TextDecoder().decode(value)) as Partial<Record<keyof ReplicaLease, unknown>>;
    const expiresMs = typeof v.expiresMs === 'number' ? v.expiresMs : 0;
    return { expiresMs, renewedMs: typeof v.renewedMs === 'number' ? v.renewedMs : 0, stopping: v.stopping === true };
  } catch {
    return { expiresMs: 0, renewedMs: 0, stopping: false };
  }
}

/** Registry over one KV bucket. */
export class AgentRegistry {
  readonly #kv: KV;
  readonly #logger: Logger;
  readonly #agents = new Map<string, RegistryEntry>();
  readonly #replicas = new Map<string, ReplicaLease>();
  readonly #listeners = new Set<RegistryListener>();
  #stopWatch: (() => void) | undefined;

  constructor(kv: KV, logger: Logger) {
    this.#kv = kv;
    this.#logger = logger;
  }

  /** Loads every entry and keeps the cache current until {@link close}. */
  async start(): Promise<void> {
    const iter = await this.#kv.watch({ key: '>' });
    this.#stopWatch = () => iter.stop();
    let initialised!: () => void;
    const ready = new Promise<void>((r) => (initialised = r));
    // The watch first replays the last value of every key, then follows updates; an empty
    // bucket sends nothing, so also settle once the replay count reaches zero.
    if (iter.getPending() === 0) queueMicrotask(() => initialised());
    void (async () => {
      try {
        for await (const e of iter) {
          this.#apply(e.key, e.value, e.revision, e.operation);
          if (e.delta === 0 || iter.getPending() === 0) initialised();
        }
      } catch (err) {
        this.#logger.error({ err }, 'heartbeat: registry watch failed');
      }
    })();
    await Promise.race([ready, new Promise((r) => setTimeout(r, 2000).unref())]);
  }

  /** Stops the watch. */
  close(): void {
    this.#stopWatch?.();
    this.#listeners.clear();
  }

  /** Subscribes to cache changes; returns the unsubscribe function. */
  onChange(l: RegistryListener): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  /** The cached entry of an agent. */
  get(tenant: string, agentId: string): RegistryEntry | undefined {
    return this.#agents.get(agentKey(tenant, agentId));
  }

  /** Every cached agent entry. */
  entries(): IterableIterator<RegistryEntry> {
    return this.#agents.values();
  }

  /** Reads an agent entry from the server (not the cache). */
  async fetch(tenant: string, agentId: string): Promise<RegistryEntry | undefined> {
    const e = await this.#kv.get(agentKey(tenant, agentId));
    if (!e || e.operation !== 'PUT') return undefined;
    const entry = { agent: fromBinary(AgentSchema, e.value), revision: e.revision };
    this.#apply(e.key, e.value, e.revision, 'PUT');
    return entry;
  }

  /**
   * Writes `agent` if the entry is still at `revision` (0: must not exist). Resolves with
   * the new revision; rejects with a CAS conflict (see {@link isCasConflict}) otherwise.
   */
  async compareAndSet(agent: Agent, revision: number): Promise<number> {
    const key = agentKey(agent.tenant, agent.agentId);
    const data = toBinary(AgentSchema, agent);
    const rev = revision === 0 ? await this.#kv.create(key, data) : await this.#kv.update(key, data, revision);
    this.#apply(key, data, rev, 'PUT');
    return rev;
  }

  /** Writes this replica's lease entry. */
  async putReplica(replica: string, lease: ReplicaLease): Promise<void> {
    const data = new TextEncoder().encode(JSON.stringify(lease));
    await this.#kv.put(replicaKey(replica), data);
    this.#apply(replicaKey(replica), data, 0, 'PUT');
  }

  /** The last lease seen of a replica (none if it never wrote one or it was deleted). */
  replica(replica: string): ReplicaLease | undefined {
    return this.#replicas.get(replica);
  }

  #apply(key: string, value: Uint8Array, revision: number, op: string): void {
    if (key.startsWith('r.')) {
      const name = key.slice(2);
      if (op === 'PUT') this.#replicas.set(name, decodeLease(value));
      else this.#replicas.delete(name);
      return;
    }
    if (!key.startsWith('a.')) return;
    if (op !== 'PUT') {
      this.#agents.delete(key);
      return;
    }
    const before = this.#agents.get(key);
    // Our own writes are applied at once and again when the watch echoes them: keep the newest.
    if (before && before.revision >= revision) return;
    let agent: Agent;
    try {
      agent = fromBinary(AgentSchema, value);
    } catch (err) {
      this.#logger.warn({ err, key }, 'heartbeat: undecodable registry entry ignored');
      return;
    }
    const after = { agent, revision };
    this.#agents.set(key, after);
    for (const l of this.#listeners) l(after, before);
  }
}
