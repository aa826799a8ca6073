/**
 * Per-tenant rate and cardinality limits: a token bucket of samples per second with a
 * burst, and a cap on active series (series with a sample in the last window). State is
 * per process: with N ingestion replicas behind a balancer each enforces its own share.
 */

/** A token bucket refilled continuously at `ratePerSecond` up to `burst`. */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    now: number,
  ) {
    this.#tokens = burst;
    this.#last = now;
  }

  #refill(now: number): void {
    if (now > this.#last) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) * this.ratePerSecond) / 1000);
      this.#last = now;
    }
  }

  /**
   * Takes `n` tokens if there are enough and returns 0; otherwise takes nothing and
   * returns how many ms until there will be enough (Infinity if `n` exceeds the burst).
   */
  take(n: number, now: number): number {
    if (this.ratePerSecond <= 0) return 0;
    this.#refill(now);
    if (this.#tokens >= n) {
      this.#tokens -= n;
      return 0;
    }
    if (n > this.burst) return Infinity;
    return Math.ceil(((n - this.#tokens) * 1000) / this.ratePerSecond);
  }

  /** Gives back tokens of a request that was not accepted after all. */
  refund(n: number): void {
    this.#tokens = Math.min(this.burst, this.#tokens + n);
  }

  /** Fraction of the burst in use (0 = idle, 1 = exhausted). */
  utilisation(now: number): number {
    if (this.ratePerSecond <= 0) return 0;
    this.#refill(now);
    return 1 - this.#tokens / this.burst;
  }
}

/**
 * Active series of one tenant, keyed by a 52-bit hash of the canonical label set (a
 * string key per series would cost far more memory at a million series; a collision
 * merely counts two series as one).
 */
export class ActiveSeries {
  readonly #entries = new Map<number, ActiveEntry>();

  constructor(
    readonly max: number,
    readonly windowMs: number,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Whether the series may be written: it is already active, or there is room (then it
   * becomes active). Returns its entry, or undefined when refused. A caller that keeps the
   * entry (ingestion keeps it with the label set's cached verdict) passes it back as
   * `known`: while the entry is live, admitting is one field write instead of two lookups
   * in a map of a million hashed keys, which was a tenth of ingestion's CPU.
   */
  admit(key: number, now: number, known?: ActiveEntry): ActiveEntry | undefined {
    if (known !== undefined && known.live) {
      known.lastSeenMs = now;
      return known;
    }
    const seen = this.#entries.get(key);
    if (seen !== undefined) {
      seen.lastSeenMs = now;
      return seen;
    }
    if (this.max > 0 && this.#entries.size >= this.max) return undefined;
    const entry: ActiveEntry = { lastSeenMs: now, live: true };
    this.#entries.set(key, entry);
    return entry;
  }

  /** Forgets series idle for longer than the window. */
  purge(now: number): void {
    const cutoff = now - this.windowMs;
    for (const [k, e] of this.#entries) {
      if (e.lastSeenMs < cutoff) {
        e.live = false;
        this.#entries.delete(k);
      }
    }
  }
}

/** One active series: when it was last written, and whether it is still counted. */
export interface ActiveEntry {
  lastSeenMs: number;
  live: boolean;
}

/**
 * Hash of a canonical (sorted) label set: FNV-1a over names and values, two 32-bit lanes
 * folded into 52 bits so it fits a JS number exactly.
 */
export function seriesKey(labels: ReadonlyArray<{ readonly name: string; readonly value: string }>): number {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ labels.length;
  for (let i = 0; i < labels.length; i++) {
    const { name, value } = labels[i]!;
    for (let j = 0; j < name.length; j++) {
      const c = name.charCodeAt(j);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    }
    h1 = Math.imul(h1 ^ 0xff, 0x01000193);
    h2 = Math.imul(h2 ^ 0xfe, 0x5bd1e995);
    for (let j = 0; j < value.length; j++) {
      const c = value.charCodeAt(j);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    }
    h1 = Math.imul(h1 ^ 0xfd, 0x01000193);
    h2 = Math.imul(h2 ^ 0xfc, 0x5bd1e995);
  }
  return (h1 >>> 0) * 0x100000 + ((h2 >>> 0) & 0xfffff);
}

/** A gate on the samples being published at once, so a slow bus cannot grow memory without bound. */
export class InflightGate {
  #inflight = 0;
  constructor(readonly max: number) {}

  get inflight(): number {
    return this.#inflight;
  }

  /** Reserves `n` samples; false when that would exceed the cap (a lone request larger than the cap still passes when nothing else is in flight). */
  tryAcquire(n: number): boolean {
    if (this.#inflight > 0 && this.#inflight + n > this.max) return false;
    this.#inflight += n;
    return true;
  }

  release(n: number): void {
    this.#inflight -= n;
  }
}
