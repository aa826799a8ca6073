/**
 * The composition root: every module of the binary, its dependencies, and the wiring
 * that starts it. `telemesh serve --target=<name>` runs a module and what it needs; `all`
 * runs the whole mesh in one process, where the services still meet only through gRPC and
 * NATS. No business logic here.
 */
import type { Registry } from 'prom-client';
import { connectBus, startNatsServer, type Bus } from '../libs/bus/index.js';
import { authInterceptor, defaultAccessPolicy, type TokenVerifier } from '../libs/runtime/auth/index.js';
import { dataPath, describeSetting, type Config } from '../libs/runtime/config.js';
import { StartupError } from '../libs/runtime/errors.js';
import type { HealthRegistry } from '../libs/runtime/health.js';
import { errorInterceptor, observeInterceptor, serverTracingInterceptor } from '../libs/runtime/interceptors.js';
import type { Logger } from '../libs/runtime/logger.js';
import { counter } from '../libs/runtime/metrics.js';
import type { ModuleManager, ModuleTable } from '../libs/runtime/modules.js';
import { RpcServer } from '../libs/runtime/server.js';
import { openDuckDbStore, openMongoStore, parseTierSpec, StoreInputError, type RollupStore } from '../libs/store/index.js';
import { startAggregation } from '../services/aggregation/module.js';
import { startAlerting } from '../services/alerting/module.js';
import { startHeartbeat } from '../services/heartbeat/module.js';
import { startIngestion } from '../services/ingestion/module.js';
import { startNotification } from '../services/notification/module.js';

/** The value each module provides to the modules that depend on it. */
export interface Modules {
  /** The gRPC/HTTP listeners. */
  server: RpcServer;
  /** URL of the NATS server (external, or the embedded one started here). */
  nats: string;
  /** JetStream connection with the topology ensured. */
  bus: Bus;
  /** The metric store with its rollup tiers (only aggregation opens it). */
  store: RollupStore;
  ingestion: void;
  heartbeat: void;
  aggregation: void;
  alerting: void;
  notification: void;
  /** The whole mesh. */
  all: void;
}

/** Targets a user may pick with `--target`. */
export const TARGETS = ['all', 'ingestion', 'heartbeat', 'aggregation', 'alerting', 'notification'] as const;

/** Process-wide things every module may use. */
export interface ProcessDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly health: HealthRegistry;
  readonly verifier: TokenVerifier;
  /** Module states, for `/readyz`. */
  readonly manager: () => ModuleManager<Modules>;
}

/** Builds the module table for this process. */
export function moduleTable(p: ProcessDeps): ModuleTable<Modules> {
  const { config, logger, registry, health } = p;
  const authFailures = counter(registry, {
    name: 'telemesh_auth_failures_total',
    help: 'Requests refused by authentication or authorization, by kind.',
    labelNames: ['kind'],
  });
  return {
    server: {
      deps: [],
      async start() {
        const server = new RpcServer(config.server, {
          logger,
          registry,
          health,
          interceptors: [
            serverTracingInterceptor(),
            observeInterceptor(logger, registry),
            errorInterceptor(logger),
            authInterceptor({
              verifier: p.verifier,
              policy: defaultAccessPolicy,
              logger,
              onFailure: (f) => authFailures.inc({ kind: f.kind }),
            }),
          ],
          readiness: () => ({ ready: p.manager().ready(), modules: p.manager().states() }),
        });
        await server.listen();
        return { value: server, stop: () => server.close() };
      },
    },
    nats: {
      deps: [],
      async start() {
        if (config.nats.url !== '') return { value: config.nats.url };
        const nats = await startNatsServer({
          host: '127.0.0.1',
          port: config.nats.embeddedPort,
          storeDir: dataPath(config, 'nats'),
          logger,
        });
        return { value: nats.url, stop: () => nats.stop() };
      },
    },
    bus: {
      deps: ['nats'],
      async start(ctx) {
        const bus = await connectBus({
          url: ctx.get('nats'),
          name: `telemesh-${config.replica || 'local'}`,
          logger,
          registry,
          replicas: config.nats.replicas,
          connectTimeoutMs: config.nats.connectTimeoutMs,
          onClosed: (err) => ctx.fail(err ?? new Error('NATS connection closed')),
        });
        await bus.ensureTopology();
        return { value: bus, stop: () => bus.close() };
      },
    },
    store: {
      deps: [],
      async start() {
        const s = config.store;
        let retention;
        try {
          retention = parseTierSpec(s.rollupTiers, s.rawRetentionMs);
        } catch (err) {
          if (err instanceof StoreInputError) throw new StartupError(err.message, describeSetting('store.rollupTiers'));
          throw err;
        }
        const jobs = { retention, compactionIntervalMs: s.compactionIntervalMs, retentionIntervalMs: s.retentionIntervalMs };
        if (s.backend === 'mongodb') {
          if (s.mongodbUri === '') {
            throw new StartupError('store backend mongodb needs a connection string', describeSetting('store.mongodbUri'));
          }
          const store = await openMongoStore({
            uri: s.mongodbUri,
            database: s.mongodbDatabase,
            granularity: s.mongodbGranularity,
            logger,
            ...jobs,
          });
          return { value: store, stop: () => store.close() };
        }
        const store = await openDuckDbStore({
          path: s.duckdbPath || dataPath(config, 'telemesh.duckdb'),
          logger,
          sealAfterMs: s.sealAfterMs,
          headSamples: s.headSamples,
          ...jobs,
        });
        return { value: store, stop: () => store.close() };
      },
    },
    ingestion: {
      deps: ['server', 'bus'],
      start: (ctx) => startIngestion({ config, registry, health, logger, verifier: p.verifier, server: ctx.get('server'), bus: ctx.get('bus') }),
    },
    aggregation: {
      deps: ['server', 'bus', 'store'],
      start: (ctx) =>
        startAggregation({ config, registry, health, logger, verifier: p.verifier, server: ctx.get('server'), bus: ctx.get('bus'), store: ctx.get('store') }),
    },
    heartbeat: {
      deps: ['server', 'bus'],
      start: async (ctx) => ({
        ...(await startHeartbeat({ config, registry, health, logger, server: ctx.get('server'), bus: ctx.get('bus') })),
        value: undefined,
      }),
    },
    alerting: { deps: ['server'], start: (ctx) => startAlerting({ health, server: ctx.get('server') }) },
    notification: { deps: ['server'], start: (ctx) => startNotification({ health, server: ctx.get('server') }) },
    all: {
      deps: ['ingestion', 'heartbeat', 'aggregation', 'alerting', 'notification'],
      start: async () => ({ value: undefined }),
    },
  };
}
