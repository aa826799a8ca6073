/**
 * The alerting service module. Its RPCs are not built yet: the contract is registered with
 * no methods, so every call answers `unimplemented`, while health and lifecycle are real.
 */
import { AlertingService } from '../../libs/contracts/telemesh/alerting/v1/alerting_service_pb.js';
import type { HealthRegistry } from '../../libs/runtime/health.js';
import type { Started } from '../../libs/runtime/modules.js';
import type { RpcServer } from '../../libs/runtime/server.js';
import { serveContract } from '../../libs/runtime/service-module.js';

/** Starts the alerting service. */
export async function startAlerting(deps: { server: RpcServer; health: HealthRegistry }): Promise<Started<void>> {
  return serveContract(deps, AlertingService, {});
}
