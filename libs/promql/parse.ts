/**
 * The bridge to the PromQL grammar published by Prometheus (`@prometheus-io/lezer-promql`,
 * the same grammar the Prometheus web UI uses). Everything that reads PromQL goes through
 * here: it turns lezer's error-tolerant syntax tree into either a clean tree or a
 * {@link PromqlSyntaxError}, and holds small tree helpers shared by the selector parser
 * today and the expression evaluator later.
 *
 * Lezer never throws on bad input: it recovers and marks the damage with error nodes
 * (`node.type.isError`). A tree is only accepted when it has none, and when every string
 * literal is closed, since the grammar's string token tolerates a missing closing quote.
 */
import type { SyntaxNode, Tree } from '@lezer/common';
import {
  AggregateExpr,
  AnchoredExpr,
  BinaryExpr,
  FunctionCall,
  LabelMatchers,
  LineComment,
  MatrixSelector,
  NumberDurationLiteral,
  OffsetExpr,
  ParenExpr,
  SmoothedExpr,
  StepInvariantExpr,
  StringLiteral,
  SubqueryExpr,
  UnaryExpr,
  VectorSelector,
  parser,
} from '@prometheus-io/lezer-promql';
import { PromqlSyntaxError } from './errors.js';
import { isTerminatedString } from './strings.js';

/** A part of the input to parse: `[from, to)` as string offsets. */
export interface Span {
  readonly from: number;
  readonly to: number;
}

/**
 * Parses `input` (or only `span` of it) as one PromQL expression and returns the node of
 * that expression (the child of the grammar's `PromQL` top node). Node positions are
 * always offsets into `input`, also when a span is given, so error positions need no
 * translation.
 *
 * @throws PromqlSyntaxError for the first syntax error, by position.
 */
export function parseExpr(input: string, span: Span = { from: 0, to: input.length }): SyntaxNode {
  const { from, to } = span;
  // Lezer's own `ranges` option reports positions relative to the range in the version
  // we use, so instead the text before the span is blanked out: the grammar skips
  // whitespace, and every node keeps its real offset in `input`.
  const source = from === 0 && to === input.length ? input : ' '.repeat(from) + input.slice(from, to);
  const tree = parser.parse(source);
  const top = tree.topNode;

  let expr: SyntaxNode | null = null;
  for (const child of namedChildren(top)) {
    if (!child.type.isError) {
      expr = child;
      break;
    }
  }
  if (expr === null) {
    throw new PromqlSyntaxError('no expression found in input', skipSpace(source, from, to), input);
  }
  const problem = firstSyntaxProblem(tree, source, to);
  if (problem !== undefined) throw new PromqlSyntaxError(problem.reason, problem.position, input);
  return expr;
}

/** The source text of a node. */
export function nodeText(input: string, node: SyntaxNode): string {
  return input.slice(node.from, node.to);
}

/**
 * The named children of a node, in order, without comments (the grammar lets
 * `# comment` appear between any two tokens). Punctuation such as `{` `,` `(` is
 * anonymous in this grammar and never appears.
 */
export function namedChildren(node: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = node.firstChild; c !== null; c = c.nextSibling) {
    if (c.type.id !== LineComment) out.push(c);
  }
  return out;
}

/** The first child of `node` with the given node type id (ids are exported by the grammar package). */
export function childOfType(node: SyntaxNode, typeId: number): SyntaxNode | null {
  for (let c = node.firstChild; c !== null; c = c.nextSibling) {
    if (c.type.id === typeId) return c;
  }
  return null;
}

const EXPR_KINDS = new Map<number, string>([
  [AggregateExpr, 'an aggregation'],
  [AnchoredExpr, 'an anchored range selector'],
  [BinaryExpr, 'a binary expression'],
  [FunctionCall, 'a function call'],
  [MatrixSelector, 'a range vector selector'],
  [NumberDurationLiteral, 'a number'],
  [OffsetExpr, 'an offset modifier'],
  [ParenExpr, 'a parenthesized expression'],
  [SmoothedExpr, 'a smoothed range selector'],
  [StepInvariantExpr, 'an @ modifier'],
  [StringLiteral, 'a string'],
  [SubqueryExpr, 'a subquery'],
  [UnaryExpr, 'a unary expression'],
  [VectorSelector, 'a vector selector'],
]);

/** A short human name for an expression node, e.g. `a function call`, for error messages. */
export function describeExpr(node: SyntaxNode): string {
  return EXPR_KINDS.get(node.type.id) ?? node.type.name;
}

interface Problem {
  readonly position: number;
  readonly reason: string;
}

/** The earliest syntax problem in the tree, if any. */
function firstSyntaxProblem(tree: Tree, source: string, end: number): Problem | undefined {
  let found: Problem | undefined;
  const consider = (p: Problem): void => {
    if (found === undefined || p.position < found.position) found = p;
  };
  tree.iterate({
    enter: (ref) => {
      // Nothing at or after the best problem so far can beat it.
      if (found !== undefined && ref.from >= found.position) return false;
      if (ref.type.isError) {
        consider(describeErrorNode(ref.node, source, end));
        return false;
      }
      if (ref.type.id === StringLiteral && !isTerminatedString(source.slice(ref.from, ref.to))) {
        consider({ position: ref.from, reason: 'unterminated quoted string' });
      }
      return undefined;
    },
  });
  return found;
}

function describeErrorNode(node: SyntaxNode, source: string, end: number): Problem {
  // Lezer often places a zero-width error node just before the token it could not use,
  // sometimes with whitespace in between; point at the token itself.
  const position = skipSpace(source, node.from, end);
  let inBraces = false;
  for (let p = node.parent; p !== null; p = p.parent) {
    if (p.type.id === LabelMatchers) {
      inBraces = true;
      break;
    }
  }
  const what = describeTokenAt(source, position, end);
  return { position, reason: `unexpected ${what}${inBraces ? ' inside braces' : ''}` };
}

const MAX_QUOTED = 40;

/** Names the token starting at `pos` well enough for an error message, without a lexer. */
function describeTokenAt(source: string, pos: number, end: number): string {
  if (pos >= end) return 'end of input';
  const rest = source.slice(pos, end);
  const clip = (s: string): string => JSON.stringify(s.length > MAX_QUOTED ? `${s.slice(0, MAX_QUOTED)}…` : s);
  const quoted = /^(?:"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|`[^`]*`)/s.exec(rest);
  if (quoted !== null && quoted[0].length > 1) return `string ${clip(quoted[0])}`;
  const ident = /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(rest);
  if (ident !== null) return `identifier ${clip(ident[0])}`;
  const num = /^(?:\d|\.\d)[\w.]*/.exec(rest);
  if (num !== null) return `number ${clip(num[0])}`;
  const op = /^(?:=~|!=|!~|==|<=|>=)/.exec(rest);
  if (op !== null) return JSON.stringify(op[0]);
  const ch = String.fromCodePoint(rest.codePointAt(0) ?? 0);
  return `character ${JSON.stringify(ch)}`;
}

/** First offset at or after `pos` (and before `end`) that is not whitespace. */
function skipSpace(source: string, pos: number, end: number): number {
  let i = pos;
  while (i < end && /\s/.test(source[i] ?? '')) i++;
  return i;
}
