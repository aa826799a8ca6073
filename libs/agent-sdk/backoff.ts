/**
 * Retry delays: exponential backoff with "full jitter" (a uniformly random delay between 0
 * and the exponential cap). Full jitter spreads thousands of agents reconnecting after the
 * same outage, so they do not hammer ingestion in lock-step.
 */

/** Shape of the backoff curve. */
export interface BackoffOptions {
  /** Cap of the first retry's delay, ms. Default 100. */
  readonly initialMs?: number;
  /** Largest cap, ms. Default 30 000. */
  readonly maxMs?: number;
  /** Growth of the cap per attempt. Default 2. */
  readonly multiplier?: number;
}

/** Defaults of {@link BackoffOptions}. */
export const DEFAULT_BACKOFF: Required<BackoffOptions> = { initialMs: 100, maxMs: 30_000, multiplier: 2 };

/**
 * The upper bound of the delay before retry number `attempt` (0-based):
 * `min(maxMs, initialMs · multiplier^attempt)`.
 */
export function backoffCap(attempt: number, opts: BackoffOptions = {}): number {
  const o = { ...DEFAULT_BACKOFF, ...opts };
  // Math.pow overflows to Infinity for large attempts; min() then clamps it to maxMs.
  return Math.min(o.maxMs, o.initialMs * Math.pow(o.multiplier, Math.max(0, attempt)));
}

/**
 * The delay before retry number `attempt`: uniform in `[0, backoffCap(attempt))`.
 * `random` is injectable (tests pin it); it must return a number in `[0, 1)`.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCap(attempt, opts));
}
