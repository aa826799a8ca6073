/**
 * A lean agent simulator for the heartbeat benchmark. It speaks real gRPC to the real
 * service, but straight on `node:http2` client sessions with hand-framed messages (the
 * 5-byte gRPC prefix around protobuf from the generated codec) instead of a gRPC library:
 * the load generator shares the machine with the service under test, and 10,000 streams
 * through @grpc/grpc-js or the SDK cost it more CPU and memory than the service itself, so
 * its event-loop lag would show up as "late heartbeats". The codec and framing are still
 * checked against the service's answers (every response frame is parsed).
 *
 * Beats are sent by one ticker in 10 time slots (100 ms apart), so 10,000 agents at 1 s
 * need no per-agent timers. Reconnects use backoff with full jitter and rotate through the
 * targets, like the SDK.
 */
import * as http2 from 'node:http2';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ConnectRequestSchema, ConnectResponseSchema } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';

const PATH = '/telemesh.heartbeat.v1.HeartbeatService/Connect';
const { NGHTTP2_CANCEL } = http2.constants;

/** Wraps one protobuf message in a gRPC length-prefixed frame (uncompressed). */
function frame(msg: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + msg.length);
  b[0] = 0;
  b.writeUInt32BE(msg.length, 1);
  b.set(msg, 5);
  return b;
}

/** How agent streams ended, by gRPC status and message (or stream error): to see why agents reconnect. */
export const streamEnds = new Map<string, number>();
function countEnd(why: string): void {
  // Numbers (agent ids, ms) are folded so reasons group.
  const key = why.replace(/\d+/g, 'N');
  streamEnds.set(key, (streamEnds.get(key) ?? 0) + 1);
}

/** One HTTP/2 connection to a target, re-dialled lazily after it closes. */
export class SimConnection {
  #session: http2.ClientHttp2Session | undefined;
  constructor(readonly authority: string) {}

  session(): http2.ClientHttp2Session {
    if (!this.#session || this.#session.closed || this.#session.destroyed) {
      const s = http2.connect(this.authority, { peerMaxConcurrentStreams: 10_000 });
      // Stream errors are handled per stream; a session error just means "re-dial".
      s.on('error', () => {});
      s.on('close', () => {
        if (this.#session === s) this.#session = undefined;
      });
      s.unref();
      this.#session = s;
    }
    return this.#session;
  }

  close(): void {
    this.#session?.destroy();
  }
}

/** `n` HTTP/2 connections to `target` (host:port) for agents to share. */
export function simConnections(target: string, n: number): SimConnection[] {
  return Array.from({ length: n }, () => new SimConnection(`http://${target}`));
}

/** One simulated agent. */
export class SimAgent {
  connected = false;
  replica = '';
  paused = false;
  connects = 0;
  #stopped = false;
  #stream: http2.ClientHttp2Stream | undefined;
  #seq = 0n;
  #next = 0;
  #attempt = 0;
  readonly #hello: Buffer;

  constructor(
    readonly id: string,
    readonly slot: number,
    private readonly conns: readonly SimConnection[],
    private readonly token: string,
    labels: Record<string, string>,
  ) {
    this.#hello = frame(
      toBinary(
        ConnectRequestSchema,
        create(ConnectRequestSchema, {
          msg: {
            case: 'hello',
            value: { agentId: id, hostname: `${id}.bench`, version: 'bench', labels: Object.entries(labels).map(([name, value]) => ({ name, value })), requestedIntervalMs: 1000n },
          },
        }),
      ),
    );
  }

  start(): void {
    if (this.#stopped) return;
    const conn = this.conns[this.#next++ % this.conns.length]!;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = conn.session().request(
        { ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc+proto', te: 'trailers', authorization: `Bearer ${this.token}` },
        { endStream: false },
      );
    } catch {
      this.#retry();
      return;
    }
    this.#stream = stream;
    this.connects++;
    stream.write(this.#hello);
    // A stream whose session died before it got anywhere may never report an end: give up on
    // an attempt that has no answer after 60 s and try the next target. (Long: a replica
    // taking on thousands of agents may need tens of seconds, and giving up early only adds
    // load.)
    const watchdog = setTimeout(() => {
      if (this.#stream !== stream || this.connected) return;
      countEnd('no answer within 60 s');
      if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
      down();
    }, 60_000).unref();
    let buf: Buffer = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 5) {
        const len = buf.readUInt32BE(1);
        if (buf.length < 5 + len) break;
        const res = fromBinary(ConnectResponseSchema, buf.subarray(5, 5 + len));
        buf = buf.subarray(5 + len);
        if (this.#stream !== stream) continue;
        clearTimeout(watchdog);
        this.connected = true;
        this.replica = res.replica;
        this.#attempt = 0;
      }
    });
    const down = () => {
      clearTimeout(watchdog);
      if (this.#stream !== stream) return;
      this.#stream = undefined;
      this.connected = false;
      this.replica = '';
      this.#retry();
    };
    const status = (h: http2.IncomingHttpHeaders) => {
      if (h['grpc-status'] === undefined) return;
      countEnd(`grpc-status ${String(h['grpc-status'])}: ${String(h['grpc-message'] ?? '').slice(0, 80)}`);
      // The status ends the call, as in any gRPC client: stop sending (the server does not
      // reset a request side the agent left open) and reconnect, rather than wait for a close
      // that only the watchdog would bring, 60 s later.
      if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
      down();
    };
    stream.on('response', status);
    stream.on('trailers', status);
    stream.on('error', (err: Error & { code?: string }) => {
      countEnd(`stream error ${err.code ?? err.message}`);
      down();
    });
    stream.on('close', down);
  }

  #retry(): void {
    if (this.#stopped) return;
    const cap = Math.min(2000, 100 * 2 ** Math.min(this.#attempt++, 10));
    setTimeout(() => this.start(), Math.floor(Math.random() * cap)).unref();
  }

  /** Called by the ticker on this agent's slot. */
  beat(): void {
    if (!this.connected || this.paused || !this.#stream) return;
    const msg = create(ConnectRequestSchema, { msg: { case: 'beat', value: { seq: ++this.#seq, sentAtMs: BigInt(Date.now()), status: 'ok' } } });
    this.#stream.write(frame(toBinary(ConnectRequestSchema, msg)));
  }

  /** Abrupt death: the stream is reset (RST_STREAM), no goodbye, no reconnect. */
  kill(): void {
    this.#stopped = true;
    const s = this.#stream;
    this.#stream = undefined;
    this.connected = false;
    if (s && !s.destroyed) s.close(NGHTTP2_CANCEL);
  }

  /** Clean stop with a goodbye. */
  goodbye(): void {
    this.#stopped = true;
    const s = this.#stream;
    if (!s || s.destroyed) return;
    s.end(frame(toBinary(ConnectRequestSchema, create(ConnectRequestSchema, { msg: { case: 'goodbye', value: { reason: 'bench done' } } }))));
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
