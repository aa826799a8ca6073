/**
 * The phi accrual failure detector (Hayashibara et al., 2004), in the form Akka and
 * Cassandra use: keep a sliding window of heartbeat inter-arrival times, model them as a
 * normal distribution, and report phi = -log10(P(a heartbeat arrives later than now)).
 * phi grows continuously while a heartbeat is overdue, so callers pick thresholds
 * (suspect, dead) instead of a fixed timeout.
 *
 * Two knobs keep slow-but-alive agents from being convicted: a minimum standard deviation
 * (a perfectly regular agent would otherwise make any jitter look fatal) and an acceptable
 * pause added to the mean (GC pauses, busy hosts). Pure: the caller passes the time.
 */

/** Settings of a {@link PhiAccrualDetector}. */
export interface PhiOptions {
  /** Inter-arrival samples kept. */
  readonly windowSize: number;
  /** Lower bound of the standard deviation, ms. */
  readonly minStdDevMs: number;
  /** Extra time a heartbeat may be late before phi starts to rise fast, ms. */
  readonly acceptablePauseMs: number;
  /** Expected interval before any heartbeat has been measured, ms. */
  readonly firstIntervalMs: number;
}

/** Detector state of one agent. Not shared across agents. */
export class PhiAccrualDetector {
  readonly #opts: PhiOptions;
  readonly #window: number[] = [];
  #next = 0;
  #sum = 0;
  #sumSq = 0;
  #last: number | undefined;
  #skipNext = false;

  constructor(opts: PhiOptions) {
    if (!(opts.windowSize >= 1)) throw new RangeError('windowSize must be at least 1');
    this.#opts = opts;
    this.reset(opts.firstIntervalMs);
  }

  /**
   * Forgets the history and seeds it with `intervalMs` (and a std of a quarter of it, as
   * Akka does), e.g. when the agent is told to use a new interval.
   */
  reset(intervalMs: number): void {
    this.#window.length = 0;
    this.#next = 0;
    this.#sum = 0;
    this.#sumSq = 0;
    const std = intervalMs / 4;
    // Two samples, mean ± std, so mean and variance start where Akka's bootstrap puts them.
    this.#push(intervalMs - std);
    this.#push(intervalMs + std);
  }

  /**
   * Starts the clock at `nowMs` (e.g. when the agent was told its interval) without
   * measuring the gap to the next heartbeat: that first gap includes connection set-up and
   * the agent's own start, which would inflate the variance and slow detection for good.
   */
  start(nowMs: number): void {
    this.#last = nowMs;
    this.#skipNext = true;
  }

  /** Records a heartbeat that arrived at `nowMs`. */
  heartbeat(nowMs: number): void {
    if (this.#last !== undefined && !this.#skipNext) {
      const gap = nowMs - this.#last;
      if (gap >= 0) this.#push(gap);
    }
    this.#skipNext = false;
    this.#last = nowMs;
  }

  /** Time of the last heartbeat, if any. */
  get lastHeartbeatMs(): number | undefined {
    return this.#last;
  }

  /** Mean inter-arrival time in the window, ms. */
  get meanMs(): number {
    return this.#sum / this.#window.length;
  }

  /** Standard deviation in the window (before the minimum is applied), ms. */
  get stdDevMs(): number {
    const n = this.#window.length;
    const mean = this.#sum / n;
    return Math.sqrt(Math.max(0, this.#sumSq / n - mean * mean));
  }

  /** phi at `nowMs`; 0 before the first heartbeat. */
  phi(nowMs: number): number {
    if (this.#last === undefined) return 0;
    const elapsed = nowMs - this.#last;
    const mean = this.meanMs + this.#opts.acceptablePauseMs;
    const std = Math.max(this.stdDevMs, this.#opts.minStdDevMs);
    return phiOf(elapsed, mean, std);
  }

  /**
   * How long after the last heartbeat phi reaches `threshold` (given the current window),
   * ms; Infinity before the first heartbeat. Lets callers sleep until an agent can be due
   * instead of evaluating phi for every agent on every pass.
   */
  elapsedAtPhi(threshold: number): number {
    if (this.#last === undefined) return Infinity;
    const mean = this.meanMs + this.#opts.acceptablePauseMs;
    const std = Math.max(this.stdDevMs, this.#opts.minStdDevMs);
    return mean + std * phiCrossing(threshold);
  }

  #push(v: number): void {
    if (this.#window.length < this.#opts.windowSize) {
      this.#window.push(v);
    } else {
      const old = this.#window[this.#next]!;
      this.#sum -= old;
      this.#sumSq -= old * old;
      this.#window[this.#next] = v;
      this.#next = (this.#next + 1) % this.#opts.windowSize;
    }
    this.#sum += v;
    this.#sumSq += v * v;
  }
}

/**
 * phi for `elapsedMs` since the last heartbeat under N(mean, std), with the logistic
 * approximation of the normal CDF Akka uses (error < 1e-4), which stays finite where
 * 1 - CDF underflows.
 */
export function phiOf(elapsedMs: number, meanMs: number, stdMs: number): number {
  const y = (elapsedMs - meanMs) / stdMs;
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y));
  if (elapsedMs > meanMs) return -Math.log10(e / (1 + e));
  return -Math.log10(1 - 1 / (1 + e));
}

const crossings = new Map<number, number>();

/**
 * The standardized lateness y = (elapsed - mean) / std at which {@link phiOf} reaches
 * `threshold`, from below (so a deadline computed from it is never late). phi depends on
 * elapsed, mean and std only through y, so one bisection per threshold serves every agent.
 */
export function phiCrossing(threshold: number): number {
  let y = crossings.get(threshold);
  if (y !== undefined) return y;
  let lo = -50;
  let hi = 50;
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (phiOf(mid, 0, 1) >= threshold) hi = mid;
    else lo = mid;
  }
  y = lo;
  crossings.set(threshold, y);
  return y;
}
