/**
 * The common shape of a service module: register an implementation of a contract on the
 * server and report its health as SERVING until stopped.
 */
import type { DescService } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import { ServingStatus, type HealthRegistry } from './health.js';
import type { Started } from './modules.js';
import type { RpcServer } from './server.js';

/**
 * Registers `impl` for `service` and marks it SERVING; `onStop` runs after it is marked
 * NOT_SERVING. `json`: see `RpcServer.registerService`.
 */
export function serveContract<T extends DescService, J extends DescService = T>(
  deps: { readonly server: RpcServer; readonly health: HealthRegistry },
  service: T,
  impl: Partial<ServiceImpl<T>>,
  onStop?: () => Promise<void>,
  json?: { readonly service: J; readonly impl: Partial<ServiceImpl<J>> },
): Started<void> {
  deps.server.registerService(service, impl, json);
  deps.health.set(service.typeName, ServingStatus.SERVING);
  return {
    value: undefined,
    async stop() {
      deps.health.set(service.typeName, ServingStatus.NOT_SERVING);
      await onStop?.();
    },
  };
}
