import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import * as http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { pino } from 'pino';
import {
  ConnectRequestSchema,
  ConnectResponseSchema,
  HeartbeatService,
  type ConnectRequest,
} from '../contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import { authInterceptor, defaultAccessPolicy, requirePrincipal } from './auth/index.js';
import { createTestAuth } from './auth/testing.js';
import { InvalidArgumentError } from './errors.js';
import { HealthRegistry } from './health.js';
import { errorInterceptor, observeInterceptor, serverTracingInterceptor } from './interceptors.js';
import { createRegistry } from './metrics.js';
import { RpcServer } from './server.js';

const PATH = '/telemesh.heartbeat.v1.HeartbeatService/Connect';

function frame(msg: ConnectRequest, flags = 0): Buffer {
  const body = toBinary(ConnectRequestSchema, msg);
  const f = Buffer.alloc(5 + body.length);
  f[0] = flags;
  f.writeUInt32BE(body.length, 1);
  f.set(body, 5);
  return f;
}

/** A hand-framed gRPC stream on raw node:http2, for cases no well-behaved client produces. */
function rawCall(session: http2.ClientHttp2Session, token: string, extra: http2.OutgoingHttpHeaders = {}) {
  const stream = session.request({ ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${token}`, ...extra });
  const replies: string[] = [];
  let buf = Buffer.alloc(0);
  stream.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
      const len = buf.readUInt32BE(1);
      replies.push(fromBinary(ConnectResponseSchema, buf.subarray(5, 5 + len)).reason);
      buf = buf.subarray(5 + len);
    }
  });
  const status = new Promise<{ code: number; message: string }>((resolve) => {
    const done = (h: http2.IncomingHttpHeaders) => {
      if (h['grpc-status'] !== undefined) resolve({ code: Number(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) });
    };
    stream.on('response', done);
    stream.on('trailers', done);
  });
  stream.on('error', () => {});
  return { stream, replies, status };
}

describe('native gRPC streams', () => {
  const logger = pino({ level: 'silent' });
  const auth = createTestAuth();
  const registry = createRegistry();
  let server: RpcServer;
  let token: string;
  let session: http2.ClientHttp2Session;
  const ended: Array<string | undefined> = [];

  before(async () => {
    server = new RpcServer(
      { host: '127.0.0.1', httpPort: 0, grpcPort: 0, tlsCertFile: '', tlsKeyFile: '', maxRequestBytes: 1024, shutdownTimeoutMs: 2000 },
      {
        logger,
        registry,
        health: new HealthRegistry(),
        interceptors: [
          serverTracingInterceptor(),
          observeInterceptor(logger, registry),
          errorInterceptor(logger),
          authInterceptor({ verifier: auth.verifier, policy: defaultAccessPolicy }),
        ],
        readiness: () => ({ ready: true, modules: new Map() }),
      },
    );
    await server.listen();
    // connect-es serves what the native path does not take (here: compressed requests).
    server.registerService(HeartbeatService, {
      async *connect() {
        yield create(ConnectResponseSchema, { reason: 'connect-es' });
      },
    });
    // An echo session: one reply per message naming its kind; goodbye "fail" ends with a domain error.
    server.registerGrpcStream(HeartbeatService.method.connect, (call) => {
      const { tenant } = requirePrincipal(call);
      return {
        onMessage(m) {
          if (m.msg.case === 'goodbye') {
            if (m.msg.value.reason === 'fail') call.end(new InvalidArgumentError('goodbye.reason: fail on purpose', [{ field: 'goodbye.reason', description: 'fail' }]));
            else call.end();
            return;
          }
          call.send(create(ConnectResponseSchema, { reason: `${tenant}:${m.msg.case ?? 'empty'}` }));
        },
        onEnd(err) {
          ended.push(err ? Code[err.code] : undefined);
        },
      };
    });
    token = await auth.token(['agent'], 'acme');
    session = http2.connect(server.urls.grpc);
  });
  after(async () => {
    session?.close();
    await server?.close();
  });

  it('serves a connect-es gRPC client: messages in order, interceptors once per stream, errors mapped as on connect-es', async () => {
    const client = createClient(HeartbeatService, createGrpcTransport({ baseUrl: server.urls.grpc }));
    const headers = { authorization: `Bearer ${token}` };
    const reqs = async function* (last: string) {
      yield create(ConnectRequestSchema, { msg: { case: 'hello', value: { agentId: 'x' } } });
      yield create(ConnectRequestSchema, { msg: { case: 'beat', value: { seq: 1n } } });
      yield create(ConnectRequestSchema, { msg: { case: 'goodbye', value: { reason: last } } });
    };
    const got: string[] = [];
    for await (const r of client.connect(reqs(''), { headers })) got.push(r.reason);
    assert.deepEqual(got, ['acme:hello', 'acme:beat']);
    await assert.rejects(
      (async () => {
        for await (const _ of client.connect(reqs('fail'), { headers })) void _;
      })(),
      (err: unknown) => {
        const ce = ConnectError.from(err);
        return ce.code === Code.InvalidArgument && ce.rawMessage === 'goodbye.reason: fail on purpose';
      },
    );
    await assert.rejects(
      (async () => {
        for await (const _ of client.connect(reqs(''), { headers: { authorization: 'Bearer nope' } })) void _;
      })(),
      (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated,
    );
    const metrics = await registry.getSingleMetricAsString('telemesh_server_requests_total');
    assert.match(metrics, /procedure="telemesh\.heartbeat\.v1\.HeartbeatService\/Connect",code="ok"} 1/);
    assert.match(metrics, /procedure="telemesh\.heartbeat\.v1\.HeartbeatService\/Connect",code="InvalidArgument"} 1/);
    assert.match(metrics, /procedure="telemesh\.heartbeat\.v1\.HeartbeatService\/Connect",code="Unauthenticated"} 1/);
  });

  it('handles frames split across chunks and several frames per chunk; half-close ends the input cleanly', async () => {
    const c = rawCall(session, token);
    const bytes = Buffer.concat([frame(create(ConnectRequestSchema, { msg: { case: 'hello', value: { agentId: 'x' } } })), frame(create(ConnectRequestSchema, { msg: { case: 'beat', value: { seq: 1n } } }))]);
    c.stream.write(bytes.subarray(0, 3));
    await new Promise((r) => setTimeout(r, 20));
    c.stream.write(bytes.subarray(3));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(c.replies, ['acme:hello', 'acme:beat']);
    const before = ended.length;
    c.stream.end();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(ended.slice(before), [undefined]);
    c.stream.close();
  });

  it('refuses a message over maxRequestBytes and a compressed frame; compressed requests go to connect-es', async () => {
    const big = rawCall(session, token);
    big.stream.write(frame(create(ConnectRequestSchema, { msg: { case: 'goodbye', value: { reason: 'x'.repeat(2000) } } })));
    const s1 = await big.status;
    assert.equal(s1.code, Code.ResourceExhausted);
    assert.match(s1.message, /larger than configured readMaxBytes 1024/);
    big.stream.close();
    const compressed = rawCall(session, token);
    compressed.stream.write(frame(create(ConnectRequestSchema, { msg: { case: 'beat', value: { seq: 1n } } }), 1));
    assert.equal((await compressed.status).code, Code.Internal);
    const gzip = rawCall(session, token, { 'grpc-encoding': 'gzip' });
    gzip.stream.end();
    await gzip.status;
    assert.deepEqual(gzip.replies, ['connect-es']);
  });

  it('a lost connection reaches the session as cancelled', async () => {
    const lost = http2.connect(server.urls.grpc);
    const c = rawCall(lost, token);
    c.stream.write(frame(create(ConnectRequestSchema, { msg: { case: 'hello', value: { agentId: 'x' } } })));
    await new Promise((r) => setTimeout(r, 50));
    const before = ended.length;
    lost.destroy();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(ended.slice(before), ['Canceled']);
  });

  it('adds no listener per stream to the shutdown signal, and shutdown ends open streams with unavailable', async () => {
    const listeners = getEventListeners(server.shutdownSignal, 'abort').length;
    const calls = Array.from({ length: 20 }, () => rawCall(session, token));
    for (const c of calls) c.stream.write(frame(create(ConnectRequestSchema, { msg: { case: 'hello', value: { agentId: 'x' } } })));
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(calls.every((c) => c.replies.length === 1));
    assert.equal(getEventListeners(server.shutdownSignal, 'abort').length, listeners);
    const closing = server.close();
    for (const c of calls) assert.equal((await c.status).code, Code.Unavailable);
    for (const c of calls) c.stream.close();
    await closing;
  });
});
