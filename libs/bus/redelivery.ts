/**
 * What to do with a message whose handler failed: redeliver later, or give up. Kept pure
 * so the policy is unit-testable without waiting through real redelivery delays.
 */
import { PoisonMessageError } from './errors.js';
import type { ConsumerSpec } from './topology.js';

/** The settlement of a failed delivery. */
export type Rejection =
  | { readonly action: 'nak'; readonly delayMs: number }
  | { readonly action: 'term'; readonly reason: 'poison' | 'max_deliver' };

/**
 * A {@link PoisonMessageError} is terminated at once. Any other error is nak'ed with the
 * consumer's delay for this delivery count, except on the last allowed delivery: the
 * server would not deliver it again anyway, so we terminate it ourselves and count it as
 * poison — otherwise it would silently fall out of the consumer after ack_wait.
 */
export function rejectionFor(err: unknown, deliveryCount: number, spec: Pick<ConsumerSpec, 'maxDeliver' | 'nakDelaysMs'>): Rejection {
  if (err instanceof PoisonMessageError) return { action: 'term', reason: 'poison' };
  if (deliveryCount >= spec.maxDeliver) return { action: 'term', reason: 'max_deliver' };
  const delays = spec.nakDelaysMs;
  const index = Math.min(Math.max(deliveryCount, 1) - 1, delays.length - 1);
  return { action: 'nak', delayMs: delays.length === 0 ? 0 : (delays[index] ?? 0) };
}
