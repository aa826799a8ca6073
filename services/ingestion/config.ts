import type { Config } from '../../libs/runtime/config.js';
import { StartupError } from '../../libs/runtime/errors.js';

/** The limits ingestion applies to every write (the `ingestion.*` configuration keys). */
export type IngestLimits = Config['ingestion'];

/** The limits a tenant override may change. */
export const OVERRIDABLE_LIMITS = [
  'maxSeriesPerRequest',
  'maxSamplesPerRequest',
  'maxLabelsPerSeries',
  'maxLabelNameLength',
  'maxLabelValueLength',
  'maxSampleAgeMs',
  'maxFutureMs',
  'ratePerSecond',
  'burstSamples',
  'maxActiveSeries',
] as const;

type Overridable = (typeof OVERRIDABLE_LIMITS)[number];

/** Limits that must stay at least 1 (0 would refuse everything rather than mean "unlimited"). */
const AT_LEAST_ONE = new Set<Overridable>(['maxSeriesPerRequest', 'maxSamplesPerRequest', 'maxLabelsPerSeries', 'maxLabelNameLength', 'maxLabelValueLength', 'burstSamples']);

/**
 * Parses `ingestion.tenantOverrides` (`acme:ratePerSecond=5000,maxActiveSeries=100; b:…`)
 * into per-tenant limits. Throws {@link StartupError} naming the setting and the bad part.
 */
export function parseTenantOverrides(limits: IngestLimits): Map<string, IngestLimits> {
  const out = new Map<string, IngestLimits>();
  const setting = 'ingestion.tenantOverrides';
  for (const raw of limits.tenantOverrides.split(';')) {
    const rule = raw.trim();
    if (rule === '') continue;
    const colon = rule.indexOf(':');
    const tenant = colon > 0 ? rule.slice(0, colon).trim() : '';
    if (tenant === '') throw new StartupError(`${setting}: ${JSON.stringify(rule)} must look like <tenant>:<key>=<value>,…`, setting);
    const merged: Record<string, unknown> = { ...(out.get(tenant) ?? limits) };
    for (const pair of rule.slice(colon + 1).split(',')) {
      const [k = '', v = ''] = pair.split('=').map((x) => x.trim());
      if (!(OVERRIDABLE_LIMITS as readonly string[]).includes(k)) {
        throw new StartupError(`${setting}: unknown limit ${JSON.stringify(k)} for tenant ${tenant}; known: ${OVERRIDABLE_LIMITS.join(', ')}`, setting);
      }
      const n = Number(v);
      if (v === '' || !Number.isInteger(n) || n < (AT_LEAST_ONE.has(k as Overridable) ? 1 : 0)) {
        throw new StartupError(`${setting}: ${k} of tenant ${tenant} must be a whole number${AT_LEAST_ONE.has(k as Overridable) ? ' of at least 1' : ''}, got ${JSON.stringify(v)}`, setting);
      }
      merged[k] = n;
    }
    out.set(tenant, merged as IngestLimits);
  }
  return out;
}
