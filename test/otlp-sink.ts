/**
 * A stand-in for Grafana Tempo in tests: an HTTP server on 127.0.0.1 accepting OTLP/HTTP
 * protobuf trace exports at `/v1/traces`, decoding just the fields the tests read (field
 * numbers from opentelemetry/proto/trace/v1/trace.proto). The exporters talking to it are
 * the real OpenTelemetry ones.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WireType } from '@bufbuild/protobuf/wire';
import { BinaryReader } from '@bufbuild/protobuf/wire';

/** One received span. */
export interface SinkSpan {
  readonly serviceName: string;
  readonly name: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
}

/** A running sink. */
export interface OtlpSink {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string;
  readonly spans: SinkSpan[];
  close(): Promise<void>;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function fields(buf: Uint8Array, visit: (field: number, r: BinaryReader, wire: WireType) => boolean): void {
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (!visit(field, r, wire)) r.skip(wire);
  }
}

function decodeSpan(buf: Uint8Array, serviceName: string): SinkSpan {
  const s = { serviceName, name: '', traceId: '', spanId: '', parentSpanId: '', kind: 0 };
  fields(buf, (f, r) => {
    if (f === 1) s.traceId = hex(r.bytes());
    else if (f === 2) s.spanId = hex(r.bytes());
    else if (f === 4) s.parentSpanId = hex(r.bytes());
    else if (f === 5) s.name = r.string();
    else if (f === 6) s.kind = r.int32();
    else return false;
    return true;
  });
  return s;
}

function serviceNameOf(resource: Uint8Array): string {
  let name = '';
  fields(resource, (f, r) => {
    if (f !== 1) return false;
    let key = '';
    let value = '';
    fields(r.bytes(), (kf, kr) => {
      if (kf === 1) key = kr.string();
      else if (kf === 2) fields(kr.bytes(), (vf, vr) => (vf === 1 ? ((value = vr.string()), true) : false));
      else return false;
      return true;
    });
    if (key === 'service.name') name = value;
    return true;
  });
  return name;
}

/** Decodes an ExportTraceServiceRequest into spans. */
export function decodeExport(body: Uint8Array): SinkSpan[] {
  const out: SinkSpan[] = [];
  fields(body, (f, r) => {
    if (f !== 1) return false;
    let service = '';
    const spanBufs: Uint8Array[] = [];
    fields(r.bytes(), (rf, rr) => {
      if (rf === 1) service = serviceNameOf(rr.bytes());
      else if (rf === 2) fields(rr.bytes(), (sf, sr) => (sf === 2 ? (spanBufs.push(sr.bytes()), true) : false));
      else return false;
      return true;
    });
    for (const b of spanBufs) out.push(decodeSpan(b, service));
    return true;
  });
  return out;
}

/** Starts a sink on a free loopback port. */
export async function startOtlpSink(): Promise<OtlpSink> {
  const spans: SinkSpan[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces' && req.method === 'POST') {
        spans.push(...decodeExport(Buffer.concat(chunks)));
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
        res.end();
      } else {
        res.writeHead(404);
        res.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
