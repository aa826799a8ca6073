/**
 * Subject naming for the bus. Every subject carries the tenant right after a fixed,
 * versioned prefix (`telemesh.samples.v1.<tenant>`), so a stream can capture one family
 * with `<prefix>.>` and a consumer can learn the tenant from the subject alone.
 *
 * Tenant and agent ids become subject tokens, so they must never contain `.`, `*`, `>` or
 * whitespace: one stray dot would shift the token positions and misfile a tenant's data.
 * The allowed alphabet is deliberately narrow.
 */
import { InvalidArgumentError } from '../runtime/errors.js';

/** Subject prefix of sample batches (ingestion → aggregation). */
export const SAMPLES_SUBJECT_PREFIX = 'telemesh.samples.v1';
/** Subject prefix of agent lifecycle events (heartbeat → …). */
export const AGENTS_SUBJECT_PREFIX = 'telemesh.agents.v1';
/** Subject prefix of alert events (alerting → notification). */
export const ALERTS_SUBJECT_PREFIX = 'telemesh.alerts.v1';

/** What a tenant id or agent id may look like once it becomes a subject token. */
export const SUBJECT_TOKEN_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Throws {@link InvalidArgumentError} (maps to `invalid_argument`) unless `value` is a
 * subject-safe token. `field` names what was checked ("tenant", "agent_id") so the
 * error tells the caller which value to fix.
 */
export function assertSubjectToken(field: string, value: string): void {
  if (!SUBJECT_TOKEN_PATTERN.test(value)) {
    const description = `must be 1 to 64 characters from [A-Za-z0-9_-] (it becomes a NATS subject token); got ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)}`;
    throw new InvalidArgumentError(`invalid ${field}: ${description}`, [{ field, description }]);
  }
}

/** Subject of a tenant's sample batches: `telemesh.samples.v1.<tenant>`. */
export function samplesSubject(tenant: string): string {
  assertSubjectToken('tenant', tenant);
  return `${SAMPLES_SUBJECT_PREFIX}.${tenant}`;
}

/** Subject of one agent's lifecycle events: `telemesh.agents.v1.<tenant>.<agent>`. */
export function agentsSubject(tenant: string, agentId: string): string {
  assertSubjectToken('tenant', tenant);
  assertSubjectToken('agent_id', agentId);
  return `${AGENTS_SUBJECT_PREFIX}.${tenant}.${agentId}`;
}

/** Subject of a tenant's alert events: `telemesh.alerts.v1.<tenant>`. */
export function alertsSubject(tenant: string): string {
  assertSubjectToken('tenant', tenant);
  return `${ALERTS_SUBJECT_PREFIX}.${tenant}`;
}

/** A subject split into the family prefix and the tenant token that follows it. */
export interface ParsedSubject {
  /** The family prefix, e.g. `telemesh.samples.v1`; low-cardinality, fit for span names. */
  readonly prefix: string;
  /** The tenant token right after the prefix; '' when the subject has none. */
  readonly tenant: string;
}

/**
 * Splits `subject` using the known prefixes. The tenant is the token right after the
 * prefix — not simply the last token, because agent subjects end with the agent id.
 * Unknown subjects fall back to "everything but the last token" as the prefix, which keeps
 * span names low-cardinality for ad-hoc subjects too.
 */
export function parseSubject(subject: string, prefixes: readonly string[] = KNOWN_PREFIXES): ParsedSubject {
  for (const prefix of prefixes) {
    if (subject.startsWith(`${prefix}.`)) {
      const rest = subject.slice(prefix.length + 1);
      const dot = rest.indexOf('.');
      return { prefix, tenant: dot === -1 ? rest : rest.slice(0, dot) };
    }
  }
  const last = subject.lastIndexOf('.');
  return last === -1 ? { prefix: subject, tenant: '' } : { prefix: subject.slice(0, last), tenant: subject.slice(last + 1) };
}

const KNOWN_PREFIXES = [SAMPLES_SUBJECT_PREFIX, AGENTS_SUBJECT_PREFIX, ALERTS_SUBJECT_PREFIX] as const;
