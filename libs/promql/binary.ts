/**
 * Binary operators for one evaluation step, following Prometheus 2.42's
 * `VectorBinop`, `VectorscalarBinop`, `VectorAnd/Or/Unless` and `resultMetric`, with its
 * error messages for ambiguous matches.
 */
import { METRIC_NAME_LABEL } from '../model/index.js';
import type { VectorMatching } from './ast.js';
import { isComparison } from './ast.js';
import { PromqlExecutionError } from './engine-errors.js';
import { LabelSet, keyOn, keyWithout } from './labelset.js';
import { goMod, goPow } from './values.js';
import type { Sample } from './values.js';

/** Operators after which `__name__` is dropped (Prometheus' `shouldDropMetricName`). */
function dropsName(op: string): boolean {
  return op === '+' || op === '-' || op === '*' || op === '/' || op === '%' || op === '^';
}

/** Applies an arithmetic or comparison operator; `keep` is false when a comparison filters the element out. */
export function scalarBinop(op: string, lhs: number, rhs: number): { value: number; keep: boolean } {
  switch (op) {
    case '+':
      return { value: lhs + rhs, keep: true };
    case '-':
      return { value: lhs - rhs, keep: true };
    case '*':
      return { value: lhs * rhs, keep: true };
    case '/':
      return { value: lhs / rhs, keep: true };
    case '%':
      return { value: goMod(lhs, rhs), keep: true };
    case '^':
      return { value: goPow(lhs, rhs), keep: true };
    case 'atan2':
      return { value: Math.atan2(lhs, rhs), keep: true };
    case '==':
      return { value: lhs, keep: lhs === rhs };
    case '!=':
      return { value: lhs, keep: lhs !== rhs };
    case '>':
      return { value: lhs, keep: lhs > rhs };
    case '<':
      return { value: lhs, keep: lhs < rhs };
    case '>=':
      return { value: lhs, keep: lhs >= rhs };
    case '<=':
      return { value: lhs, keep: lhs <= rhs };
    default:
      throw new PromqlExecutionError(`operator ${JSON.stringify(op)} not allowed for scalar operations`);
  }
}

/** scalar op scalar (comparisons carry `bool`, checked at parse time). */
export function scalarScalar(op: string, lhs: number, rhs: number, returnBool: boolean): number {
  const { value, keep } = scalarBinop(op, lhs, rhs);
  if (isComparison(op) && returnBool) return keep ? 1 : 0;
  return value;
}

/** vector op scalar, or scalar op vector when `swap`. */
export function vectorScalar(op: string, vec: readonly Sample[], scalar: number, swap: boolean, returnBool: boolean, t: number): Sample[] {
  const out: Sample[] = [];
  const comparison = isComparison(op);
  const drop = dropsName(op) || returnBool;
  for (const s of vec) {
    const lv = swap ? scalar : s.v;
    const rv = swap ? s.v : scalar;
    let { value, keep } = scalarBinop(op, lv, rv);
    // A comparison keeps the vector element's value even when the vector is on the right.
    if (comparison && swap) value = rv;
    if (returnBool) {
      value = keep ? 1 : 0;
      keep = true;
    }
    if (keep) out.push({ ls: drop ? s.ls.withoutName() : s.ls, v: value, t });
  }
  return out;
}

function signature(m: VectorMatching): (ls: LabelSet) => string {
  return m.on ? (ls) => keyOn(ls, m.labels) : (ls) => keyWithout(ls, m.labels);
}

/** The labels used for matching, as Prometheus prints them in errors. */
function matchedLabels(ls: LabelSet, m: VectorMatching): LabelSet {
  if (m.on) return new LabelSet(ls.labels.filter((l) => m.labels.includes(l.name)));
  return new LabelSet(ls.labels.filter((l) => l.name !== METRIC_NAME_LABEL && !m.labels.includes(l.name)));
}

function resultLabels(lhs: LabelSet, rhs: LabelSet, op: string, m: VectorMatching): LabelSet {
  let labels = lhs.labels.slice();
  if (dropsName(op)) labels = labels.filter((l) => l.name !== METRIC_NAME_LABEL);
  if (m.card === 'one-to-one') {
    labels = m.on ? labels.filter((l) => m.labels.includes(l.name)) : labels.filter((l) => !m.labels.includes(l.name));
  }
  if (m.include.length === 0) return labels.length === lhs.labels.length ? lhs : new LabelSet(labels);
  // Labels named in group_x(...) come from the "one" side.
  labels = labels.filter((l) => !m.include.includes(l.name));
  for (const name of m.include) {
    const v = rhs.get(name);
    if (v !== '') labels.push({ name, value: v });
  }
  return LabelSet.from(labels);
}

/** vector op vector for arithmetic and comparison operators. */
export function vectorVector(op: string, lhsIn: readonly Sample[], rhsIn: readonly Sample[], m: VectorMatching, returnBool: boolean, t: number): Sample[] {
  const sig = signature(m);
  const swapped = m.card === 'one-to-many';
  const lhs = swapped ? rhsIn : lhsIn;
  const rhs = swapped ? lhsIn : rhsIn;
  const rightSigs = new Map<string, Sample>();
  for (const rs of rhs) {
    const k = sig(rs.ls);
    const dup = rightSigs.get(k);
    if (dup !== undefined) {
      const side = swapped ? 'left' : 'right';
      throw new PromqlExecutionError(
        `found duplicate series for the match group ${matchedLabels(rs.ls, m).toString()} on the ${side} hand-side of the operation: ` +
          `[${rs.ls.toString()}, ${dup.ls.toString()}];many-to-many matching not allowed: matching labels must be unique on one side`,
      );
    }
    rightSigs.set(k, rs);
  }
  const matched = new Map<string, Set<string> | null>();
  const out: Sample[] = [];
  for (const ls of lhs) {
    const k = sig(ls.ls);
    const rs = rightSigs.get(k);
    if (rs === undefined) continue;
    const vl = swapped ? rs.v : ls.v;
    const vr = swapped ? ls.v : rs.v;
    const r = scalarBinop(op, vl, vr);
    let value = r.value;
    if (returnBool) {
      value = r.keep ? 1 : 0;
    } else if (!r.keep) continue;
    let metric = resultLabels(ls.ls, rs.ls, op, m);
    if (returnBool) metric = metric.withoutName();
    const inserted = matched.get(k);
    if (m.card === 'one-to-one') {
      if (inserted !== undefined) throw new PromqlExecutionError('multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)');
      matched.set(k, null);
    } else {
      let set = inserted ?? null;
      if (set === null) {
        set = new Set();
        matched.set(k, set);
      } else if (set.has(metric.key)) {
        throw new PromqlExecutionError('multiple matches for labels: grouping labels must ensure unique matches');
      }
      set.add(metric.key);
    }
    out.push({ ls: metric, v: value, t });
  }
  return out;
}

/** `and`, `or`, `unless`. */
export function setOperation(op: string, lhs: readonly Sample[], rhs: readonly Sample[], m: VectorMatching, t: number): Sample[] {
  const sig = signature(m);
  switch (op) {
    case 'and': {
      const right = new Set(rhs.map((s) => sig(s.ls)));
      return lhs.filter((s) => right.has(sig(s.ls))).map((s) => ({ ls: s.ls, v: s.v, t }));
    }
    case 'unless': {
      const right = new Set(rhs.map((s) => sig(s.ls)));
      return lhs.filter((s) => !right.has(sig(s.ls))).map((s) => ({ ls: s.ls, v: s.v, t }));
    }
    default: {
      const left = new Set(lhs.map((s) => sig(s.ls)));
      const out = lhs.map((s) => ({ ls: s.ls, v: s.v, t }));
      for (const s of rhs) if (!left.has(sig(s.ls))) out.push({ ls: s.ls, v: s.v, t });
      return out;
    }
  }
}
