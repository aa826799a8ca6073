import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { DescService } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, createContextValues } from '@connectrpc/connect';
import type { ConnectRouter, Interceptor, UnaryRequest, UnaryResponse } from '@connectrpc/connect';
import { Http2SessionManager, connectNodeAdapter, createGrpcTransport } from '@connectrpc/connect-node';
import { Health, HealthCheckResponse_ServingStatus } from '../../contracts/grpc/health/v1/health_pb.js';
import { AlertingService } from '../../contracts/telemesh/alerting/v1/alerting_service_pb.js';
import { HeartbeatService } from '../../contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import { IngestService } from '../../contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { NotificationService } from '../../contracts/telemesh/notify/v1/notify_service_pb.js';
import { QueryService } from '../../contracts/telemesh/query/v1/query_service_pb.js';
import { PermissionDeniedError, UnauthenticatedError, UnavailableError } from '../errors.js';
import { authInterceptor, authenticateHttp, principalKey, requirePrincipal } from './interceptor.js';
import type { AuthFailure } from './interceptor.js';
import { mintToken } from './mint.js';
import { PUBLIC, createAccessPolicy, defaultAccessPolicy } from './policy.js';
import type { Role } from './policy.js';
import { createTestAuth } from './testing.js';
import type { Principal } from './verifier.js';

const auth = createTestAuth();
const bearer = async (roles: Role[], tenant = 'acme'): Promise<string> => `Bearer ${await auth.token(roles, tenant)}`;

// Calls the interceptor directly with the parts of a request it reads, so every RPC of every
// contract can be checked against every role without one server per service.
async function callThrough(service: DescService, methodName: string, authorization?: string): Promise<Principal | undefined> {
  const method = service.methods.find((m) => m.name === methodName);
  assert.ok(method, methodName);
  const contextValues = createContextValues();
  const req = {
    stream: false,
    service,
    method,
    header: new Headers(authorization ? { authorization } : {}),
    contextValues,
  } as unknown as UnaryRequest;
  let seen: Principal | undefined;
  const next = async (r: UnaryRequest): Promise<UnaryResponse> => {
    seen = r.contextValues.get(principalKey);
    return {} as UnaryResponse;
  };
  await authInterceptor({ verifier: auth.verifier, policy: defaultAccessPolicy })(next as never)(req);
  return seen;
}

const services: DescService[] = [Health, IngestService, HeartbeatService, QueryService, AlertingService, NotificationService];
const allRpcs = services.flatMap((s) => s.methods.map((m) => ({ service: s, name: m.name, access: defaultAccessPolicy.rpc(`${s.typeName}/${m.name}`) })));

describe('authInterceptor role checks (every contract RPC)', () => {
  it('admin may call every RPC', async () => {
    const token = await bearer(['admin']);
    for (const r of allRpcs) await callThrough(r.service, r.name, token);
  });

  it('editor may call reader and editor RPCs but not agent ones', async () => {
    const token = await bearer(['editor']);
    for (const r of allRpcs) {
      const call = callThrough(r.service, r.name, token);
      if (r.access === PUBLIC || (Array.isArray(r.access) && (r.access.includes('reader') || r.access.includes('editor')))) await call;
      else await assert.rejects(call, PermissionDeniedError, `${r.service.typeName}/${r.name}`);
    }
  });

  it('agent may call only agent RPCs', async () => {
    const token = await bearer(['agent']);
    for (const r of allRpcs) {
      const call = callThrough(r.service, r.name, token);
      if (r.access === PUBLIC || (Array.isArray(r.access) && r.access.includes('agent'))) await call;
      else await assert.rejects(call, PermissionDeniedError, `${r.service.typeName}/${r.name}`);
    }
  });

  it('reader may not write samples or change rules', async () => {
    const token = await bearer(['reader']);
    await assert.rejects(callThrough(IngestService, 'Write', token), PermissionDeniedError);
    await assert.rejects(callThrough(AlertingService, 'PutRuleGroup', token), PermissionDeniedError);
    await callThrough(QueryService, 'Query', token);
  });

  it('names the required role in the refusal', async () => {
    await assert.rejects(callThrough(QueryService, 'Query', await bearer(['agent'])), (e: unknown) => e instanceof PermissionDeniedError && /\breader\b/.test(e.message));
  });

  it('puts the principal in the context and skips public RPCs', async () => {
    assert.deepEqual(await callThrough(QueryService, 'Query', await bearer(['reader'], 'tenant-b')), { subject: 'test-reader', tenant: 'tenant-b', roles: ['reader'] });
    assert.equal(await callThrough(Health, 'Check'), undefined);
    assert.equal(await callThrough(Health, 'Check', 'Bearer garbage'), undefined);
  });

  it('refuses missing, non-bearer and duplicated authorization headers', async () => {
    const token = await auth.token(['reader']);
    for (const header of [undefined, token, `Basic ${token}`, `Bearer ${token}, Bearer ${token}`, 'Bearer ']) {
      await assert.rejects(callThrough(QueryService, 'Query', header), UnauthenticatedError, String(header));
    }
    await callThrough(QueryService, 'Query', `bearer  ${token}`);
  });
});

describe('authenticateHttp', () => {
  const policy = defaultAccessPolicy;

  it('accepts Node and Fetch headers', async () => {
    const authorization = await bearer(['agent'], 'acme');
    assert.equal((await authenticateHttp({ authorization }, '/api/v1/write', auth.verifier, policy))?.tenant, 'acme');
    assert.equal((await authenticateHttp(new Headers({ authorization }), '/v1/metrics', auth.verifier, policy))?.subject, 'test-agent');
  });

  it('lets public paths through without a token', async () => {
    assert.equal(await authenticateHttp({}, '/metrics', auth.verifier, policy), undefined);
    assert.equal(await authenticateHttp(new Headers(), '/readyz', auth.verifier, policy), undefined);
  });

  it('refuses and audits like the interceptor', async () => {
    const failures: AuthFailure[] = [];
    const audit = { onFailure: (f: AuthFailure) => failures.push(f) };
    await assert.rejects(authenticateHttp({}, '/api/v1/query', auth.verifier, policy, audit), UnauthenticatedError);
    await assert.rejects(authenticateHttp({ authorization: await bearer(['agent'], 'acme') }, '/api/v1/query_range', auth.verifier, policy, audit), PermissionDeniedError);
    await assert.rejects(authenticateHttp({ authorization: await bearer(['admin']) }, '/api/v1/admin/tsdb/delete_series', auth.verifier, policy, audit), PermissionDeniedError);
    assert.deepEqual(failures.map((f) => [f.procedure, f.kind, f.subject, f.tenant]), [
      ['/api/v1/query', 'unauthenticated', undefined, undefined],
      ['/api/v1/query_range', 'permission_denied', 'test-agent', 'acme'],
      ['/api/v1/admin/tsdb/delete_series', 'permission_denied', undefined, undefined],
    ]);
    assert.ok(failures.every((f) => f.reason.length > 0));
  });

  it('keeps refusing when the audit sink throws', async () => {
    const audit = { onFailure: () => { throw new Error('sink down'); } };
    await assert.rejects(authenticateHttp({}, '/api/v1/series', auth.verifier, policy, audit), UnauthenticatedError);
  });

  it('passes a verifier outage through as unavailable', async () => {
    const down = { verify: () => Promise.reject(new UnavailableError('token keys unavailable')) };
    const failures: AuthFailure[] = [];
    await assert.rejects(authenticateHttp({ authorization: 'Bearer x.y.z' }, '/api/v1/labels', down, policy, { onFailure: (f) => failures.push(f) }), UnavailableError);
    assert.equal(failures[0]?.kind, 'unavailable');
  });

  it('uses the policy it is given', async () => {
    const custom = createAccessPolicy({ rpc: {}, http: { '/only-editors': ['editor'] } });
    await assert.rejects(authenticateHttp({ authorization: await bearer(['reader']) }, '/only-editors', auth.verifier, custom), PermissionDeniedError);
    assert.ok(await authenticateHttp({ authorization: await bearer(['editor']) }, '/only-editors', auth.verifier, custom));
  });
});

describe('authInterceptor over real gRPC (loopback HTTP/2)', () => {
  let server: http2.Http2Server;
  let baseUrl: string;
  let sessions: Http2SessionManager;
  const failures: AuthFailure[] = [];
  const warnings: unknown[] = [];

  // The shared error interceptor (domain errors → Connect codes) is being written elsewhere
  // in libs/runtime; this stand-in maps only the auth errors so the client sees real codes.
  const mapAuthErrors: Interceptor = (next) => async (req) => {
    try {
      return await next(req);
    } catch (e) {
      if (e instanceof UnauthenticatedError) throw new ConnectError(e.message, Code.Unauthenticated);
      if (e instanceof PermissionDeniedError) throw new ConnectError(e.message, Code.PermissionDenied);
      throw e;
    }
  };

  const routes = (router: ConnectRouter): void => {
    router.service(QueryService, {
      // Returns who the interceptor says is calling, so the test sees the context value.
      labelNames: (_req, ctx) => {
        const p = requirePrincipal(ctx);
        return { names: [p.tenant, p.subject, ...p.roles] };
      },
    });
    router.service(HeartbeatService, {
      async *watchAgents(_req, ctx) {
        requirePrincipal(ctx);
        yield {};
      },
    });
    router.service(Health, {
      check: () => ({ status: HealthCheckResponse_ServingStatus.SERVING }),
    });
  };

  before(async () => {
    const auth0 = authInterceptor({
      verifier: auth.verifier,
      policy: defaultAccessPolicy,
      onFailure: (f) => failures.push(f),
      logger: { warn: (...args: unknown[]) => void warnings.push(args) },
    });
    server = http2.createServer(connectNodeAdapter({ routes, interceptors: [mapAuthErrors, auth0] }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    sessions = new Http2SessionManager(baseUrl);
  });

  after(async () => {
    sessions.abort();
    await new Promise((resolve) => server.close(resolve));
  });

  const clientFor = <S extends DescService>(s: S) => createClient(s, createGrpcTransport({ baseUrl, sessionManager: sessions }));

  async function code(p: Promise<unknown>): Promise<Code | undefined> {
    try {
      await p;
      return undefined;
    } catch (e) {
      return ConnectError.from(e).code;
    }
  }

  it('serves a reader with the tenant from its token', async () => {
    const res = await clientFor(QueryService).labelNames({}, { headers: { authorization: await bearer(['reader'], 'tenant-a') } });
    assert.deepEqual(res.names, ['tenant-a', 'test-reader', 'reader']);
  });

  it('serves editor and admin too', async () => {
    for (const role of ['editor', 'admin'] as const) {
      const res = await clientFor(QueryService).labelNames({}, { headers: { authorization: await bearer([role], 'acme') } });
      assert.equal(res.names[0], 'acme');
    }
  });

  it('answers Unauthenticated without, or with a bad, token', async () => {
    const q = clientFor(QueryService);
    assert.equal(await code(q.labelNames({})), Code.Unauthenticated);
    assert.equal(await code(q.labelNames({}, { headers: { authorization: 'Bearer not.a.jwt' } })), Code.Unauthenticated);
    const foreign = await mintToken('some-other-secret-that-is-long-enough!!', { subject: 'x', tenant: 'acme', roles: ['admin'], ttlSec: 60 });
    assert.equal(await code(q.labelNames({}, { headers: { authorization: `Bearer ${foreign}` } })), Code.Unauthenticated);
  });

  it('answers PermissionDenied to an agent calling a reader RPC', async () => {
    const agent = { headers: { authorization: await bearer(['agent']) } };
    assert.equal(await code(clientFor(QueryService).labelNames({}, agent)), Code.PermissionDenied);
    const stream = async (): Promise<void> => {
      for await (const _ of clientFor(HeartbeatService).watchAgents({}, agent)) void _;
    };
    assert.equal(await code(stream()), Code.PermissionDenied);
  });

  it('authorizes server streams', async () => {
    const reader = { headers: { authorization: await bearer(['reader']) } };
    let received = 0;
    for await (const _ of clientFor(HeartbeatService).watchAgents({}, reader)) received++;
    assert.equal(received, 1);
  });

  it('leaves health public', async () => {
    const res = await clientFor(Health).check({});
    assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING);
  });

  it('audited the refusals with procedure, reason and subject', () => {
    const denied = failures.find((f) => f.kind === 'permission_denied' && f.procedure === 'telemesh.query.v1.QueryService/LabelNames');
    assert.ok(denied);
    assert.equal(denied.subject, 'test-agent');
    assert.ok(failures.some((f) => f.kind === 'unauthenticated' && f.subject === undefined && f.reason === 'missing bearer token'));
    assert.ok(failures.some((f) => f.procedure === 'telemesh.heartbeat.v1.HeartbeatService/WatchAgents'));
    assert.equal(warnings.length, failures.length);
    for (const f of failures) assert.ok(!/eyJ/.test(f.reason), 'reason must not contain a token');
  });
});
