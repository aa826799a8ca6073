/**
 * Wire ↔ model conversions every service shares (the contracts' LabelMatcher to the
 * model's Matcher), so each RPC reports a bad matcher the same way.
 */
import { MatchType, type LabelMatcher } from '../contracts/telemesh/common/v1/common_pb.js';
import { InvalidArgumentError } from '../runtime/errors.js';
import { compileMatcher, type Matcher, type MatchOp } from './matchers.js';

const OPS: Partial<Record<MatchType, MatchOp>> = {
  [MatchType.EQUAL]: '=',
  [MatchType.NOT_EQUAL]: '!=',
  [MatchType.REGEX]: '=~',
  [MatchType.NOT_REGEX]: '!~',
};

/**
 * Converts wire matchers, refusing an unset type or a regular expression that does not
 * compile with `invalid_argument` naming the field (`<field>[i].type` / `<field>[i].value`).
 */
export function matchersFromWire(matchers: readonly LabelMatcher[], field: string): Matcher[] {
  return matchers.map((m, i) => {
    const op = OPS[m.type];
    if (!op) {
      const description = 'type must be EQUAL, NOT_EQUAL, REGEX or NOT_REGEX';
      throw new InvalidArgumentError(`${field}[${i}].type: ${description}`, [{ field: `${field}[${i}].type`, description }]);
    }
    const matcher = { op, name: m.name, value: m.value };
    try {
      compileMatcher(matcher);
    } catch (err) {
      const description = `invalid regular expression: ${err instanceof Error ? err.message : String(err)}`;
      throw new InvalidArgumentError(`${field}[${i}].value: ${description}`, [{ field: `${field}[${i}].value`, description }]);
    }
    return matcher;
  });
}
