/**
 * The PromQL expression tree the engine evaluates, built from the lezer syntax tree of
 * `@prometheus-io/lezer-promql` (via parse.ts). The conversion applies the parse-time
 * rules Prometheus enforces in its `checkAST` (value types of operands and arguments,
 * argument counts, `bool` only on comparisons, …), so evaluation never meets an
 * ill-typed tree. Every such problem is a {@link PromqlSyntaxError}, as Prometheus
 * reports them as `bad_data` parse errors.
 */
import type { SyntaxNode } from '@lezer/common';
import {
  AggregateExpr,
  AggregateModifier,
  AggregateOp,
  AtModifierPreprocessors,
  BinaryExpr,
  BoolModifier,
  By,
  FillModifier,
  FunctionCall,
  FunctionCallBody,
  FunctionIdentifier,
  GroupLeft,
  GroupRight,
  GroupingLabels,
  Ignoring,
  LabelName,
  MatchingModifierClause,
  MatrixSelector,
  NumberDurationLiteral,
  NumberDurationLiteralInDurationContext,
  OffsetDurationExpr,
  OffsetExpr,
  On,
  ParenExpr,
  StepInvariantExpr,
  StringLiteral,
  SubqueryExpr,
  UnaryExpr,
  UnaryOp,
  VectorSelector,
  Without,
  parser,
} from '@prometheus-io/lezer-promql';
import { compileMatcher } from '../model/index.js';
import type { CompiledMatcher, Matcher } from '../model/index.js';
import { PromqlSyntaxError } from './errors.js';
import { FUNCTIONS } from './function-table.js';
import type { ArgType } from './function-table.js';
import { childOfType, describeExpr, namedChildren, nodeText, parseExpr } from './parse.js';
import { readVectorSelector, selectorMatchers } from './selector.js';
import { unquoteString } from './strings.js';

/** The four PromQL value types. */
export type ValueType = 'scalar' | 'string' | 'vector' | 'matrix';

/** An `@` modifier: a fixed time in ms, or the query's start / end. */
export type AtModifier = number | 'start' | 'end';

interface Base {
  /** True when the value does not depend on the evaluation time (Prometheus' step invariance). */
  readonly invariant: boolean;
}

/** A number literal. */
export interface NumberNode extends Base {
  readonly kind: 'number';
  readonly value: number;
}
/** A string literal. */
export interface StringNode extends Base {
  readonly kind: 'string';
  readonly value: string;
}
/** An instant vector selector. `id` indexes the data fetched for it. */
export interface SelectorNode extends Base {
  readonly kind: 'selector';
  readonly id: number;
  readonly matchers: readonly Matcher[];
  readonly compiled: readonly CompiledMatcher[];
  offsetMs: number;
  at: AtModifier | undefined;
}
/** A range vector selector `sel[range]`. */
export interface MatrixNode extends Base {
  readonly kind: 'matrix';
  readonly selector: SelectorNode;
  readonly rangeMs: number;
}
/** A subquery `expr[range:step]`. */
export interface SubqueryNode extends Base {
  readonly kind: 'subquery';
  readonly id: number;
  readonly expr: Expr;
  readonly rangeMs: number;
  readonly stepMs: number | undefined;
  offsetMs: number;
  at: AtModifier | undefined;
}
/** A function call. */
export interface CallNode extends Base {
  readonly kind: 'call';
  readonly name: string;
  readonly args: readonly Expr[];
}
/** An aggregation such as `sum by (job) (x)`. */
export interface AggregateNode extends Base {
  readonly kind: 'aggregate';
  readonly op: string;
  readonly param: Expr | undefined;
  readonly expr: Expr;
  readonly grouping: readonly string[];
  readonly without: boolean;
}
/** How two vectors are matched in a binary operation. */
export interface VectorMatching {
  readonly card: 'one-to-one' | 'many-to-one' | 'one-to-many' | 'many-to-many';
  /** True for `on(...)`, false for `ignoring(...)` or no modifier. */
  readonly on: boolean;
  readonly labels: readonly string[];
  /** Extra labels of `group_left(...)` / `group_right(...)`. */
  readonly include: readonly string[];
}
/** A binary operation. */
export interface BinaryNode extends Base {
  readonly kind: 'binary';
  readonly op: string;
  readonly lhs: Expr;
  readonly rhs: Expr;
  readonly returnBool: boolean;
  /** Present only when both sides are instant vectors. */
  readonly matching: VectorMatching | undefined;
}
/** Unary minus or plus. */
export interface UnaryNode extends Base {
  readonly kind: 'unary';
  readonly op: '-' | '+';
  readonly expr: Expr;
}
/** A parenthesized expression (kept: `timestamp((x))` is not `timestamp(x)` in Prometheus 2). */
export interface ParenNode extends Base {
  readonly kind: 'paren';
  readonly expr: Expr;
}

/** Any expression. */
export type Expr = NumberNode | StringNode | SelectorNode | MatrixNode | SubqueryNode | CallNode | AggregateNode | BinaryNode | UnaryNode | ParenNode;

const ARITHMETIC = new Set(['+', '-', '*', '/', '%', '^', 'atan2']);
const COMPARISON = new Set(['==', '!=', '>', '<', '>=', '<=']);
const SET_OPS = new Set(['and', 'or', 'unless']);

/** True for `== != > < >= <=`. */
export function isComparison(op: string): boolean {
  return COMPARISON.has(op);
}

/** True for `and or unless`. */
export function isSetOperator(op: string): boolean {
  return SET_OPS.has(op);
}

/** The static value type of an expression. */
export function typeOf(e: Expr): ValueType {
  switch (e.kind) {
    case 'number':
      return 'scalar';
    case 'string':
      return 'string';
    case 'selector':
      return 'vector';
    case 'matrix':
    case 'subquery':
      return 'matrix';
    case 'call':
      return FUNCTIONS.get(e.name)?.returns ?? 'vector';
    case 'aggregate':
      return 'vector';
    case 'binary':
      return typeOf(e.lhs) === 'scalar' && typeOf(e.rhs) === 'scalar' ? 'scalar' : 'vector';
    case 'unary':
    case 'paren':
      return typeOf(e.expr);
  }
}

/** Prometheus' names for value types in error messages. */
export function documentedType(t: ValueType | ArgType): string {
  switch (t) {
    case 'vector':
      return 'instant vector';
    case 'matrix':
      return 'range vector';
    default:
      return t;
  }
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
  y: 31_536_000_000,
};

/**
 * Reads a duration such as `1h30m` (units ms s m h d w y, largest first, each at most
 * once) or a plain number of seconds, as milliseconds; undefined when it is neither.
 */
export function parseDurationMs(text: string): number | undefined {
  if (/^\d+(?:\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const re = /(\d+)(ms|s|m|h|d|w|y)/gy;
  let total = 0;
  let last = Infinity;
  let pos = 0;
  const order = ['y', 'w', 'd', 'h', 'm', 's', 'ms'];
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const unit = m[2] ?? '';
    const rank = order.indexOf(unit);
    if (rank <= (last === Infinity ? -1 : last)) return undefined;
    last = rank;
    total += Number(m[1]) * (DURATION_UNITS[unit] ?? 0);
    pos = re.lastIndex;
  }
  return pos === text.length && pos > 0 ? total : undefined;
}

/**
 * Reads a PromQL number literal the way Prometheus' lexer does: Go's `ParseInt(s, 0, 64)`
 * first (so `0x1F`, `0o17`, `017` and `0b101` are integers), then `ParseFloat` (decimal,
 * exponent, `Inf`, `NaN` in any case), then a duration (seconds, as in Prometheus 3).
 */
export function parseNumberLiteral(text: string): number | undefined {
  let sign = 1;
  let s = text;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s.startsWith('-')) sign = -1;
    s = s.slice(1);
  }
  const lower = s.toLowerCase().replaceAll('_', '');
  let v: number | undefined;
  if (/^0x[0-9a-f]+$/.test(lower)) v = parseInt(lower.slice(2), 16);
  else if (/^0o[0-7]+$/.test(lower)) v = parseInt(lower.slice(2), 8);
  else if (/^0b[01]+$/.test(lower)) v = parseInt(lower.slice(2), 2);
  else if (/^0[0-7]+$/.test(lower)) v = parseInt(lower.slice(1), 8);
  else if (lower === 'inf' || lower === 'infinity') v = Infinity;
  else if (lower === 'nan') v = NaN;
  else if (/^(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/.test(lower)) v = Number(lower);
  else {
    const d = parseDurationMs(s);
    if (d !== undefined) v = d / 1000;
  }
  return v === undefined ? undefined : sign * v;
}

/** Converts lezer trees into {@link Expr} trees for one query text. */
class Converter {
  private nextSelector = 0;
  private nextSubquery = 0;
  constructor(private readonly input: string) {}

  /** How many selectors and subqueries the tree holds (their ids are 0…n-1). */
  counts(): { selectors: number; subqueries: number } {
    return { selectors: this.nextSelector, subqueries: this.nextSubquery };
  }

  private fail(reason: string, node: SyntaxNode | number): never {
    throw new PromqlSyntaxError(reason, typeof node === 'number' ? node : node.from, this.input);
  }

  convert(node: SyntaxNode): Expr {
    switch (node.type.id) {
      case NumberDurationLiteral:
        return this.number(node);
      case StringLiteral:
        return { kind: 'string', value: unquoteString(nodeText(this.input, node), node.from, this.input), invariant: true };
      case VectorSelector: {
        const matchers = selectorMatchers(this.input, readVectorSelector(this.input, node));
        return { kind: 'selector', id: this.nextSelector++, matchers, compiled: matchers.map(compileMatcher), offsetMs: 0, at: undefined, invariant: false };
      }
      case MatrixSelector:
        return this.matrix(node);
      case SubqueryExpr:
        return this.subquery(node);
      case OffsetExpr:
        return this.offset(node);
      case StepInvariantExpr:
        return this.at(node);
      case ParenExpr: {
        const inner = this.convert(this.onlyExpr(node));
        return { kind: 'paren', expr: inner, invariant: inner.invariant };
      }
      case UnaryExpr:
        return this.unary(node);
      case BinaryExpr:
        return this.binary(node);
      case FunctionCall:
        return this.call(node);
      case AggregateExpr:
        return this.aggregate(node);
      default:
        return this.fail(`${describeExpr(node)} is not supported`, node);
    }
  }

  private onlyExpr(node: SyntaxNode): SyntaxNode {
    const kids = namedChildren(node);
    const first = kids[0];
    if (first === undefined) return this.fail('empty expression', node);
    return first;
  }

  private number(node: SyntaxNode): Expr {
    const text = nodeText(this.input, node);
    const value = parseNumberLiteral(text);
    if (value === undefined) return this.fail(`bad number or duration syntax: ${JSON.stringify(text)}`, node);
    return { kind: 'number', value, invariant: true };
  }

  private duration(node: SyntaxNode | null, what: string, at: SyntaxNode): number {
    if (node === null) return this.fail(`missing ${what}`, at);
    const lit = node.type.id === NumberDurationLiteralInDurationContext ? node : childOfType(node, NumberDurationLiteralInDurationContext);
    const kids = namedChildren(node);
    if (lit === null || (node !== lit && kids.length !== 1)) return this.fail(`only a plain duration is supported for ${what}`, node);
    const ms = parseDurationMs(nodeText(this.input, lit));
    if (ms === undefined) return this.fail(`bad duration syntax: ${JSON.stringify(nodeText(this.input, lit))}`, lit);
    return ms;
  }

  private matrix(node: SyntaxNode): Expr {
    const [inner, dur] = namedChildren(node);
    if (inner === undefined || inner.type.id !== VectorSelector) {
      return this.fail('ranges only allowed for vector selectors', inner ?? node);
    }
    const sel = this.convert(inner) as SelectorNode;
    const rangeMs = this.duration(dur ?? null, 'range', node);
    if (rangeMs <= 0) return this.fail(`range must be positive, got ${nodeText(this.input, dur ?? node)}`, dur ?? node);
    return { kind: 'matrix', selector: sel, rangeMs, invariant: false };
  }

  private subquery(node: SyntaxNode): Expr {
    const kids = namedChildren(node);
    const [inner, range, step] = kids;
    if (inner === undefined) return this.fail('missing subquery expression', node);
    const expr = this.convert(inner);
    const t = typeOf(expr);
    if (t !== 'vector') return this.fail(`subquery is only allowed on instant vector, got ${documentedType(t)} instead`, inner);
    const rangeMs = this.duration(range ?? null, 'subquery range', node);
    const stepMs = step === undefined ? undefined : this.duration(step, 'subquery step', node);
    if (stepMs !== undefined && stepMs <= 0) return this.fail('subquery step must be positive', step ?? node);
    return { kind: 'subquery', id: this.nextSubquery++, expr, rangeMs, stepMs, offsetMs: 0, at: undefined, invariant: false };
  }

  /** The selector or subquery an offset / @ applies to, or a Prometheus-worded error. */
  private modifiable(e: Expr, node: SyntaxNode, what: string): SelectorNode | SubqueryNode {
    if (e.kind === 'selector' || e.kind === 'subquery') return e;
    if (e.kind === 'matrix') return e.selector;
    return this.fail(`${what} modifier must be preceded by an instant vector selector or range vector selector or a subquery`, node);
  }

  private offset(node: SyntaxNode): Expr {
    const [inner] = namedChildren(node);
    if (inner === undefined) return this.fail('missing expression before offset', node);
    const e = this.convert(inner);
    const target = this.modifiable(e, node, 'offset');
    if (target.offsetMs !== 0) return this.fail('offset may not be set multiple times', node);
    let durNode = childOfType(node, OffsetDurationExpr);
    let sign = 1;
    while (durNode !== null && childOfType(durNode, UnaryOp) !== null) {
      const op = childOfType(durNode, UnaryOp);
      if (op !== null && nodeText(this.input, op) === '-') sign = -sign;
      durNode = childOfType(durNode, OffsetDurationExpr);
    }
    target.offsetMs = sign * this.duration(durNode, 'offset', node);
    return e;
  }

  private at(node: SyntaxNode): Expr {
    const [inner] = namedChildren(node);
    if (inner === undefined) return this.fail('missing expression before @', node);
    const e = this.convert(inner);
    const target = this.modifiable(e, node, '@');
    if (target.at !== undefined) return this.fail('@ <timestamp> may not be set multiple times', node);
    const pre = childOfType(node, AtModifierPreprocessors);
    if (pre !== null) {
      target.at = nodeText(this.input, pre) === 'start' ? 'start' : 'end';
    } else {
      const num = childOfType(node, NumberDurationLiteral);
      const v = num === null ? undefined : parseNumberLiteral(nodeText(this.input, num));
      if (v === undefined || !Number.isFinite(v)) return this.fail('timestamp out of bounds for @ modifier', num ?? node);
      target.at = Math.round(v * 1000);
    }
    // Mark the modified node (and a matrix around a selector) step-invariant.
    (target as { invariant: boolean }).invariant = true;
    if (e.kind === 'matrix') (e as { invariant: boolean }).invariant = true;
    return e;
  }

  private unary(node: SyntaxNode): Expr {
    const opNode = childOfType(node, UnaryOp);
    const kids = namedChildren(node).filter((k) => k.type.id !== UnaryOp);
    const inner = kids[0];
    if (opNode === null || inner === undefined) return this.fail('incomplete unary expression', node);
    const e = this.convert(inner);
    const t = typeOf(e);
    if (t !== 'scalar' && t !== 'vector') return this.fail('unary expression only allowed on expressions of type scalar or instant vector', node);
    const op = nodeText(this.input, opNode) === '-' ? '-' : '+';
    if (e.kind === 'number') return { kind: 'number', value: op === '-' ? -e.value : e.value, invariant: true };
    return { kind: 'unary', op, expr: e, invariant: e.invariant };
  }

  private binary(node: SyntaxNode): Expr {
    const kids = namedChildren(node);
    const lhsNode = kids[0];
    const rhsNode = kids[kids.length - 1];
    const opNode = kids[1];
    if (lhsNode === undefined || rhsNode === undefined || opNode === undefined || kids.length < 3) return this.fail('incomplete binary expression', node);
    const op = nodeText(this.input, opNode).toLowerCase();
    let lhs = this.convert(lhsNode);
    const rhs = this.convert(rhsNode);
    // The grammar folds a sign into a number literal, but in PromQL `-1 ^ 2` is -(1 ^ 2):
    // unary minus binds looser than `^`.
    let negate = false;
    if (op === '^' && lhsNode.type.id === NumberDurationLiteral && /^[-+]/.test(nodeText(this.input, lhsNode)) && lhs.kind === 'number') {
      negate = nodeText(this.input, lhsNode).startsWith('-');
      lhs = { kind: 'number', value: Math.abs(lhs.value), invariant: true };
    }
    const fill = childOfType(node, FillModifier);
    // Prometheus 3's experimental fill() modifiers change which elements match; refuse
    // them rather than silently evaluate without.
    if (fill !== null) return this.fail(`${nodeText(this.input, fill)} modifiers are not supported`, fill);
    const returnBool = childOfType(node, BoolModifier) !== null;
    const lt = typeOf(lhs);
    const rt = typeOf(rhs);
    if (returnBool && !isComparison(op)) return this.fail('bool modifier can only be used on comparison operators', node);
    if ((lt !== 'scalar' && lt !== 'vector') || (rt !== 'scalar' && rt !== 'vector')) {
      return this.fail('binary expression must contain only scalar and instant vector types', node);
    }
    if (isComparison(op) && !returnBool && lt === 'scalar' && rt === 'scalar') {
      return this.fail('comparisons between scalars must use BOOL modifier', node);
    }
    if (isSetOperator(op) && (lt === 'scalar' || rt === 'scalar')) {
      return this.fail(`set operator ${JSON.stringify(op)} not allowed in binary scalar expression`, node);
    }
    const clause = childOfType(node, MatchingModifierClause);
    let matching: VectorMatching | undefined;
    if (clause !== null) {
      const groups = namedChildren(clause).filter((c) => c.type.id === GroupingLabels);
      const on = childOfType(clause, On) !== null;
      const ignoring = childOfType(clause, Ignoring) !== null;
      const left = childOfType(clause, GroupLeft) !== null;
      const right = childOfType(clause, GroupRight) !== null;
      const labelsOf = (g: SyntaxNode | undefined): string[] => (g === undefined ? [] : namedChildren(g).filter((c) => c.type.id === LabelName).map((c) => nodeText(this.input, c)));
      const matchLabels = on || ignoring ? labelsOf(groups[0]) : [];
      const include = left || right ? labelsOf(on || ignoring ? groups[1] : groups[0]) : [];
      if ((left || right) && isSetOperator(op)) return this.fail(`no grouping allowed for ${JSON.stringify(op)} operation`, clause);
      if (on) {
        for (const l of include) if (matchLabels.includes(l)) return this.fail(`label ${JSON.stringify(l)} must not occur in ON and GROUP clause at once`, clause);
      }
      if ((lt !== 'vector' || rt !== 'vector') && matchLabels.length > 0) {
        return this.fail('vector matching only allowed between instant vectors', clause);
      }
      matching = { card: left ? 'many-to-one' : right ? 'one-to-many' : 'one-to-one', on, labels: matchLabels, include };
    }
    if (lt === 'vector' && rt === 'vector') {
      matching ??= { card: 'one-to-one', on: false, labels: [], include: [] };
      if (isSetOperator(op)) matching = { ...matching, card: 'many-to-many' };
    } else {
      matching = undefined;
    }
    if (!ARITHMETIC.has(op) && !COMPARISON.has(op) && !SET_OPS.has(op)) return this.fail(`unknown binary operator ${JSON.stringify(op)}`, opNode);
    const bin: Expr = { kind: 'binary', op, lhs, rhs, returnBool, matching, invariant: lhs.invariant && rhs.invariant };
    return negate ? { kind: 'unary', op: '-', expr: bin, invariant: bin.invariant } : bin;
  }

  private call(node: SyntaxNode): Expr {
    const ident = childOfType(node, FunctionIdentifier);
    const body = childOfType(node, FunctionCallBody);
    if (ident === null || body === null) return this.fail('incomplete function call', node);
    const name = nodeText(this.input, ident);
    const fn = FUNCTIONS.get(name);
    if (fn === undefined) return this.fail(`function ${JSON.stringify(name)} is not supported`, ident);
    const argNodes = namedChildren(body);
    const args = argNodes.map((a) => this.convert(a));
    const min = fn.args.length - (fn.optional ?? 0);
    const max = fn.variadic ? Infinity : fn.args.length;
    if (args.length < min || args.length > max) {
      const expected = fn.variadic || (fn.optional ?? 0) > 0 ? (args.length < min ? `at least ${min}` : `at most ${max}`) : String(min);
      return this.fail(`expected ${expected} argument(s) in call to ${JSON.stringify(name)}, got ${args.length}`, node);
    }
    args.forEach((a, i) => {
      const want = fn.args[Math.min(i, fn.args.length - 1)] ?? 'vector';
      const got = typeOf(a);
      if (got !== want) {
        this.fail(`expected type ${documentedType(want)} in call to function ${JSON.stringify(name)}, got ${documentedType(got)}`, argNodes[i] ?? node);
      }
    });
    const invariant = !fn.timeDependent && args.every((a) => a.invariant);
    return { kind: 'call', name, args, invariant };
  }

  private aggregate(node: SyntaxNode): Expr {
    const opNode = childOfType(node, AggregateOp);
    const body = childOfType(node, FunctionCallBody);
    if (opNode === null || body === null) return this.fail('incomplete aggregation', node);
    const op = nodeText(this.input, opNode).toLowerCase();
    const mod = childOfType(node, AggregateModifier);
    let grouping: string[] = [];
    let without = false;
    if (mod !== null) {
      without = childOfType(mod, Without) !== null && childOfType(mod, By) === null;
      const g = childOfType(mod, GroupingLabels);
      grouping = g === null ? [] : namedChildren(g).filter((c) => c.type.id === LabelName).map((c) => nodeText(this.input, c));
    }
    const argNodes = namedChildren(body);
    const needsParam = op === 'topk' || op === 'bottomk' || op === 'quantile' || op === 'count_values';
    if (!needsParam && op !== 'sum' && op !== 'avg' && op !== 'min' && op !== 'max' && op !== 'count' && op !== 'group' && op !== 'stddev' && op !== 'stdvar') {
      return this.fail(`aggregation ${JSON.stringify(op)} is not supported`, opNode);
    }
    const want = needsParam ? 2 : 1;
    if (argNodes.length !== want) {
      return this.fail(`wrong number of arguments for aggregate expression provided, expected ${want}, got ${argNodes.length}`, body);
    }
    const exprNode = argNodes[argNodes.length - 1] ?? body;
    const expr = this.convert(exprNode);
    let param: Expr | undefined;
    if (needsParam) {
      const pNode = argNodes[0] ?? body;
      param = this.convert(pNode);
      const pt = typeOf(param);
      const wantParam = op === 'count_values' ? 'string' : 'scalar';
      if (pt !== wantParam) return this.fail(`expected type ${documentedType(wantParam)} in aggregation parameter, got ${documentedType(pt)}`, pNode);
    }
    const et = typeOf(expr);
    if (et !== 'vector') return this.fail(`expected type instant vector in aggregation expression, got ${documentedType(et)}`, exprNode);
    return { kind: 'aggregate', op, param, expr, grouping, without, invariant: expr.invariant && (param?.invariant ?? true) };
  }
}

/** A parsed query: the tree and how many selectors / subqueries it has. */
export interface ParsedQuery {
  readonly root: Expr;
  readonly selectors: number;
  readonly subqueries: number;
}

/**
 * Parses and type-checks a PromQL expression.
 *
 * @throws PromqlSyntaxError with Prometheus' wording for syntax and type errors; an
 * unknown function is reported as `unknown function with name "foo"`.
 */
export function parseQuery(input: string): ParsedQuery {
  let node: SyntaxNode;
  try {
    node = parseExpr(input);
  } catch (err) {
    if (err instanceof PromqlSyntaxError) {
      const unknown = findUnknownFunction(input);
      if (unknown !== undefined) throw new PromqlSyntaxError(`unknown function with name ${JSON.stringify(unknown.name)}`, unknown.position, input);
    }
    throw err;
  }
  const c = new Converter(input);
  const root = c.convert(node);
  const { selectors, subqueries } = c.counts();
  return { root, selectors, subqueries };
}

/**
 * The grammar only knows the functions Prometheus ships, so `foo(x)` is a syntax error
 * at the `(`. Prometheus names the function instead; find an identifier directly
 * followed by `(` that the grammar did not accept as a call.
 */
function findUnknownFunction(input: string): { name: string; position: number } | undefined {
  const tree = parser.parse(input);
  let found: { name: string; position: number } | undefined;
  tree.iterate({
    enter: (ref) => {
      if (found !== undefined) return false;
      if (ref.type.id !== VectorSelector) return undefined;
      const sel = ref.node;
      const ident = sel.firstChild;
      if (ident === null || childOfType(sel, StringLiteral) !== null) return false;
      const after = input.slice(ident.to).trimStart();
      if (after.startsWith('(') && /^[A-Za-z_:][A-Za-z0-9_:]*$/.test(nodeText(input, ident))) {
        found = { name: nodeText(input, ident), position: ident.from };
      }
      return false;
    },
  });
  return found;
}

/**
 * Compiles a regular expression written for Go's RE2 (as PromQL's are) into an anchored
 * JavaScript one: `(?P<name>…)` becomes `(?<name>…)`, and leading flag groups such as
 * `(?i)` become JavaScript flags. Like RE2 in Prometheus, `.` matches newlines.
 *
 * @throws SyntaxError when the pattern is invalid.
 */
export function goRegExp(pattern: string): RegExp {
  let body = pattern;
  let flags = 's';
  for (let m = /^\(\?([ims]+)\)/.exec(body); m !== null; m = /^\(\?([ims]+)\)/.exec(body)) {
    for (const f of m[1] ?? '') if (!flags.includes(f)) flags += f;
    body = body.slice(m[0].length);
  }
  return new RegExp(`^(?:${body.replaceAll('(?P<', '(?<')})$`, flags);
}
