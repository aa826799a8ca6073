/**
 * PromQL aggregation operators for one evaluation step, following Prometheus 2.42's
 * `aggregation` (incremental mean for avg, Welford for stddev/stdvar, plain sum, groups
 * in order of first appearance, topk/bottomk keeping whole series labels).
 */
import { METRIC_NAME_LABEL } from '../model/index.js';
import type { Label } from '../model/index.js';
import type { AggregateNode } from './ast.js';
import { LabelSet, keyOn, keyWithout } from './labelset.js';
import { formatFloatF, quantile } from './values.js';
import type { Sample } from './values.js';

/** One group's running state within one step. */
export interface Group {
  readonly ls: LabelSet;
  value: number;
  mean: number;
  count: number;
  values: number[];
  members: Sample[];
}

/** Per-aggregation cache of a series' group key and output labels, reused across steps. */
export type GroupCache = Map<LabelSet, { key: string; ls: LabelSet }>;

/** A series' group key and output labels under `node`'s grouping (cached per series). */
export function groupOf(node: AggregateNode, ls: LabelSet, cache: GroupCache): { key: string; ls: LabelSet } {
  let g = cache.get(ls);
  if (g === undefined) {
    if (node.without) {
      const labels = ls.labels.filter((l) => l.name !== METRIC_NAME_LABEL && !node.grouping.includes(l.name));
      g = { key: keyWithout(ls, node.grouping), ls: new LabelSet(labels) };
    } else {
      const labels: Label[] = ls.labels.filter((l) => node.grouping.includes(l.name));
      g = { key: keyOn(ls, node.grouping), ls: new LabelSet(labels) };
    }
    // Only series objects that live across steps are worth remembering.
    if (cache.size < 100_000) cache.set(ls, g);
  }
  return g;
}

/**
 * Aggregates one step's vector.
 *
 * @param param The evaluated parameter: k for topk/bottomk, φ for quantile, the label for count_values.
 */
export function aggregate(node: AggregateNode, input: readonly Sample[], param: number | string | undefined, t: number, cache: GroupCache): Sample[] {
  const op = node.op;
  if (op === 'count_values') return countValues(node, input, String(param), t);
  let k = 0;
  if (op === 'topk' || op === 'bottomk') {
    k = Math.trunc(Number(param));
    if (!(k >= 1)) return [];
  }
  const groups = new Map<string, Group>();
  for (const s of input) {
    const gi = groupOf(node, s.ls, cache);
    const g = groups.get(gi.key);
    if (g === undefined) groups.set(gi.key, newGroup(op, gi.ls, s));
    else addToGroup(op, g, s);
  }
  const out: Sample[] = [];
  for (const g of groups.values()) finishGroup(op, g, param, k, t, out);
  return out;
}

/** Aggregations whose groups keep no members or values: each step's result is a number per group. */
export const NUMERIC_AGGREGATIONS: ReadonlySet<string> = new Set(['sum', 'avg', 'min', 'max', 'count', 'group', 'stddev', 'stdvar']);

/** A group's state after its first member `s`. */
export function newGroup(op: string, ls: LabelSet, s: Sample): Group {
  const g: Group = { ls, value: s.v, mean: s.v, count: 1, values: [s.v], members: [s] };
  if (op === 'stddev' || op === 'stdvar') g.value = 0;
  return g;
}

/** Adds a further member to a group, with Prometheus' arithmetic for `op`. */
export function addToGroup(op: string, g: Group, s: Sample): void {
  g.count++;
  switch (op) {
    case 'sum':
      g.value += s.v;
      break;
    case 'avg': {
      const meanInf = !Number.isFinite(g.mean) && !Number.isNaN(g.mean);
      const vInf = !Number.isFinite(s.v) && !Number.isNaN(s.v);
      // Keep an infinite mean unless a NaN or the opposite infinity arrives
      // (the incremental step would compute Inf - Inf).
      if (meanInf && ((vInf && g.mean > 0 === s.v > 0) || (!vInf && !Number.isNaN(s.v)))) break;
      g.mean += s.v / g.count - g.mean / g.count;
      break;
    }
    case 'max':
      if (g.value < s.v || Number.isNaN(g.value)) g.value = s.v;
      break;
    case 'min':
      if (g.value > s.v || Number.isNaN(g.value)) g.value = s.v;
      break;
    case 'stddev':
    case 'stdvar': {
      const delta = s.v - g.mean;
      g.mean += delta / g.count;
      g.value += delta * (s.v - g.mean);
      break;
    }
    case 'quantile':
      g.values.push(s.v);
      break;
    case 'topk':
    case 'bottomk':
      g.members.push(s);
      break;
    default:
      break;
  }
}

/** The value of a group of one of {@link NUMERIC_AGGREGATIONS}. */
export function groupValue(op: string, g: Group): number {
  switch (op) {
    case 'avg':
      return g.mean;
    case 'count':
      return g.count;
    case 'group':
      return 1;
    case 'stdvar':
      return g.value / g.count;
    case 'stddev':
      return Math.sqrt(g.value / g.count);
    default:
      return g.value;
  }
}

/** Appends a finished group's output samples. */
function finishGroup(op: string, g: Group, param: number | string | undefined, k: number, t: number, out: Sample[]): void {
  switch (op) {
    case 'sum':
    case 'min':
    case 'max':
    case 'avg':
    case 'count':
    case 'group':
    case 'stdvar':
    case 'stddev':
      out.push({ ls: g.ls, v: groupValue(op, g), t });
      break;
    case 'quantile':
      out.push({ ls: g.ls, v: quantile(Number(param), g.values), t });
      break;
    case 'topk':
    case 'bottomk': {
      const top = op === 'topk';
      // Keep the best k in order by insertion: k is small next to the group, and a
      // full sort per step would dominate range queries.
      const chosen: Sample[] = [];
      for (const s of g.members) {
        if (chosen.length === k) {
          const last = chosen[k - 1];
          if (last === undefined || rankCompare(top, s.v, last.v) >= 0) continue;
          chosen.pop();
        }
        let i = chosen.length;
        while (i > 0 && rankCompare(top, s.v, (chosen[i - 1] as Sample).v) < 0) i--;
        chosen.splice(i, 0, s);
      }
      for (const s of chosen) out.push({ ls: s.ls, v: s.v, t });
      break;
    }
    default:
      break;
  }
}

/**
 * topk/bottomk order of two values: negative when `a` is wanted before `b`. NaN is the
 * least wanted value for both; equal values compare 0 (ties keep the earlier series).
 */
export function rankCompare(top: boolean, a: number, b: number): number {
  if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
  if (Number.isNaN(b)) return -1;
  return top ? b - a : a - b;
}

function countValues(node: AggregateNode, input: readonly Sample[], label: string, t: number): Sample[] {
  const groups = new Map<string, { ls: LabelSet; count: number }>();
  for (const s of input) {
    const withValue = s.ls.with(label, formatFloatF(s.v));
    let labels: Label[];
    if (node.without) labels = withValue.labels.filter((l) => l.name !== METRIC_NAME_LABEL && !node.grouping.includes(l.name));
    else labels = withValue.labels.filter((l) => l.name === label || node.grouping.includes(l.name));
    const ls = new LabelSet(labels);
    const g = groups.get(ls.key);
    if (g === undefined) groups.set(ls.key, { ls, count: 1 });
    else g.count++;
  }
  return [...groups.values()].map((g) => ({ ls: g.ls, v: g.count, t }));
}
