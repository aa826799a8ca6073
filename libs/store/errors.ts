/**
 * Errors a `MetricStore` raises on purpose. Each extends a runtime domain error so the one
 * Connect error interceptor maps it to a wire code without the store knowing about Connect;
 * callers branch on the class (or `limit`), never on the message.
 */
import { InvalidArgumentError, LimitExceededError, UnavailableError } from '../runtime/errors.js';

/** Names of the per-query limits a `select` accepts. */
export type StoreLimitName = 'maxSeries' | 'maxSamples';

/**
 * A query would return more series or samples than its caller allowed. Raised as soon as
 * the limit is crossed, so the store never materialises the oversized answer.
 */
export class StoreLimitError extends LimitExceededError {
  constructor(
    /** Which limit was crossed. */
    readonly limit: StoreLimitName,
    /** The limit's configured value. */
    readonly value: number,
  ) {
    super(
      limit === 'maxSeries'
        ? `query selects more than ${limit}=${value} series`
        : `query selects more than ${limit}=${value} samples`,
    );
  }
}

/**
 * The arguments of a store call are malformed (mismatched column lengths, a non-integer
 * timestamp, duplicate label names, an empty tenant or batch id). Retrying cannot help:
 * a consumer should terminate such a batch rather than redeliver it.
 */
export class StoreInputError extends InvalidArgumentError {
  constructor(field: string, description: string) {
    super(`${field}: ${description}`, [{ field, description }]);
  }
}

/** The store was closed (or is closing); the call was not run. */
export class StoreClosedError extends UnavailableError {
  constructor() {
    super('metric store is closed');
  }
}
