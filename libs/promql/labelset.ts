/**
 * Label sets as the engine passes them around: sorted labels with a cached identity key,
 * so a series selected once keeps the same object across every evaluation step and
 * grouping or matching costs one map lookup, not a rebuild.
 */
import { METRIC_NAME_LABEL } from '../model/index.js';
import type { Label } from '../model/index.js';

/** An immutable, name-sorted label set with cached derived forms. */
export class LabelSet {
  private cachedKey: string | undefined;
  private cachedWithoutName: LabelSet | undefined;

  /** @param labels Sorted by name, no empty values. */
  constructor(readonly labels: readonly Label[]) {}

  /** The empty label set. */
  static readonly EMPTY = new LabelSet([]);

  /** Builds a label set from unsorted labels, dropping empty values. */
  static from(labels: Iterable<Label>): LabelSet {
    const out: Label[] = [];
    for (const l of labels) if (l.value !== '') out.push(l);
    out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return new LabelSet(out);
  }

  /** A string equal for equal label sets and different otherwise. */
  get key(): string {
    if (this.cachedKey === undefined) {
      let k = '';
      for (const l of this.labels) k += `${l.name}\u0000${l.value}\u0001`;
      this.cachedKey = k;
    }
    return this.cachedKey;
  }

  /** The value of a label, '' when absent. */
  get(name: string): string {
    for (const l of this.labels) if (l.name === name) return l.value;
    return '';
  }

  /** This set without `__name__` (cached: functions and arithmetic ask every step). */
  withoutName(): LabelSet {
    if (this.cachedWithoutName === undefined) {
      this.cachedWithoutName = this.labels.some((l) => l.name === METRIC_NAME_LABEL)
        ? new LabelSet(this.labels.filter((l) => l.name !== METRIC_NAME_LABEL))
        : this;
    }
    return this.cachedWithoutName;
  }

  /** A copy with `name` set to `value` (removed when `value` is ''). */
  with(name: string, value: string): LabelSet {
    const rest = this.labels.filter((l) => l.name !== name);
    if (value !== '') rest.push({ name, value });
    return LabelSet.from(rest);
  }

  /** Prometheus 2's `labels.Labels.String()`: `{a="1", b="2"}`, used in error messages. */
  toString(): string {
    return `{${this.labels.map((l) => `${l.name}=${JSON.stringify(l.value)}`).join(', ')}}`;
  }
}

/** A key over only the named labels (missing ones count as ''), as for `on(...)` and `by(...)`. */
export function keyOn(ls: LabelSet, names: readonly string[]): string {
  let k = '';
  for (const n of names) k += `${n}\u0000${ls.get(n)}\u0001`;
  return k;
}

/** A key over all labels except the named ones and `__name__`, as for `ignoring(...)` and `without(...)`. */
export function keyWithout(ls: LabelSet, names: readonly string[]): string {
  let k = '';
  for (const l of ls.labels) {
    if (l.name === METRIC_NAME_LABEL || names.includes(l.name)) continue;
    k += `${l.name}\u0000${l.value}\u0001`;
  }
  return k;
}
