/**
 * Lifecycle of the aggregation service: the query service, the Prometheus-compatible HTTP
 * API and the sample consumer. On stop the consumer drains (in-flight writes finish and are
 * acknowledged) before the store closes.
 */
import { readFileSync } from 'node:fs';
import type { Registry } from 'prom-client';
import { QueryService } from '../../libs/contracts/telemesh/query/v1/query_service_pb.js';
import type { Bus } from '../../libs/bus/index.js';
import type { TokenVerifier } from '../../libs/runtime/auth/index.js';
import type { Config } from '../../libs/runtime/config.js';
import type { HealthRegistry } from '../../libs/runtime/health.js';
import type { Logger } from '../../libs/runtime/logger.js';
import type { Started } from '../../libs/runtime/modules.js';
import type { RpcServer } from '../../libs/runtime/server.js';
import type { MetricStore } from '../../libs/store/index.js';
import { startSampleConsumer } from './consumer.js';
import { serveContract } from '../../libs/runtime/service-module.js';
import { QueryServiceImpl } from './query-service.js';
import { prometheusApiRoutes } from './prom-api.js';
import { Querier } from './querier.js';
import { registerStoreMetrics } from './store-metrics.js';

/** What the aggregation module is wired with. */
export interface AggregationModuleDeps {
  readonly config: Config;
  readonly server: RpcServer;
  readonly bus: Bus;
  readonly store: MetricStore;
  readonly registry: Registry;
  readonly health: HealthRegistry;
  readonly logger: Logger;
  /** Verifies bearer tokens on the Prometheus HTTP API (RPCs go through the interceptor). */
  readonly verifier: TokenVerifier;
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Starts the aggregation service. */
export async function startAggregation(deps: AggregationModuleDeps): Promise<Started<void>> {
  const consumer = await startSampleConsumer(deps.bus, deps.store, deps.registry, deps.logger);
  registerStoreMetrics(deps.registry, deps.store);
  const impl = new QueryServiceImpl({ store: deps.store, limits: deps.config.query });
  const routes = prometheusApiRoutes({
    querier: new Querier(deps.store, deps.config.query),
    verifier: deps.verifier,
    logger: deps.logger,
    maxRequestBytes: deps.config.server.maxRequestBytes,
    version: packageVersion(),
  });
  for (const route of routes) deps.server.registerHttp(route);
  return serveContract(
    deps,
    QueryService,
    {
      select: (req, ctx) => impl.select(req, ctx),
      query: (req, ctx) => impl.query(req, ctx),
      queryRange: (req, ctx) => impl.queryRange(req, ctx),
      listSeries: (req, ctx) => impl.listSeries(req, ctx),
      labelNames: (req, ctx) => impl.labelNames(req, ctx),
      labelValues: (req, ctx) => impl.labelValues(req, ctx),
    },
    () => consumer.stop(),
  );
}
