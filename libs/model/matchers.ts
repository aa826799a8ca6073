import type { Labels } from './labels.js';

/** The four Prometheus label-matching operators. */
export type MatchOp = '=' | '!=' | '=~' | '!~';

/** Selects series by the value of one label. A missing label matches as the empty string. */
export interface Matcher {
  readonly op: MatchOp;
  readonly name: string;
  readonly value: string;
}

/** A matcher compiled for repeated use. */
export interface CompiledMatcher extends Matcher {
  /** True when the label value (or '' for a missing label) satisfies the matcher. */
  matches(value: string): boolean;
}

/**
 * Compiles a matcher. Regular expressions are anchored at both ends, as in Prometheus.
 * Throws `SyntaxError` for an invalid regular expression.
 */
export function compileMatcher(m: Matcher): CompiledMatcher {
  switch (m.op) {
    case '=':
      return { ...m, matches: (v) => v === m.value };
    case '!=':
      return { ...m, matches: (v) => v !== m.value };
    case '=~': {
      const re = new RegExp(`^(?:${m.value})$`, 's');
      return { ...m, matches: (v) => re.test(v) };
    }
    case '!~': {
      const re = new RegExp(`^(?:${m.value})$`, 's');
      return { ...m, matches: (v) => !re.test(v) };
    }
  }
}

/** True when every matcher accepts the label set. */
export function matchesAll(labels: Labels, matchers: readonly CompiledMatcher[]): boolean {
  for (const m of matchers) {
    let value = '';
    for (const l of labels) {
      if (l.name === m.name) {
        value = l.value;
        break;
      }
    }
    if (!m.matches(value)) return false;
  }
  return true;
}
