/**
 * Heartbeat settings (the `heartbeat.*` configuration keys) and the interval rules that
 * let operators override the interval agents ask for, per tenant and label selector.
 */
import { compileMatcher, matchesAll, type CompiledMatcher, type Labels } from '../../libs/model/index.js';
import { parseSelector } from '../../libs/promql/index.js';
import type { Config } from '../../libs/runtime/config.js';
import { InvalidArgumentError } from '../../libs/runtime/errors.js';

/** The `heartbeat.*` configuration. */
export type HeartbeatConfig = Config['heartbeat'];

/** Shortest and longest heartbeat interval the service hands out, ms. */
export const MIN_INTERVAL_MS = 1000;
/** See {@link MIN_INTERVAL_MS}. */
export const MAX_INTERVAL_MS = 60_000;

/** One parsed interval rule: a tenant (or every tenant) plus label matchers → an interval. */
export interface IntervalRule {
  /** Tenant id, or `*` for every tenant. */
  readonly tenant: string;
  readonly matchers: readonly CompiledMatcher[];
  readonly intervalMs: number;
  /** The rule as written, for logs. */
  readonly text: string;
}

const RULE = /^([A-Za-z0-9_-]{1,64}|\*)\s*(\{.*\})?\s*=\s*(\d+(?:\.\d+)?)$/s;

/**
 * Parses `heartbeat.intervalRules`: `<tenant|*>[{matchers}]=<seconds>` separated by `;`.
 * @throws InvalidArgumentError naming the rule and the limit.
 */
export function parseIntervalRules(text: string): IntervalRule[] {
  const rules: IntervalRule[] = [];
  for (const [i, raw] of text.split(';').entries()) {
    const part = raw.trim();
    if (part === '') continue;
    const field = `heartbeat.intervalRules[${i}]`;
    const m = RULE.exec(part);
    if (!m) {
      const description = `${JSON.stringify(part)} is not <tenant|*>[{matchers}]=<seconds>`;
      throw new InvalidArgumentError(`${field}: ${description}`, [{ field, description }]);
    }
    const intervalMs = Math.round(Number(m[3]) * 1000);
    if (intervalMs < MIN_INTERVAL_MS || intervalMs > MAX_INTERVAL_MS) {
      const description = `interval ${m[3]} s is outside 1–60 s`;
      throw new InvalidArgumentError(`${field}: ${description}`, [{ field, description }]);
    }
    let matchers: CompiledMatcher[] = [];
    if (m[2] !== undefined) {
      try {
        matchers = parseSelector(m[2]).map(compileMatcher);
      } catch (err) {
        const description = `bad selector ${m[2]}: ${err instanceof Error ? err.message : String(err)}`;
        throw new InvalidArgumentError(`${field}: ${description}`, [{ field, description }]);
      }
    }
    rules.push({ tenant: m[1]!, matchers, intervalMs, text: part });
  }
  return rules;
}

/**
 * The interval an agent gets: the first matching rule, else what the agent asked for
 * (0 = no wish), else the default.
 */
export function resolveInterval(rules: readonly IntervalRule[], tenant: string, labels: Labels, requestedMs: number, defaultMs: number): number {
  for (const r of rules) {
    if ((r.tenant === '*' || r.tenant === tenant) && matchesAll(labels, r.matchers)) return r.intervalMs;
  }
  return requestedMs > 0 ? requestedMs : defaultMs;
}
