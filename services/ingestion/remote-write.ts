/**
 * Prometheus remote_write 1.0 receiver: `POST /api/v1/write`, a snappy block-compressed
 * `prometheus.WriteRequest`. 204 when everything was stored; 400 (not retried by
 * Prometheus) for a malformed request or rejected samples, after storing the valid ones;
 * 413 for a body over the limit; 429 with Retry-After when rate-limited or overloaded;
 * 503 with Retry-After when the bus is unavailable.
 */
import { create, fromBinary } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { uncompress } from 'snappy';
import { SeriesSchema, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { WriteRequestSchema } from '../../libs/contracts/prometheus/remote_pb.js';
import type { TokenVerifier } from '../../libs/runtime/auth/index.js';
import { InvalidArgumentError } from '../../libs/runtime/errors.js';
import type { HttpRoute } from '../../libs/runtime/server.js';
import { PayloadTooLargeError, readBody } from '../../libs/runtime/http.js';
import { authenticate, sendError } from './http.js';
import type { Ingester } from './pipeline.js';

/** Path of the receiver. */
export const REMOTE_WRITE_PATH = '/api/v1/write';

/** Dependencies of {@link remoteWriteRoute}. */
export interface RemoteWriteDeps {
  readonly ingester: Ingester;
  readonly verifier: TokenVerifier;
  readonly logger: Logger;
  /** `ingestion.maxRequestBytes`: limit of the compressed and of the decompressed body. */
  readonly maxRequestBytes: number;
}

/** Length a snappy block says it decompresses to (its leading varint), without decompressing. */
export function snappyUncompressedLength(buf: Uint8Array): number {
  let result = 0;
  for (let i = 0, shift = 1; i < 5 && i < buf.length; i++, shift *= 128) {
    const b = buf[i]!;
    result += (b & 0x7f) * shift;
    if ((b & 0x80) === 0) return result;
  }
  throw new InvalidArgumentError('body is not snappy block-compressed (bad length header)');
}

/** Decodes a remote_write body into our series. */
export async function decodeRemoteWrite(body: Buffer, maxBytes: number): Promise<Series[]> {
  const len = snappyUncompressedLength(body);
  if (len > maxBytes) throw new PayloadTooLargeError(`decompressed body of ${len} bytes is larger than ingestion.maxRequestBytes = ${maxBytes}`);
  let raw: Buffer;
  try {
    raw = (await uncompress(body, { asBuffer: true })) as Buffer;
  } catch (err) {
    throw new InvalidArgumentError(`body is not valid snappy (block format): ${(err as Error).message}`);
  }
  let wr;
  try {
    wr = fromBinary(WriteRequestSchema, raw);
  } catch (err) {
    throw new InvalidArgumentError(`body is not a prometheus.WriteRequest: ${(err as Error).message}`);
  }
  const out: Series[] = new Array<Series>(wr.timeseries.length);
  for (let i = 0; i < wr.timeseries.length; i++) {
    const ts = wr.timeseries[i]!;
    const n = ts.samples.length;
    const timestampsMs = new Array<bigint>(n);
    const values = new Array<number>(n);
    for (let j = 0; j < n; j++) {
      const s = ts.samples[j]!;
      timestampsMs[j] = s.timestamp;
      values[j] = s.value;
    }
    out[i] = create(SeriesSchema, { labels: ts.labels.map((l) => ({ name: l.name, value: l.value })), timestampsMs, values });
  }
  return out;
}

/** The `/api/v1/write` route. */
export function remoteWriteRoute(deps: RemoteWriteDeps): HttpRoute {
  return {
    path: REMOTE_WRITE_PATH,
    methods: ['POST'],
    async handler(req, res) {
      try {
        const { tenant } = await authenticate(req, REMOTE_WRITE_PATH, deps.verifier);
        const body = await readBody(req, deps.maxRequestBytes, 'ingestion.maxRequestBytes');
        const series = await decodeRemoteWrite(body, deps.maxRequestBytes);
        const outcome = await deps.ingester.ingest(tenant, { series, fieldOf: (i) => `timeseries[${i}]`, protocol: 'remote_write' });
        if (outcome.rejections.length > 0) {
          const lines = outcome.rejections.slice(0, 10).map((r) => `${r.violation!.field}: ${r.violation!.description}`);
          if (outcome.rejections.length > 10) lines.push(`… and ${outcome.rejections.length - 10} more series with rejected samples`);
          res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
          res.end(`${outcome.acceptedSamples} samples accepted, ${outcome.rejectedSamples} rejected:\n${lines.join('\n')}\n`);
          return;
        }
        res.writeHead(204);
        res.end();
      } catch (err) {
        sendError(res, err, deps.logger);
      }
    },
  };
}
