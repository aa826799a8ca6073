import { IngestService } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import type { RpcServer } from '../../libs/runtime/server.js';
import type { IngestServiceImpl } from './ingest-service.js';

/** Registers the ingestion endpoints on the server. */
export function registerIngestionRoutes(server: RpcServer, impl: IngestServiceImpl): void {
  server.registerService(IngestService, { write: (req, ctx) => impl.write(req, ctx) });
}
