/** The label that carries the metric name, as in Prometheus. */
export const METRIC_NAME_LABEL = '__name__';

/** One label: name and value. */
export interface Label {
  readonly name: string;
  readonly value: string;
}

/**
 * A label set sorted by name with no empty values: the canonical identity of a series.
 * Two series are the same series exactly when their sorted label sets are equal.
 */
export type Labels = readonly Label[];

const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** True when `name` is a valid Prometheus metric name. */
export function isValidMetricName(name: string): boolean {
  return METRIC_NAME_RE.test(name);
}

/** True when `name` is a valid Prometheus label name (names starting `__` are reserved but valid). */
export function isValidLabelName(name: string): boolean {
  return LABEL_NAME_RE.test(name);
}

/**
 * Returns the canonical form of a label set: empty values dropped (Prometheus treats an
 * empty value as an absent label), sorted by name. Duplicate names are left in place for
 * the validator to report; this function never throws.
 */
export function canonicalLabels(labels: Iterable<Label>): Label[] {
  const out: Label[] = [];
  for (const l of labels) if (l.value !== '') out.push({ name: l.name, value: l.value });
  out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return out;
}

/** The metric name of a label set, or '' when it has none. */
export function metricName(labels: Labels): string {
  for (const l of labels) if (l.name === METRIC_NAME_LABEL) return l.value;
  return '';
}

/** Label set as a plain object, for JSON output. */
export function labelsToObject(labels: Labels): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of labels) out[l.name] = l.value;
  return out;
}

/** Plain object to canonical label set. */
export function labelsFromObject(obj: Readonly<Record<string, string>>): Label[] {
  return canonicalLabels(Object.entries(obj).map(([name, value]) => ({ name, value })));
}

/**
 * Prometheus-style text form, e.g. `cpu{host="a",mode="idle"}`. Stable for a canonical
 * label set, so it doubles as a series key.
 */
export function formatLabels(labels: Labels): string {
  const name = metricName(labels);
  const rest = labels
    .filter((l) => l.name !== METRIC_NAME_LABEL)
    .map((l) => `${l.name}=${JSON.stringify(l.value)}`)
    .join(',');
  return rest === '' && name !== '' ? name : `${name}{${rest}}`;
}
