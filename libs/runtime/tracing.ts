/**
 * OpenTelemetry tracing: started first and stopped last by `main`. A tracer provider is
 * always registered, so trace ids exist and propagate (W3C trace context) even when
 * nothing is exported; spans are exported by OTLP/HTTP protobuf when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, which is
 * what Grafana Tempo and the OpenTelemetry Collector accept on 4318.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CBaggagePropagator, W3CTraceContextPropagator, CompositePropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider, type SpanProcessor } from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

/** Handle returned by {@link startTracing}. */
export interface Tracing {
  /** True when spans are exported. */
  readonly exporting: boolean;
  /** Flushes pending spans and shuts the provider down; idempotent. */
  shutdown(): Promise<void>;
}

/** Options for {@link startTracing}. */
export interface TracingOptions {
  /** `service.name` unless `OTEL_SERVICE_NAME` overrides it. */
  readonly serviceName: string;
  readonly serviceVersion: string;
  /** Environment to read `OTEL_*` variables from. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Extra processors (tests use an in-memory exporter). */
  readonly processors?: readonly SpanProcessor[];
}

/** Registers the global tracer provider, context manager and propagator. */
export function startTracing(opts: TracingOptions): Tracing {
  const env = opts.env;
  const processors: SpanProcessor[] = [...(opts.processors ?? [])];
  const disabled = env.OTEL_SDK_DISABLED === 'true';
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const exporting = !disabled && Boolean(endpoint) && env.OTEL_TRACES_EXPORTER !== 'none';
  if (exporting) {
    // The exporter reads the endpoint, headers and timeout from the OTEL_* variables itself.
    processors.push(new BatchSpanProcessor({ exporter: new OTLPTraceExporter(), scheduledDelayMillis: 1000 }));
  }
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME || opts.serviceName,
      [ATTR_SERVICE_VERSION]: opts.serviceVersion,
    }),
    spanProcessors: processors,
  });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  );
  trace.setGlobalTracerProvider(provider);
  let done: Promise<void> | undefined;
  return {
    exporting,
    shutdown() {
      done ??= provider.shutdown().finally(() => {
        trace.disable();
        propagation.disable();
        context.disable();
      });
      return done;
    },
  };
}
