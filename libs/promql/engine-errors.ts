/**
 * Errors the PromQL engine raises while evaluating. Syntax and type errors are
 * {@link PromqlSyntaxError} (errors.ts); these are the others.
 */
import { InvalidArgumentError, LimitExceededError } from '../runtime/errors.js';

/**
 * A query crossed one of its limits (`query.maxSamples`, `query.maxSeries`). `limit`
 * names the setting, `value` is its configured value.
 */
export class QueryLimitError extends LimitExceededError {
  constructor(
    readonly limit: string,
    readonly value: number,
    message: string,
  ) {
    super(message);
  }
}

/** A query ran longer than its `timeoutMs`. */
export class QueryTimeoutError extends LimitExceededError {}

/**
 * A well-formed query that cannot be evaluated on this data, e.g. many-to-many matching
 * or duplicate output series. Prometheus reports these with `errorType: "execution"`;
 * the message uses Prometheus' wording.
 */
export class PromqlExecutionError extends InvalidArgumentError {}
