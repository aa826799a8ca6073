/**
 * Health: the standard `grpc.health.v1.Health` service, per service name and overall
 * (the empty name), fed by module states. The HTTP `/readyz` reads the same source.
 */
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { create } from '@bufbuild/protobuf';
import {
  type Health,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
  type HealthCheckResponse,
} from '../contracts/grpc/health/v1/health_pb.js';

export { HealthCheckResponse_ServingStatus as ServingStatus } from '../contracts/grpc/health/v1/health_pb.js';

/** Serving status per service name; the overall status is SERVING only when all are. */
export class HealthRegistry {
  readonly #status = new Map<string, Status>();
  readonly #watchers = new Set<() => void>();

  /** Sets the status of one service name (e.g. `telemesh.ingest.v1.IngestService`). */
  set(service: string, status: Status): void {
    if (this.#status.get(service) === status) return;
    this.#status.set(service, status);
    for (const w of this.#watchers) w();
  }

  /** Marks every known service NOT_SERVING (at shutdown). */
  setAllNotServing(): void {
    for (const name of this.#status.keys()) this.set(name, Status.NOT_SERVING);
  }

  /** Status of a service, the overall status for '', or undefined when unknown. */
  get(service: string): Status | undefined {
    if (service === '') {
      if (this.#status.size === 0) return Status.NOT_SERVING;
      for (const s of this.#status.values()) if (s !== Status.SERVING) return Status.NOT_SERVING;
      return Status.SERVING;
    }
    return this.#status.get(service);
  }

  /** Calls `fn` after every change until the returned function is called. */
  onChange(fn: () => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }
}

/** The grpc.health.v1.Health implementation over a {@link HealthRegistry}. */
export function healthService(registry: HealthRegistry): ServiceImpl<typeof Health> {
  const response = (status: Status): HealthCheckResponse => create(HealthCheckResponseSchema, { status });
  return {
    check(req) {
      const status = registry.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return response(status);
    },
    async *watch(req, ctx) {
      let last: Status | undefined;
      let wake: (() => void) | undefined;
      const off = registry.onChange(() => wake?.());
      const aborted = new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r(), { once: true }));
      try {
        while (!ctx.signal.aborted) {
          const status = registry.get(req.service) ?? Status.SERVICE_UNKNOWN;
          if (status !== last) {
            last = status;
            yield response(status);
          }
          await Promise.race([new Promise<void>((r) => (wake = r)), aborted]);
        }
      } finally {
        off();
      }
    },
  };
}
