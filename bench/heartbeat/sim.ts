/**
 * A lean agent simulator for the heartbeat benchmark, speaking the protocol through
 * `@grpc/grpc-js` (a client nobody here wrote) instead of the SDK: on this 2-core machine
 * 10,000 SDK clients in one process spend more CPU in their async-iterator plumbing than the
 * service under test, and their event-loop lag would show up as "late heartbeats". Beats
 * are sent by one ticker in 10 time slots (100 ms apart), so 10,000 agents at 1 s need no
 * per-agent timers. Reconnects use backoff with full jitter and rotate through the targets,
 * like the SDK.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The generated-at-runtime client of HeartbeatService. */
type HbClient = grpc.Client & { Connect(md: grpc.Metadata): grpc.ClientDuplexStream<object, { intervalMs: string; replica: string; reason: string }> };

/** Builds `n` clients for `target` (host:port), each on its own HTTP/2 connection. */
export function simClients(root: string, target: string, n: number): HbClient[] {
  const def = protoLoader.loadSync(['telemesh/heartbeat/v1/heartbeat_service.proto'], { includeDirs: [join(root, 'proto')], longs: String, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { telemesh: { heartbeat: { v1: { HeartbeatService: new (t: string, c: grpc.ChannelCredentials, o?: object) => HbClient } } } };
  // A local subchannel pool per client, so the clients do not share one connection.
  return Array.from({ length: n }, (_, i) => new pkg.telemesh.heartbeat.v1.HeartbeatService(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.primary_user_agent': `bench-${i}` }));
}

/** One simulated agent. */
export class SimAgent {
  connected = false;
  replica = '';
  paused = false;
  connects = 0;
  #stopped = false;
  #call: ReturnType<HbClient['Connect']> | undefined;
  #seq = 0;
  #next = 0;
  #attempt = 0;

  constructor(
    readonly id: string,
    readonly slot: number,
    private readonly clients: readonly HbClient[],
    private readonly token: string,
    private readonly labels: Record<string, string>,
  ) {}

  start(): void {
    if (this.#stopped) return;
    const client = this.clients[this.#next++ % this.clients.length]!;
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${this.token}`);
    const call = client.Connect(md);
    this.#call = call;
    this.connects++;
    call.write({ hello: { agentId: this.id, hostname: `${this.id}.bench`, version: 'bench', labels: Object.entries(this.labels).map(([name, value]) => ({ name, value })), requestedIntervalMs: '1000' } });
    call.on('data', (d: { replica: string }) => {
      this.connected = true;
      this.replica = d.replica;
      this.#attempt = 0;
    });
    const down = () => {
      if (this.#call !== call) return;
      this.#call = undefined;
      this.connected = false;
      this.replica = '';
      if (this.#stopped) return;
      const cap = Math.min(2000, 100 * 2 ** Math.min(this.#attempt++, 10));
      setTimeout(() => this.start(), Math.floor(Math.random() * cap));
    };
    call.on('error', down);
    call.on('end', down);
  }

  /** Called by the ticker on this agent's slot. */
  beat(): void {
    if (!this.connected || this.paused || !this.#call) return;
    this.#call.write({ beat: { seq: String(++this.#seq), sentAtMs: String(Date.now()), status: 'ok' } });
  }

  /** Abrupt death: the stream is reset (RST_STREAM), no goodbye, no reconnect. */
  kill(): void {
    this.#stopped = true;
    this.#call?.cancel();
  }

  /** Clean stop with a goodbye. */
  goodbye(): void {
    this.#stopped = true;
    this.#call?.write({ goodbye: { reason: 'bench done' } });
    this.#call?.end();
  }
}

/** Sends each slot's beats every `intervalMs / slots`; returns the stop function. */
export function startTicker(agents: readonly SimAgent[], intervalMs: number, slots = 10): () => void {
  const bySlot: SimAgent[][] = Array.from({ length: slots }, () => []);
  for (const a of agents) bySlot[a.slot % slots]!.push(a);
  let k = 0;
  const t = setInterval(() => {
    for (const a of bySlot[k++ % slots]!) a.beat();
  }, intervalMs / slots);
  return () => clearInterval(t);
}
