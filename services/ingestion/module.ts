/**
 * Lifecycle of the ingestion service: registers IngestService and the OTLP
 * MetricsService on the gRPC port, the remote_write and OTLP/HTTP receivers on the HTTP
 * port, and optionally extra OTLP listeners on the standard ports (4317/4318).
 */
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { ServiceImpl } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { MetricsService } from '../../libs/contracts/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js';
import { IngestService } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { samplesSubject, type Bus } from '../../libs/bus/index.js';
import { EncodedIngestService } from '../../libs/model/index.js';
import { authInterceptor, defaultAccessPolicy, type TokenVerifier } from '../../libs/runtime/auth/index.js';
import { describeSetting, type Config } from '../../libs/runtime/config.js';
import { StartupError } from '../../libs/runtime/errors.js';
import { ServingStatus, type HealthRegistry } from '../../libs/runtime/health.js';
import { errorInterceptor } from '../../libs/runtime/interceptors.js';
import type { Started } from '../../libs/runtime/modules.js';
import type { RpcServer } from '../../libs/runtime/server.js';
import { serveContract } from '../../libs/runtime/service-module.js';
import { IngestServiceImpl } from './ingest-service.js';
import { metricsServiceImpl, OTLP_HTTP_PATH, otlpHttpHandler, otlpHttpRoute } from './otlp-service.js';
import { Ingester } from './pipeline.js';
import { remoteWriteRoute } from './remote-write.js';
import { tracedHttp } from '../../libs/runtime/http.js';

/** What the ingestion module is wired with. */
export interface IngestionModuleDeps {
  readonly config: Config;
  readonly server: RpcServer;
  readonly bus: Bus;
  readonly registry: Registry;
  readonly health: HealthRegistry;
  readonly logger: Logger;
  readonly verifier: TokenVerifier;
}

/** Starts the ingestion service. */
export async function startIngestion(deps: IngestionModuleDeps): Promise<Started<void>> {
  const limits = deps.config.ingestion;
  const logger = deps.logger.child({ service: 'ingestion' });
  const ingester = new Ingester({ publisher: deps.bus, subjectFor: samplesSubject, limits, registry: deps.registry });
  const impl = new IngestServiceImpl(ingester);
  const httpDeps = { ingester, verifier: deps.verifier, logger, maxRequestBytes: limits.maxRequestBytes, registry: deps.registry };
  deps.server.registerHttp(remoteWriteRoute(httpDeps));
  deps.server.registerHttp(otlpHttpRoute(httpDeps));
  deps.server.registerService(MetricsService, metricsServiceImpl(ingester));
  deps.health.set(MetricsService.typeName, ServingStatus.SERVING);

  const extra: Array<http.Server | http2.Http2Server> = [];
  const sessions = new Set<http2.ServerHttp2Session>();
  try {
    if (limits.otlpGrpcPort !== 0) {
      const handler = connectNodeAdapter({
        routes: (router) => router.service(MetricsService, metricsServiceImpl(ingester)),
        interceptors: [errorInterceptor(logger), authInterceptor({ verifier: deps.verifier, policy: defaultAccessPolicy, logger })],
        readMaxBytes: limits.maxRequestBytes,
      });
      const srv = http2.createServer({}, handler);
      // Clients keep HTTP/2 sessions open; stop() must close them or close() never ends.
      srv.on('session', (session: http2.ServerHttp2Session) => {
        sessions.add(session);
        session.once('close', () => sessions.delete(session));
      });
      extra.push(srv);
      await listen(srv, deps.config.server.host, limits.otlpGrpcPort, 'ingestion.otlpGrpcPort');
    }
    if (limits.otlpHttpPort !== 0) {
      const handle = tracedHttp(OTLP_HTTP_PATH, otlpHttpHandler(httpDeps));
      const srv = http.createServer((req, res) => {
        if ((req.url ?? '').split('?')[0] !== OTLP_HTTP_PATH) {
          res.writeHead(404).end('not found\n');
          return;
        }
        if (req.method !== 'POST') {
          res.writeHead(405, { allow: 'POST' }).end('method not allowed\n');
          return;
        }
        void handle(req, res);
      });
      extra.push(srv);
      await listen(srv, deps.config.server.host, limits.otlpHttpPort, 'ingestion.otlpHttpPort');
    }
  } catch (err) {
    for (const s of extra) s.close();
    throw err;
  }
  if (extra.length > 0) logger.info({ otlpGrpcPort: limits.otlpGrpcPort, otlpHttpPort: limits.otlpHttpPort }, 'extra OTLP listeners');

  // Served through the encoded view of the contract (same name, same wire format): the
  // implementation reads series as bytes. JSON calls carry series as objects, so they are
  // served through the contract's own descriptor.
  const handlers = { write: impl.write.bind(impl), stream: impl.stream.bind(impl) } as unknown as Partial<ServiceImpl<typeof EncodedIngestService>>;
  const json = { service: IngestService, impl: { write: impl.writeMessages.bind(impl), stream: impl.streamMessages.bind(impl) } };
  return serveContract(deps, EncodedIngestService, handlers, async () => {
    deps.health.set(MetricsService.typeName, ServingStatus.NOT_SERVING);
    ingester.close();
    const closed = Promise.all(extra.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const s of extra) if (s instanceof http.Server) s.closeIdleConnections();
    for (const session of sessions) session.close();
    // In-flight exports get a moment to finish; then whatever is left is cut.
    const timer = setTimeout(() => {
      for (const s of extra) if (s instanceof http.Server) s.closeAllConnections();
      for (const session of sessions) session.destroy();
    }, deps.config.server.shutdownTimeoutMs);
    await closed;
    clearTimeout(timer);
  }, json);
}

function listen(server: http.Server | http2.Http2Server, host: string, port: number, setting: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(new StartupError(`cannot listen on ${host}:${port}: ${err.code ?? err.message}`, describeSetting(setting)));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
