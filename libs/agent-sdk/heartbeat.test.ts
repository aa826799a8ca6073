/**
 * The heartbeat client's own protocol behaviour, against a scripted HeartbeatService peer
 * on a real RpcServer over loopback gRPC: hello first, beats at the directed interval with
 * increasing sequence numbers, interval changes while connected, reconnect with backoff
 * after a broken stream (to the next URL), goodbye on stop, no retry on invalid_argument.
 * The scripted peer stands in for the service only to make each case deterministic; the
 * client against the real service (NATS, registry, detector) is covered in
 * services/heartbeat/heartbeat.test.ts and test/e2e/heartbeat.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import type { HandlerContext } from '@connectrpc/connect';
import { pino } from 'pino';
import { ConnectResponseSchema, HeartbeatService, type ConnectRequest, type ConnectResponse } from '../contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import { authInterceptor, defaultAccessPolicy } from '../runtime/auth/index.js';
import { createTestAuth } from '../runtime/auth/testing.js';
import { InvalidArgumentError } from '../runtime/errors.js';
import { HealthRegistry } from '../runtime/health.js';
import { errorInterceptor } from '../runtime/interceptors.js';
import { createRegistry } from '../runtime/metrics.js';
import { RpcServer } from '../runtime/server.js';
import { startHeartbeat } from './heartbeat.js';

const logger = pino({ level: 'silent' });
const auth = createTestAuth();

/** One accepted stream as the scripted peer sees it. */
interface Seen {
  readonly server: string;
  readonly msgs: ConnectRequest[];
  push(r: { intervalMs: number; reason: string }): void;
  end(): void;
  ended: boolean;
}

async function scriptedPeer(name: string, streams: Seen[]): Promise<{ url: string; close(): Promise<void> }> {
  const server = new RpcServer(
    { host: '127.0.0.1', httpPort: 0, grpcPort: 0, tlsCertFile: '', tlsKeyFile: '', maxRequestBytes: 1 << 20, shutdownTimeoutMs: 1000 },
    {
      logger,
      registry: createRegistry(),
      health: new HealthRegistry(),
      interceptors: [errorInterceptor(logger), authInterceptor({ verifier: auth.verifier, policy: defaultAccessPolicy })],
      readiness: () => ({ ready: true, modules: new Map() }),
    },
  );
  server.registerService(HeartbeatService, {
    async *connect(reqs: AsyncIterable<ConnectRequest>, _ctx: HandlerContext): AsyncGenerator<ConnectResponse> {
      const queue: ConnectResponse[] = [];
      let wake: (() => void) | undefined;
      let done = false;
      const seen: Seen = {
        server: name,
        msgs: [],
        ended: false,
        push: (r) => {
          queue.push(create(ConnectResponseSchema, { intervalMs: BigInt(r.intervalMs), replica: name, reason: r.reason }));
          wake?.();
        },
        end: () => {
          done = true;
          wake?.();
        },
      };
      streams.push(seen);
      void (async () => {
        try {
          for await (const m of reqs) {
            seen.msgs.push(m);
            if (m.msg.case === 'hello') {
              if (m.msg.value.agentId === 'bad id') {
                queue.push(create(ConnectResponseSchema, { intervalMs: -1n }));
              } else {
                seen.push({ intervalMs: Number(m.msg.value.requestedIntervalMs), reason: 'welcome' });
              }
            }
            if (m.msg.case === 'goodbye') break;
          }
        } catch {
          // reset by the client
        }
        seen.ended = true;
        seen.end();
      })();
      for (;;) {
        while (queue.length > 0) {
          const r = queue.shift()!;
          if (r.intervalMs < 0n) throw new InvalidArgumentError('hello.agent_id: bad', [{ field: 'hello.agent_id', description: 'bad' }]);
          yield r;
        }
        if (done) return;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    },
  });
  await server.listen();
  return { url: server.urls.grpc, close: () => server.close() };
}

async function until(check: () => boolean, what: string, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('heartbeat client', () => {
  const streams: Seen[] = [];
  let p1: Awaited<ReturnType<typeof scriptedPeer>>;
  let p2: Awaited<ReturnType<typeof scriptedPeer>>;
  let token: string;

  before(async () => {
    p1 = await scriptedPeer('p1', streams);
    p2 = await scriptedPeer('p2', streams);
    token = await auth.token(['agent']);
  });
  after(async () => {
    await p1.close();
    await p2.close();
  });

  it('opens with hello, beats with increasing seq, follows interval changes, and says goodbye on stop', async () => {
    const directives: number[] = [];
    const hb = startHeartbeat({ url: p1.url, token, agentId: 'c1', hostname: 'h', version: '9', labels: { env: 'x' }, intervalMs: 1000, onDirective: (d) => directives.push(d.intervalMs) });
    await until(() => streams.length === 1 && hb.connected, 'connected');
    const s = streams[0]!;
    const hello = s.msgs[0]!.msg;
    assert.equal(hello.case, 'hello');
    assert.equal(hello.case === 'hello' && hello.value.requestedIntervalMs, 1000n);
    assert.deepEqual(hello.case === 'hello' && hello.value.labels.map((l) => [l.name, l.value]), [['env', 'x']]);
    await until(() => s.msgs.filter((m) => m.msg.case === 'beat').length >= 2, 'two beats', 5000);
    s.push({ intervalMs: 1500, reason: 'interval changed' });
    await until(() => hb.intervalMs === 1500, 'new interval');
    const seqs = s.msgs.flatMap((m) => (m.msg.case === 'beat' ? [m.msg.value.seq] : []));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => (a < b ? -1 : 1)));
    assert.equal(new Set(seqs).size, seqs.length);
    await hb.stop();
    assert.equal(s.msgs.at(-1)!.msg.case, 'goodbye');
    assert.deepEqual(directives, [1000, 1500]);
    assert.equal(hb.connects, 1);
  });

  it('reconnects to the next URL with backoff after the stream breaks, and stays down after stop(false)', async () => {
    const before = streams.length;
    const hb = startHeartbeat({ urls: [p1.url, p2.url], token, agentId: 'c2', intervalMs: 1000, backoff: { initialMs: 20, maxMs: 100 } });
    await until(() => hb.replica === 'p1', 'on p1');
    streams.at(-1)!.end(); // the peer ends the stream without an error
    await until(() => hb.replica === 'p2', 'moved to p2');
    assert.equal(hb.connects, 2);
    hb.breakStream();
    await until(() => hb.connects === 3 && hb.connected, 'third stream');
    await hb.stop(false);
    const mine = streams.slice(before);
    await until(() => mine.every((s) => s.ended), 'peer saw every stream end');
    assert.ok(!mine.some((s) => s.msgs.some((m) => m.msg.case === 'goodbye')), 'no goodbye after an abrupt stop');
  });

  it('does not retry after invalid_argument', async () => {
    const hb = startHeartbeat({ url: p1.url, token, agentId: 'bad id', intervalMs: 1000, backoff: { initialMs: 10, maxMs: 20 } });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(hb.connects, 1);
    assert.equal(hb.connected, false);
    await hb.stop();
  });
});
