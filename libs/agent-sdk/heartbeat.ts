/**
 * The agent side of `telemesh.heartbeat.v1.HeartbeatService`: one long-lived bidirectional
 * stream that opens with a hello, sends a heartbeat at the interval the service directs,
 * and says goodbye on a clean stop, so the agent is marked `left` rather than `dead`.
 *
 * When the stream breaks (replica restart, network) it reconnects with exponential backoff
 * and full jitter, so thousands of agents of a dead replica spread over the survivors
 * instead of arriving in one wave.
 *
 * @example
 * const hb = startHeartbeat({ url: 'http://127.0.0.1:7401', token, agentId: 'web-1',
 *   hostname: os.hostname(), version: '1.0.0', labels: { env: 'prod' }, intervalMs: 5000 });
 * // … later
 * await hb.stop(); // goodbye → the agent is `left`
 */
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Transport } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import type { Logger } from 'pino';
import { LabelSchema } from '../contracts/telemesh/common/v1/common_pb.js';
import {
  ConnectRequestSchema,
  HeartbeatService,
  ResourcesSchema,
  type ConnectRequest,
  type Resources,
} from '../contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';

/** Options of {@link startHeartbeat}. */
export interface HeartbeatOptions {
  /** Base URL of Telemesh's gRPC (HTTP/2) port, e.g. `http://127.0.0.1:7401`. Ignored with `transport`. */
  readonly url?: string;
  /** Several replicas' URLs: each reconnect tries the next one. Ignored with `transport`. */
  readonly urls?: readonly string[];
  /**
   * Ready transports (must support bidi streams: gRPC or Connect over HTTP/2), tried in
   * turn on each reconnect; lets many agents share sessions. Overrides `url`/`urls`.
   */
  readonly transport?: Transport | readonly Transport[];
  /** Bearer token with the `agent` role; its tenant is the agent's tenant. */
  readonly token: string;
  /** Agent id, unique within the tenant: `[A-Za-z0-9_-]{1,64}`. */
  readonly agentId: string;
  readonly hostname?: string;
  readonly version?: string;
  /** Agent labels (valid Prometheus label names; `agent_id`, `hostname` are reserved). */
  readonly labels?: Readonly<Record<string, string>>;
  /** Interval the agent asks for, ms (1000–60000); 0 or absent: the service's default. */
  readonly intervalMs?: number;
  /** Status text sent with each heartbeat. Default `ok`. */
  readonly status?: () => string;
  /** Resource summary sent with each heartbeat. */
  readonly resources?: () => Partial<Pick<Resources, 'cpuRatio' | 'memoryBytes' | 'load1'>>;
  /** Reconnect backoff: first cap and largest cap, ms. Default 100 ms and 10 s. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly logger?: Logger;
  /** Called with every directive (interval in force, owning replica, why). */
  readonly onDirective?: (d: { intervalMs: number; replica: string; reason: string }) => void;
}

/** A running heartbeat. */
export interface HeartbeatHandle {
  /** Interval in force (from the last directive), ms. */
  readonly intervalMs: number;
  /** Replica holding the stream, '' while disconnected. */
  readonly replica: string;
  /** True while a stream is open and the service has answered. */
  readonly connected: boolean;
  /** Streams opened so far (1 plus reconnects). */
  readonly connects: number;
  /**
   * Stops. With `goodbye` (default) sends a goodbye and waits for the service to close the
   * stream, so the agent becomes `left`; without, drops the stream abruptly (like a crash).
   * Idempotent.
   */
  stop(goodbye?: boolean): Promise<void>;
  /**
   * Stops or resumes sending heartbeats while keeping the stream open — a frozen agent.
   * For failure drills and tests; a real agent never needs it.
   */
  setPaused(paused: boolean): void;
  /** Breaks the current stream without a goodbye (then reconnects, like a network blip). */
  breakStream(): void;
}

/** Codes after which reconnecting cannot help. */
const FATAL = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.InvalidArgument]);

class RequestQueue implements AsyncIterable<ConnectRequest> {
  readonly #items: ConnectRequest[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  push(m: ConnectRequest): void {
    if (this.#closed) return;
    this.#items.push(m);
    this.#wake?.();
  }
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<ConnectRequest> {
    for (;;) {
      while (this.#items.length > 0) yield this.#items.shift()!;
      if (this.#closed) return;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }
}

/** Starts the heartbeat stream in the background; see {@link HeartbeatHandle}. */
export function startHeartbeat(opts: HeartbeatOptions): HeartbeatHandle {
  const urls = [...(opts.url ? [opts.url] : []), ...(opts.urls ?? [])];
  if (!opts.transport && urls.length === 0) throw new TypeError('startHeartbeat needs url, urls or transport');
  const given = opts.transport === undefined ? [] : Array.isArray(opts.transport) ? (opts.transport as readonly Transport[]) : [opts.transport as Transport];
  const clients = given.length > 0
    ? given.map((t) => createClient(HeartbeatService, t))
    : urls.map((baseUrl) => createClient(HeartbeatService, createGrpcTransport({ baseUrl })));
  const headers = { authorization: `Bearer ${opts.token}` };
  const backoff = opts.backoff ?? { initialMs: 100, maxMs: 10_000 };
  const log = opts.logger?.child({ component: 'heartbeat', agent_id: opts.agentId });
  let intervalMs = opts.intervalMs ?? 0;
  let replica = '';
  let connected = false;
  let connects = 0;
  let seq = 0n;
  let paused = false;
  let stopped = false;
  let current: { queue: RequestQueue; abort: AbortController } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let wakeSleep: (() => void) | undefined;

  const hello = create(ConnectRequestSchema, {
    msg: {
      case: 'hello',
      value: {
        agentId: opts.agentId,
        hostname: opts.hostname ?? '',
        version: opts.version ?? '',
        labels: Object.entries(opts.labels ?? {}).map(([name, value]) => create(LabelSchema, { name, value })),
        requestedIntervalMs: BigInt(opts.intervalMs ?? 0),
      },
    },
  });

  const schedule = (queue: RequestQueue) => {
    clearTimeout(timer);
    if (intervalMs <= 0) return;
    timer = setTimeout(() => {
      if (!paused) {
        seq += 1n;
        queue.push(
          create(ConnectRequestSchema, {
            msg: {
              case: 'beat',
              value: { seq, sentAtMs: BigInt(Date.now()), status: opts.status?.() ?? 'ok', resources: create(ResourcesSchema, opts.resources?.() ?? {}) },
            },
          }),
        );
      }
      schedule(queue);
    }, intervalMs);
  };

  const run = async () => {
    let attempt = 0;
    let next = 0;
    while (!stopped) {
      const client = clients[next++ % clients.length]!;
      const queue = new RequestQueue();
      const abort = new AbortController();
      current = { queue, abort };
      queue.push(hello);
      connects++;
      try {
        for await (const d of client.connect(queue, { headers, signal: abort.signal, timeoutMs: 0 })) {
          attempt = 0;
          connected = true;
          const changed = Number(d.intervalMs) !== intervalMs;
          intervalMs = Number(d.intervalMs);
          replica = d.replica;
          opts.onDirective?.({ intervalMs, replica, reason: d.reason });
          if (changed || d.reason === 'welcome') schedule(queue);
        }
      } catch (err) {
        const ce = ConnectError.from(err);
        if (!stopped && FATAL.has(ce.code)) {
          log?.error({ code: Code[ce.code], msg: ce.rawMessage }, 'heartbeat: refused by the service; not retrying');
          stopped = true;
        } else if (!stopped) {
          log?.warn({ code: Code[ce.code], msg: ce.rawMessage }, 'heartbeat: stream broke; reconnecting');
        }
      } finally {
        clearTimeout(timer);
        connected = false;
        replica = '';
        queue.close();
      }
      if (stopped) break;
      // Full jitter: a uniformly random wait below an exponentially growing cap.
      const cap = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt++, 20));
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.floor(Math.random() * cap));
        wakeSleep = () => {
          clearTimeout(t);
          r();
        };
      });
      wakeSleep = undefined;
    }
  };
  const done = run();

  return {
    get intervalMs() {
      return intervalMs;
    },
    get replica() {
      return replica;
    },
    get connected() {
      return connected;
    },
    get connects() {
      return connects;
    },
    setPaused(p) {
      paused = p;
    },
    breakStream() {
      current?.abort.abort();
    },
    async stop(goodbye = true) {
      if (!stopped) {
        stopped = true;
        clearTimeout(timer);
        wakeSleep?.();
        const c = current;
        if (c && goodbye && connected) {
          c.queue.push(create(ConnectRequestSchema, { msg: { case: 'goodbye', value: { reason: 'agent stopping' } } }));
          c.queue.close();
          // The service ends the stream after recording the goodbye; don't wait forever.
          const t = setTimeout(() => c.abort.abort(), 5000);
          await done;
          clearTimeout(t);
          return;
        }
        c?.abort.abort();
      }
      await done;
    },
  };
}
