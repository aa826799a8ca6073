/**
 * Vector selectors: `cpu{host="a",mode!~"idle|iowait"}`, `{__name__="x"}`, and the
 * quoted names of Prometheus 3 (`{"my.metric", "service.name"="api"}`). Reading the
 * selector out of the syntax tree is kept apart from Prometheus' semantic rules, so the
 * sample-line parser can read labels with its own rules and the evaluator can later
 * read selectors nested anywhere in an expression.
 */
import type { SyntaxNode } from '@lezer/common';
import {
  EqlRegex,
  EqlSingle,
  Identifier,
  LabelMatchers,
  LabelName,
  MatchOp as MatchOpNode,
  Neq,
  NeqRegex,
  QuotedLabelMatcher,
  QuotedLabelName,
  StringLiteral,
  UnquotedLabelMatcher,
  VectorSelector,
} from '@prometheus-io/lezer-promql';
import { METRIC_NAME_LABEL, compileMatcher } from '../model/index.js';
import type { MatchOp, Matcher } from '../model/index.js';
import { PromqlSyntaxError } from './errors.js';
import { childOfType, describeExpr, namedChildren, nodeText, parseExpr } from './parse.js';
import { unquoteString } from './strings.js';

/** One label matcher as written, with the offsets of its parts for error messages. */
export interface MatcherSyntax extends Matcher {
  /** Offset of the label name (or of the bare quoted metric name). */
  readonly position: number;
  /** Offset of the operator; equals `position` for a bare quoted metric name. */
  readonly opPosition: number;
  /** Offset of the value's string literal. */
  readonly valuePosition: number;
  /**
   * True for a bare quoted metric name inside the braces (`{"my.metric"}`), which
   * Prometheus reads as `__name__="my.metric"`.
   */
  readonly bareName: boolean;
}

/** A vector selector as written, before Prometheus' rules are applied. */
export interface SelectorSyntax {
  /** Offset of the selector's first character. */
  readonly position: number;
  /** The metric name written before the braces, if any, and its offset. */
  readonly metricName: { readonly value: string; readonly position: number } | undefined;
  /** The matchers inside the braces, in source order. */
  readonly matchers: readonly MatcherSyntax[];
}

/**
 * Parses a PromQL vector selector into its matchers. The metric name, written before
 * the braces or as a bare quoted name inside them, becomes a `__name__` `=` matcher;
 * a name written before the braces comes first, the rest keep their source order.
 *
 * Prometheus' parse-time rules apply: the input must be a plain vector selector (no
 * range, offset, `@`, function or operator), regular expressions must compile (with the
 * same engine as `compileMatcher` in libs/model, so whatever parses can be matched), the
 * metric name must not be given twice, and at least one matcher must reject the empty
 * string so a typo cannot select every series (`{job=~".*"}` is refused).
 *
 * @example parseSelector('cpu{mode!~"idle|iowait"}')
 * // → [{ op: '=', name: '__name__', value: 'cpu' }, { op: '!~', name: 'mode', value: 'idle|iowait' }]
 * @throws PromqlSyntaxError when the text is not an acceptable vector selector.
 */
export function parseSelector(text: string): Matcher[] {
  const expr = parseExpr(text);
  if (expr.type.id !== VectorSelector) {
    throw new PromqlSyntaxError(`expected a vector selector, got ${describeExpr(expr)}`, expr.from, text);
  }
  return selectorMatchers(text, readVectorSelector(text, expr));
}

/**
 * Reads a `VectorSelector` node. Only string unquoting can fail here; the semantic
 * checks are in {@link selectorMatchers}.
 *
 * @throws PromqlSyntaxError for an invalid string literal or an empty quoted name.
 */
export function readVectorSelector(input: string, node: SyntaxNode): SelectorSyntax {
  const ident = childOfType(node, Identifier);
  const braces = childOfType(node, LabelMatchers);
  return {
    position: node.from,
    metricName: ident === null ? undefined : { value: nodeText(input, ident), position: ident.from },
    matchers: braces === null ? [] : readLabelMatchers(input, braces),
  };
}

/**
 * Reads the matchers of a `LabelMatchers` node (`{…}`), unquoting names and values.
 *
 * @throws PromqlSyntaxError for an invalid string literal or an empty quoted name.
 */
export function readLabelMatchers(input: string, node: SyntaxNode): MatcherSyntax[] {
  const out: MatcherSyntax[] = [];
  for (const child of namedChildren(node)) {
    switch (child.type.id) {
      case UnquotedLabelMatcher:
      case QuotedLabelMatcher:
        out.push(readLabelMatcher(input, child));
        break;
      case QuotedLabelName: {
        const name = readQuotedName(input, child, 'metric name');
        out.push({ op: '=', name: METRIC_NAME_LABEL, value: name, position: child.from, opPosition: child.from, valuePosition: child.from, bareName: true });
        break;
      }
      default:
        // Unreachable for an error-free tree; kept so a grammar change fails loudly.
        throw new PromqlSyntaxError(`unexpected ${child.type.name} inside braces`, child.from, input);
    }
  }
  return out;
}

/**
 * Applies Prometheus' parse-time rules to a selector and returns its matchers, the
 * metric name written before the braces first.
 *
 * @throws PromqlSyntaxError naming the broken rule.
 */
export function selectorMatchers(input: string, sel: SelectorSyntax): Matcher[] {
  const all: Matcher[] = [];
  if (sel.metricName !== undefined) all.push({ op: '=', name: METRIC_NAME_LABEL, value: sel.metricName.value });
  for (const m of sel.matchers) {
    if (sel.metricName !== undefined && m.name === METRIC_NAME_LABEL) {
      throw new PromqlSyntaxError(
        `metric name must not be set twice: ${JSON.stringify(sel.metricName.value)} or ${JSON.stringify(m.value)}`,
        m.position,
        input,
      );
    }
    if (m.op === '=~' || m.op === '!~') checkRegex(input, m);
    all.push({ op: m.op, name: m.name, value: m.value });
  }
  // A selector made only of matchers that accept "" (e.g. {job=~".*"}, {a!="x"}) would
  // select every series in the store; Prometheus refuses it, and so do we.
  if (!all.some((m) => !compileMatcher(m).matches(''))) {
    throw new PromqlSyntaxError('vector selector must contain at least one non-empty matcher', sel.position, input);
  }
  return all;
}

function checkRegex(input: string, m: MatcherSyntax): void {
  try {
    compileMatcher(m);
  } catch (err) {
    // V8 prefixes its reason with the whole anchored pattern we built, which would only
    // confuse the user; keep the reason itself.
    const raw = err instanceof Error ? err.message : String(err);
    const why = /^Invalid regular expression: \/.*\/[a-z]*: (.+)$/s.exec(raw)?.[1] ?? raw;
    throw new PromqlSyntaxError(`invalid regular expression ${JSON.stringify(m.value)}: ${why}`, m.valuePosition, input, { cause: err });
  }
}

function readLabelMatcher(input: string, node: SyntaxNode): MatcherSyntax {
  const opNode = childOfType(node, MatchOpNode);
  const valueNode = childOfType(node, StringLiteral);
  const unquotedName = childOfType(node, LabelName);
  const quotedName = childOfType(node, QuotedLabelName);
  let name: string | undefined;
  if (unquotedName !== null) name = nodeText(input, unquotedName);
  else if (quotedName !== null) name = readQuotedName(input, quotedName, 'label name');
  if (opNode === null || valueNode === null || name === undefined) {
    // Unreachable for an error-free tree.
    throw new PromqlSyntaxError('incomplete label matcher', node.from, input);
  }
  return {
    op: matchOpOf(input, opNode),
    name,
    value: unquoteString(nodeText(input, valueNode), valueNode.from, input),
    position: node.from,
    opPosition: opNode.from,
    valuePosition: valueNode.from,
    bareName: false,
  };
}

function readQuotedName(input: string, node: SyntaxNode, what: string): string {
  const lit = childOfType(node, StringLiteral) ?? node;
  const name = unquoteString(nodeText(input, lit), lit.from, input);
  if (name === '') throw new PromqlSyntaxError(`${what} must not be empty`, lit.from, input);
  return name;
}

const MATCH_OPS = new Map<number, MatchOp>([
  [EqlSingle, '='],
  [Neq, '!='],
  [EqlRegex, '=~'],
  [NeqRegex, '!~'],
]);

function matchOpOf(input: string, node: SyntaxNode): MatchOp {
  const op = node.firstChild === null ? undefined : MATCH_OPS.get(node.firstChild.type.id);
  if (op === undefined) throw new PromqlSyntaxError(`unknown label matching operator ${JSON.stringify(nodeText(input, node))}`, node.from, input);
  return op;
}
