import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { pino } from 'pino';
import { Health, HealthCheckResponse_ServingStatus as Status } from '../contracts/grpc/health/v1/health_pb.js';
import { QueryService } from '../contracts/telemesh/query/v1/query_service_pb.js';
import { IngestService } from '../contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { authInterceptor, defaultAccessPolicy, requirePrincipal } from './auth/index.js';
import { createTestAuth } from './auth/testing.js';
import { InvalidArgumentError, LimitExceededError, StartupError } from './errors.js';
import { HealthRegistry } from './health.js';
import { errorInterceptor, observeInterceptor, serverTracingInterceptor } from './interceptors.js';
import { createRegistry } from './metrics.js';
import { RpcServer, type ServerOptions } from './server.js';

const opts: ServerOptions = {
  host: '127.0.0.1',
  httpPort: 0,
  grpcPort: 0,
  tlsCertFile: '',
  tlsKeyFile: '',
  maxRequestBytes: 1 << 20,
  shutdownTimeoutMs: 2000,
};

describe('RpcServer', () => {
  const logger = pino({ level: 'silent' });
  const auth = createTestAuth();
  const health = new HealthRegistry();
  const registry = createRegistry();
  let ready = false;
  let server: RpcServer;

  before(async () => {
    server = new RpcServer(opts, {
      logger,
      registry,
      health,
      interceptors: [
        serverTracingInterceptor(),
        observeInterceptor(logger, registry),
        errorInterceptor(logger),
        authInterceptor({ verifier: auth.verifier, policy: defaultAccessPolicy }),
      ],
      readiness: () => ({ ready, modules: new Map([['query', ready ? 'running' : 'starting']]) }),
    });
    await server.listen();
  });
  after(() => server.close());

  it('answers probes, and /readyz is 503 listing module states until ready', async () => {
    assert.equal((await fetch(`${server.urls.http}/livez`)).status, 200);
    const notReady = await fetch(`${server.urls.http}/readyz`);
    assert.equal(notReady.status, 503);
    assert.match(await notReady.text(), /query: starting/);
    ready = true;
    assert.equal((await fetch(`${server.urls.http}/readyz`)).status, 200);
    assert.equal((await fetch(`${server.urls.http}/nope`)).status, 404);
    assert.equal((await fetch(`${server.urls.http}/metrics`, { method: 'POST' })).status, 405);
  });

  it('answers unavailable for a service that has not registered yet', async () => {
    const client = createClient(IngestService, createGrpcTransport({ baseUrl: server.urls.grpc }));
    await assert.rejects(client.write({}), (err: unknown) => ConnectError.from(err).code === Code.Unavailable);
  });

  it('maps domain errors to codes in one place and never leaks internal causes', async () => {
    server.registerService(QueryService, {
      labelValues(req, ctx) {
        requirePrincipal(ctx);
        if (req.name === 'invalid') throw new InvalidArgumentError('name: bad label', [{ field: 'name', description: 'bad' }]);
        if (req.name === 'limit') throw new LimitExceededError('too many series (query.maxSeries = 5)', 3000);
        throw new Error('database password is hunter2');
      },
    });
    health.set(QueryService.typeName, Status.SERVING);
    const token = await auth.token(['reader']);
    const headers = { authorization: `Bearer ${token}` };
    for (const transport of [createGrpcTransport({ baseUrl: server.urls.grpc }), createConnectTransport({ baseUrl: server.urls.http, httpVersion: '1.1' })]) {
      const client = createClient(QueryService, transport);
      const call = async (name: string) => {
        try {
          await client.labelValues({ name }, { headers });
        } catch (err) {
          return ConnectError.from(err);
        }
        assert.fail('expected an error');
      };
      const invalid = await call('invalid');
      assert.equal(invalid.code, Code.InvalidArgument);
      assert.equal(invalid.rawMessage, 'name: bad label');
      const limit = await call('limit');
      assert.equal(limit.code, Code.ResourceExhausted);
      assert.equal(limit.metadata.get('retry-after'), '3');
      const internal = await call('boom');
      assert.equal(internal.code, Code.Internal);
      assert.equal(internal.rawMessage, 'internal error');
      assert.equal((await client.labelNames({}, { headers }).then(() => undefined, (e: unknown) => ConnectError.from(e)))?.code, Code.Unimplemented);
    }
    const health2 = createClient(Health, createGrpcTransport({ baseUrl: server.urls.grpc }));
    assert.equal((await health2.check({ service: QueryService.typeName })).status, Status.SERVING);
    const metrics = await (await fetch(`${server.urls.http}/metrics`)).text();
    assert.match(metrics, /telemesh_server_requests_total\{procedure="telemesh.query.v1.QueryService\/LabelValues",code="InvalidArgument"\} 2/);
  });

  it('streams health changes with Watch', async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: server.urls.grpc }));
    const ac = new AbortController();
    const seen: Status[] = [];
    health.set('watched', Status.NOT_SERVING);
    const done = (async () => {
      try {
        for await (const r of client.watch({ service: 'watched' }, { signal: ac.signal })) {
          seen.push(r.status);
          if (seen.length === 1) health.set('watched', Status.SERVING);
          if (seen.length === 2) ac.abort();
        }
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Canceled) throw err;
      }
    })();
    await done;
    assert.deepEqual(seen, [Status.NOT_SERVING, Status.SERVING]);
  });

  it('stops start-up naming the setting when a port is in use', async () => {
    const other = new RpcServer({ ...opts, httpPort: server.httpPort }, {
      logger,
      registry: createRegistry(),
      health: new HealthRegistry(),
      interceptors: [],
      readiness: () => ({ ready: true, modules: new Map() }),
    });
    await assert.rejects(other.listen(), (err: unknown) => {
      assert.ok(err instanceof StartupError);
      assert.match(err.message, new RegExp(`cannot listen on 127.0.0.1:${server.httpPort}: address already in use`));
      assert.match(err.setting ?? '', /TELEMESH_SERVER_HTTP_PORT/);
      return true;
    });
    await other.close();
  });
});
