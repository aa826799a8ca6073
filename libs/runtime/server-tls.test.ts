/**
 * TLS on both listeners and the three protocols on each: a self-signed certificate made
 * with openssl for 127.0.0.1, trusted by the clients of this test only.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { pino } from 'pino';
import { Health, HealthCheckResponse_ServingStatus as Status } from '../contracts/grpc/health/v1/health_pb.js';
import { HealthRegistry } from './health.js';
import { createRegistry } from './metrics.js';
import { RpcServer } from './server.js';

describe('RpcServer with TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'telemesh-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  let server: RpcServer;

  before(async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const health = new HealthRegistry();
    health.set('x', Status.SERVING);
    server = new RpcServer(
      { host: '127.0.0.1', httpPort: 0, grpcPort: 0, tlsCertFile: cert, tlsKeyFile: key, maxRequestBytes: 1 << 20, shutdownTimeoutMs: 1000 },
      { logger: pino({ level: 'silent' }), registry: createRegistry(), health, interceptors: [], readiness: () => ({ ready: true, modules: new Map() }) },
    );
    await server.listen();
  });
  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves gRPC, Connect and gRPC-Web over TLS', async () => {
    assert.match(server.urls.grpc, /^https:/);
    const ca = readFileSync(cert);
    const transports = [
      createGrpcTransport({ baseUrl: server.urls.grpc, nodeOptions: { ca } }),
      createConnectTransport({ baseUrl: server.urls.grpc, httpVersion: '2', nodeOptions: { ca } }),
      createGrpcWebTransport({ baseUrl: server.urls.http, httpVersion: '1.1', nodeOptions: { ca } }),
      createConnectTransport({ baseUrl: server.urls.http, httpVersion: '1.1', nodeOptions: { ca } }),
    ];
    for (const t of transports) {
      assert.equal((await createClient(Health, t).check({ service: '' })).status, Status.SERVING);
    }
  });
});
