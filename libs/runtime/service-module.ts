/**
 * The common shape of a service module: register an implementation of a contract on the
 * server and report its health as SERVING until stopped.
 */
import type { DescService } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import { ServingStatus, type HealthRegistry } from './health.js';
import type { Started } from './modules.js';
import type { RpcServer } from './server.js';

/** Registers `impl` for `service` and marks it SERVING; `onStop` runs after it is marked NOT_SERVING. */
export function serveContract<T extends DescService>(
  deps: { readonly server: RpcServer; readonly health: HealthRegistry },
  service: T,
  impl: Partial<ServiceImpl<T>>,
  onStop?: () => Promise<void>,
): Started<void> {
  deps.server.registerService(service, impl);
  deps.health.set(service.typeName, ServingStatus.SERVING);
  return {
    value: undefined,
    async stop() {
      deps.health.set(service.typeName, ServingStatus.NOT_SERVING);
      await onStop?.();
    },
  };
}
