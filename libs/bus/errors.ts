/**
 * Errors specific to the bus, and the mapping of NATS client failures to domain errors.
 */
import {
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  NoRespondersError,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import { JetStreamApiError } from '@nats-io/jetstream';

/**
 * Thrown by a consume handler to say "this message can never succeed" (it is malformed,
 * or violates an invariant no retry can fix). The bus terminates the message instead of
 * redelivering it, logs it and counts it in `telemesh_bus_poison_messages_total`. Any
 * other error means "try again later".
 */
export class PoisonMessageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PoisonMessageError';
  }
}

/** Depth limit when walking `cause` chains; they are short, this only guards cycles. */
const MAX_CAUSE_DEPTH = 8;

/**
 * True when `err` (or anything in its `cause` chain) means the bus is unreachable for now
 * rather than that the request was wrong: a timeout, no responders (no stream bound to the
 * subject, or JetStream down — nats.js reports both as "jetstream is not enabled" with a
 * no-responders cause), a closed/draining/broken connection, or a 503 from the JetStream API.
 */
export function isTransientBusError(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && e instanceof Error; depth++) {
    if (
      e instanceof TimeoutError ||
      e instanceof NoRespondersError ||
      e instanceof ClosedConnectionError ||
      e instanceof DrainingConnectionError ||
      e instanceof ConnectionError
    ) {
      return true;
    }
    if (e instanceof JetStreamApiError && e.status === 503) return true;
    // A RequestError wraps the real reason (e.g. a permissions violation, which is not
    // transient); one without a cause is the client's own "connection disconnected".
    if (e instanceof RequestError && e.cause === undefined) return true;
    e = e.cause;
  }
  return false;
}
