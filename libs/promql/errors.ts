import { InvalidArgumentError } from '../runtime/errors.js';

/**
 * A PromQL (or sample line) text that cannot be accepted: bad syntax, the wrong kind of
 * expression, an invalid regular expression or a rule Prometheus enforces at parse time.
 *
 * It extends {@link InvalidArgumentError} so the shared error interceptor answers
 * `invalid_argument` without knowing about PromQL.
 *
 * The message follows Prometheus' classic format, `parse error at char N: reason` (or
 * `parse error at line L, char N: reason` for input spanning several lines), so users
 * who know Prometheus recognise it. Like Prometheus, `char N` counts from 1 for humans;
 * {@link PromqlSyntaxError.position} is the 0-based offset for programs. Offsets and
 * columns count UTF-16 code units (JavaScript string indices), not bytes.
 */
export class PromqlSyntaxError extends InvalidArgumentError {
  /** 0-based offset into the parsed text where the problem starts. */
  readonly position: number;
  /** The problem without the position prefix, e.g. `unexpected end of input`. */
  readonly reason: string;
  /** 1-based line of {@link PromqlSyntaxError.position}. */
  readonly line: number;
  /** 1-based column of {@link PromqlSyntaxError.position} within its line. */
  readonly column: number;

  /**
   * @param reason What is wrong, without position (it is added to the message).
   * @param position 0-based offset into `input`; clamped into `[0, input.length]`.
   * @param input The whole text that was parsed, used to turn the offset into line and column.
   */
  constructor(reason: string, position: number, input: string, options?: ErrorOptions) {
    const pos = Math.max(0, Math.min(position, input.length));
    const { line, column } = lineAndColumn(input, pos);
    // Prometheus only names the line when the query really spans lines; leading or
    // trailing newlines alone do not count.
    const multiline = input.trim().includes('\n');
    const where = multiline ? `line ${line}, char ${column}` : `char ${column}`;
    super(`parse error at ${where}: ${reason}`, [], options);
    this.position = pos;
    this.reason = reason;
    this.line = line;
    this.column = column;
  }
}

function lineAndColumn(input: string, pos: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = input.indexOf('\n'); i !== -1 && i < pos; i = input.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: pos - lineStart + 1 };
}
