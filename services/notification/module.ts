/**
 * The notification service module. Its RPCs are not built yet: the contract is registered with
 * no methods, so every call answers `unimplemented`, while health and lifecycle are real.
 */
import { NotificationService } from '../../libs/contracts/telemesh/notify/v1/notify_service_pb.js';
import type { HealthRegistry } from '../../libs/runtime/health.js';
import type { Started } from '../../libs/runtime/modules.js';
import type { RpcServer } from '../../libs/runtime/server.js';
import { serveContract } from '../../libs/runtime/service-module.js';

/** Starts the notification service. */
export async function startNotification(deps: { server: RpcServer; health: HealthRegistry }): Promise<Started<void>> {
  return serveContract(deps, NotificationService, {});
}
