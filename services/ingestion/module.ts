/** Lifecycle of the ingestion service: registers IngestService; nothing to drain itself. */
import type { Registry } from 'prom-client';
import { IngestService } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { samplesSubject, type Bus } from '../../libs/bus/index.js';
import type { Config } from '../../libs/runtime/config.js';
import type { HealthRegistry } from '../../libs/runtime/health.js';
import type { Started } from '../../libs/runtime/modules.js';
import type { RpcServer } from '../../libs/runtime/server.js';
import { serveContract } from '../../libs/runtime/service-module.js';
import { IngestServiceImpl } from './ingest-service.js';

/** What the ingestion module is wired with. */
export interface IngestionModuleDeps {
  readonly config: Config;
  readonly server: RpcServer;
  readonly bus: Bus;
  readonly registry: Registry;
  readonly health: HealthRegistry;
}

/** Starts the ingestion service. */
export async function startIngestion(deps: IngestionModuleDeps): Promise<Started<void>> {
  const impl = new IngestServiceImpl({
    publisher: deps.bus,
    subjectFor: samplesSubject,
    limits: deps.config.ingestion,
    registry: deps.registry,
  });
  return serveContract(deps, IngestService, { write: (req, ctx) => impl.write(req, ctx) });
}
