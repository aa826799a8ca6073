/**
 * Domain errors. Services and libraries throw these; one interceptor (see
 * `errorInterceptor` in interceptors.ts) maps them to Connect codes, so no handler
 * chooses a wire code itself. Branch on the class or `kind`, never on message text.
 */

/** Base of every error Telemesh raises on purpose. */
export abstract class TelemeshError extends Error {
  /** Stable machine-readable kind. */
  abstract readonly kind: string;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** One rejected field of a request: its path and why, naming the limit where one applies. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/** The request is malformed or breaks a limit. Maps to `invalid_argument`. */
export class InvalidArgumentError extends TelemeshError {
  readonly kind = 'invalid_argument';
  /** Detail message (a protobuf message) to attach to the wire error, if any. */
  readonly detail: unknown;
  constructor(
    message: string,
    readonly violations: readonly FieldViolation[] = [],
    options?: ErrorOptions & { detail?: unknown },
  ) {
    super(message, options);
    this.detail = options?.detail;
  }
}

/** The thing asked for does not exist. Maps to `not_found`. */
export class NotFoundError extends TelemeshError {
  readonly kind = 'not_found';
}

/** A quota or rate limit was hit. Maps to `resource_exhausted`. */
export class LimitExceededError extends TelemeshError {
  readonly kind = 'resource_exhausted';
  constructor(
    message: string,
    /** Suggested wait before retrying, milliseconds. */
    readonly retryAfterMs?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A dependency (bus, store) is unavailable; the client should retry. Maps to `unavailable`. */
export class UnavailableError extends TelemeshError {
  readonly kind = 'unavailable';
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The caller is not who it must be. Maps to `unauthenticated`. */
export class UnauthenticatedError extends TelemeshError {
  readonly kind = 'unauthenticated';
}

/** The caller lacks the role. Maps to `permission_denied`. */
export class PermissionDeniedError extends TelemeshError {
  readonly kind = 'permission_denied';
}

/**
 * Start-up failed in a way the operator can fix: the message names the problem and
 * `setting` names the configuration key (and its env var / flag) that fixes it.
 */
export class StartupError extends TelemeshError {
  readonly kind = 'startup';
  constructor(
    message: string,
    readonly setting?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
