/**
 * The OTLP metrics receiver: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`
 * over gRPC (and Connect) and `POST /v1/metrics` over HTTP (binary protobuf or JSON,
 * optionally gzip). Rejected data points are reported the OTLP way, in
 * `partial_success`, with the valid points of the same request stored.
 */
import { create, fromBinary, fromJson, toBinary, toJson, type JsonValue } from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { Logger } from 'pino';
import {
  ExportMetricsServiceRequestSchema,
  ExportMetricsServiceResponseSchema,
  type ExportMetricsServiceRequest,
  type ExportMetricsServiceResponse,
  type MetricsService,
} from '../../libs/contracts/opentelemetry/proto/collector/metrics/v1/metrics_service_pb.js';
import { requirePrincipal, type TokenVerifier } from '../../libs/runtime/auth/index.js';
import { InvalidArgumentError } from '../../libs/runtime/errors.js';
import type { HttpHandler, HttpRoute } from '../../libs/runtime/server.js';
import { readBody } from '../../libs/runtime/http.js';
import { authenticate, decodeContentEncoding, sendError } from './http.js';
import { translateOtlp } from './otlp.js';
import type { Ingester } from './pipeline.js';

/** Path of the OTLP/HTTP receiver. */
export const OTLP_HTTP_PATH = '/v1/metrics';

/** Translates and ingests one export; answers with OTLP partial success. */
export async function exportMetrics(ingester: Ingester, tenant: string, req: ExportMetricsServiceRequest): Promise<ExportMetricsServiceResponse> {
  const t = translateOtlp(req.resourceMetrics);
  const outcome = await ingester.ingest(tenant, {
    series: t.series,
    startTimesMs: t.startTimesMs,
    fieldOf: (i) => t.pointFields[t.pointOf[i]!] ?? `series[${i}]`,
    protocol: 'otlp',
  });
  // OTLP counts data points, not samples: a histogram point is many series here.
  const rejectedPoints = new Set<number>();
  for (const r of outcome.rejections) rejectedPoints.add(t.pointOf[r.seriesIndex]!);
  const rejected = rejectedPoints.size + t.dropped.length;
  if (rejected === 0) return create(ExportMetricsServiceResponseSchema, {});
  const reasons = [
    ...t.dropped.map((d) => `${d.field}: ${d.description}`),
    ...outcome.rejections.map((r) => `${r.violation!.field}: ${r.violation!.description}`),
  ];
  const shown = reasons.slice(0, 5).join('; ');
  const more = reasons.length > 5 ? `; and ${reasons.length - 5} more` : '';
  return create(ExportMetricsServiceResponseSchema, {
    partialSuccess: { rejectedDataPoints: BigInt(rejected), errorMessage: `${shown}${more}` },
  });
}

/** The gRPC/Connect implementation of MetricsService. */
export function metricsServiceImpl(ingester: Ingester): Partial<ServiceImpl<typeof MetricsService>> {
  return {
    export: (req: ExportMetricsServiceRequest, ctx: HandlerContext) => exportMetrics(ingester, requirePrincipal(ctx).tenant, req),
  };
}

/** Dependencies of {@link otlpHttpRoute}. */
export interface OtlpHttpDeps {
  readonly ingester: Ingester;
  readonly verifier: TokenVerifier;
  readonly logger: Logger;
  readonly maxRequestBytes: number;
}

/**
 * Handles `POST /v1/metrics` (shared by the main HTTP port, where RpcServer adds the span,
 * and the optional 4318 listener, which wraps it in `tracedHttp` itself).
 */
export function otlpHttpHandler(deps: OtlpHttpDeps): HttpHandler {
  return async (req, res) => {
    try {
      const { tenant } = await authenticate(req, OTLP_HTTP_PATH, deps.verifier);
      const contentType = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const json = contentType === 'application/json';
      if (!json && contentType !== 'application/x-protobuf' && contentType !== 'application/protobuf') {
        res.writeHead(415, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`content-type ${contentType || '(none)'} is not supported: use application/x-protobuf or application/json\n`);
        return;
      }
      const body = await decodeContentEncoding(req, await readBody(req, deps.maxRequestBytes, 'ingestion.maxRequestBytes'), deps.maxRequestBytes);
      const request = json ? parseJsonRequest(body) : parseBinaryRequest(body);
      const response = await exportMetrics(deps.ingester, tenant, request);
      if (json) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(toJson(ExportMetricsServiceResponseSchema, response)));
      } else {
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
        res.end(Buffer.from(toBinary(ExportMetricsServiceResponseSchema, response)));
      }
    } catch (err) {
      sendError(res, err, deps.logger);
    }
  };
}

/** The `/v1/metrics` route on the main HTTP port. */
export function otlpHttpRoute(deps: OtlpHttpDeps): HttpRoute {
  return { path: OTLP_HTTP_PATH, methods: ['POST'], handler: otlpHttpHandler(deps) };
}

function parseBinaryRequest(body: Buffer): ExportMetricsServiceRequest {
  try {
    return fromBinary(ExportMetricsServiceRequestSchema, body);
  } catch (err) {
    throw new InvalidArgumentError(`body is not an OTLP ExportMetricsServiceRequest: ${(err as Error).message}`);
  }
}

/**
 * OTLP/JSON is protobuf JSON with two twists: trace and span ids are hex, not base64, and
 * enums are integers. We ignore exemplars (where the ids live) and unknown fields.
 */
function parseJsonRequest(body: Buffer): ExportMetricsServiceRequest {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`body is not valid JSON: ${(err as Error).message}`);
  }
  stripExemplars(value);
  try {
    return fromJson(ExportMetricsServiceRequestSchema, value as JsonValue, { ignoreUnknownFields: true });
  } catch (err) {
    throw new InvalidArgumentError(`body is not an OTLP ExportMetricsServiceRequest: ${(err as Error).message}`);
  }
}

function stripExemplars(v: unknown, depth = 0): void {
  if (depth > 12 || typeof v !== 'object' || v === null) return;
  if (Array.isArray(v)) {
    for (const x of v) stripExemplars(x, depth + 1);
    return;
  }
  const o = v as Record<string, unknown>;
  delete o.exemplars;
  for (const k of Object.keys(o)) stripExemplars(o[k], depth + 1);
}
