/**
 * pino JSON logs. Every line carries the service and, inside a span, `trace_id` and
 * `span_id` so a log line leads straight to its trace in Tempo.
 */
import { trace } from '@opentelemetry/api';
import { createContextKey, type HandlerContext } from '@connectrpc/connect';
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  readonly service: string;
  readonly level: string;
  /** Where to write; stdout by default (tests pass a stream). */
  readonly destination?: DestinationStream;
}

/** Creates the process logger. */
export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level,
      base: { service: opts.service },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Secrets never reach a log line, whatever a caller passes in.
      redact: {
        paths: ['authorization', 'headers.authorization', '*.authorization', 'token', '*.token', 'secret', '*.secret', 'password', '*.password'],
        censor: '<redacted>',
      },
      mixin() {
        const span = trace.getActiveSpan();
        if (!span) return {};
        const sc = span.spanContext();
        return { trace_id: sc.traceId, span_id: sc.spanId };
      },
    },
    opts.destination,
  );
}

/** Request-scoped logger (with tenant and procedure bound), set by the server interceptors. */
export const loggerKey = createContextKey<Logger | undefined>(undefined);

/** The request's logger, or `fallback` outside a request. */
export function requestLogger(ctx: Pick<HandlerContext, 'values'>, fallback: Logger): Logger {
  return ctx.values.get(loggerKey) ?? fallback;
}
