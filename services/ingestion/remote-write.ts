/**
 * Prometheus remote_write 1.0 receiver: `POST /api/v1/write`, a snappy block-compressed
 * `prometheus.WriteRequest`. 204 when everything was stored; 400 (not retried by
 * Prometheus) for a malformed request or rejected samples, after storing the valid ones;
 * 413 for a body over the limit; 429 with Retry-After when rate-limited or overloaded;
 * 503 with Retry-After when the bus is unavailable.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { uncompress } from 'snappy';
import { MalformedSeriesError, varintSize, WireReader, writeVarint } from '../../libs/model/index.js';
import type { TokenVerifier } from '../../libs/runtime/auth/index.js';
import { InvalidArgumentError } from '../../libs/runtime/errors.js';
import type { HttpRoute } from '../../libs/runtime/server.js';
import { PayloadTooLargeError, readBody } from '../../libs/runtime/http.js';
import { counter } from '../../libs/runtime/metrics.js';
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
  /** Where the count of received but unstored data goes (see {@link SkippedData}). */
  readonly registry?: Registry;
}

/**
 * What a request carried that the data model has no place for, counted as it is read:
 * exemplars (TimeSeries field 3) and native histograms (field 4, sent by Prometheus with
 * native histograms enabled). remote_write 1.0 has no partial-success answer, so the
 * request still succeeds; `telemesh_ingestion_remote_write_dropped_total` shows it.
 */
export interface SkippedData {
  exemplars: number;
  histograms: number;
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

/**
 * Decodes a remote_write body into our series, each encoded as `telemesh.common.v1.Series`
 * (one per `timeseries` entry, in order, so rejections name the right index).
 */
export async function decodeRemoteWrite(body: Buffer, maxBytes: number, skipped?: SkippedData): Promise<Uint8Array[]> {
  const len = snappyUncompressedLength(body);
  if (len > maxBytes) throw new PayloadTooLargeError(`decompressed body of ${len} bytes is larger than ingestion.maxRequestBytes = ${maxBytes}`);
  let raw: Buffer;
  try {
    raw = (await uncompress(body, { asBuffer: true })) as Buffer;
  } catch (err) {
    throw new InvalidArgumentError(`body is not valid snappy (block format): ${(err as Error).message}`);
  }
  try {
    return transcodeWriteRequest(raw, skipped);
  } catch (err) {
    if (!(err instanceof MalformedSeriesError)) throw err;
    throw new InvalidArgumentError(`body is not a prometheus.WriteRequest: ${err.message}`);
  }
}

/** A growable list of int32 (positions in the request), reused across requests. */
class Positions {
  a = new Int32Array(1024);
  n = 0;
  push3(x: number, y: number, z: number): void {
    if (this.n + 3 > this.a.length) {
      const b = new Int32Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = x;
    this.a[this.n++] = y;
    this.a[this.n++] = z;
  }
}

const reader = new WireReader();
const sampleReader = new WireReader();
const labelPos = new Positions();
const samplePos = new Positions();

/**
 * `prometheus.WriteRequest` bytes to encoded Series, without building messages.
 *
 * Why: decoding into generated messages (a TimeSeries, label and Sample messages and a
 * BigInt per sample) and encoding each series again cost several times what Prometheus
 * spends on the same payload. The wire formats line up: a remote_write `Label` is our
 * `Label` (name 1, value 2), so label entries are copied byte for byte; each `Sample`
 * (value 1 double, timestamp 2 int64) gives its timestamp varint and its 8 value bytes,
 * copied into our packed timestamps (field 2) and values (field 3). Fields we do not store
 * (exemplars, anything newer) are skipped, as the generated decoder skipped them.
 *
 * Two passes over the request: the first records where each label entry and each
 * sample's fields are, the second writes every series into one buffer of the exact size.
 * Synchronous (the position tables are shared).
 */
export function transcodeWriteRequest(raw: Uint8Array, skipped?: SkippedData): Uint8Array[] {
  labelPos.n = 0;
  samplePos.n = 0;
  // Per series: end index in labelPos, end index in samplePos, timestamp bytes.
  const bounds: number[] = [];
  let total = 0;
  const r = reader.reset(raw, 0, raw.length);
  const s = sampleReader;
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag !== 0x0a) {
      r.skipField(tag & 7);
      continue;
    }
    const seriesLen = r.varint();
    const seriesEnd = r.pos + seriesLen;
    r.check(seriesEnd);
    let labelBytes = 0;
    let tsBytes = 0;
    let samples = 0;
    while (r.pos < seriesEnd) {
      const at = r.pos;
      const t = r.varint();
      if (t === 0x0a) {
        // labels: copied whole, tag included.
        r.skip(r.varint());
        if (r.pos > seriesEnd) throw new MalformedSeriesError('label runs past its series');
        labelPos.push3(at, r.pos, 0);
        labelBytes += r.pos - at;
      } else if (t === 0x12) {
        // samples
        const sampleLen = r.varint();
        const sampleEnd = r.pos + sampleLen;
        if (sampleEnd > seriesEnd) throw new MalformedSeriesError('sample runs past its series');
        s.reset(raw, r.pos, sampleEnd);
        let tsStart = -1;
        let tsEnd = -1;
        let valueAt = -1;
        while (s.pos < s.end) {
          const st = s.varint();
          if (st === 0x09) {
            valueAt = s.pos;
            s.skip(8);
          } else if (st === 0x10) {
            tsStart = s.pos;
            s.varint();
            tsEnd = s.pos;
          } else {
            s.skipField(st & 7);
          }
        }
        samplePos.push3(tsStart, tsEnd, valueAt);
        tsBytes += tsStart < 0 ? 1 : tsEnd - tsStart;
        samples++;
        r.pos = sampleEnd;
      } else {
        if (skipped !== undefined) {
          if (t === 0x1a) skipped.exemplars++;
          else if (t === 0x22) skipped.histograms++;
        }
        r.skipField(t & 7);
        if (r.pos > seriesEnd) throw new MalformedSeriesError('field runs past its series');
      }
    }
    bounds.push(labelPos.n, samplePos.n, tsBytes);
    total += labelBytes + (samples > 0 ? 2 + varintSize(tsBytes) + tsBytes + varintSize(8 * samples) + 8 * samples : 0);
  }

  const outBuf = new Uint8Array(total);
  const out: Uint8Array[] = new Array(bounds.length / 3);
  const lp = labelPos.a;
  const sp = samplePos.a;
  let w = 0;
  let li = 0;
  let si = 0;
  for (let k = 0; k < out.length; k++) {
    const from = w;
    const lEnd = bounds[3 * k]!;
    const sEnd = bounds[3 * k + 1]!;
    const tsBytes = bounds[3 * k + 2]!;
    for (; li < lEnd; li += 3) {
      outBuf.set(raw.subarray(lp[li]!, lp[li + 1]!), w);
      w += lp[li + 1]! - lp[li]!;
    }
    const samples = (sEnd - si) / 3;
    if (samples > 0) {
      outBuf[w++] = 0x12;
      w = writeVarint(outBuf, w, tsBytes);
      for (let j = si; j < sEnd; j += 3) {
        const a = sp[j]!;
        if (a < 0) outBuf[w++] = 0;
        else for (let b = a, e = sp[j + 1]!; b < e; b++) outBuf[w++] = raw[b]!;
      }
      outBuf[w++] = 0x1a;
      w = writeVarint(outBuf, w, 8 * samples);
      for (let j = si; j < sEnd; j += 3) {
        const v = sp[j + 2]!;
        // An absent value is 0 (proto3 default): the buffer is already zeroed.
        if (v >= 0) for (let b = 0; b < 8; b++) outBuf[w + b] = raw[v + b]!;
        w += 8;
      }
      si = sEnd;
    }
    out[k] = outBuf.subarray(from, w);
  }
  return out;
}


/** The `/api/v1/write` route. */
export function remoteWriteRoute(deps: RemoteWriteDeps): HttpRoute {
  const dropped =
    deps.registry === undefined
      ? undefined
      : counter(deps.registry, {
          name: 'telemesh_ingestion_remote_write_dropped_total',
          help: 'remote_write data received but not stored (no place in the data model), by tenant and kind: exemplar, native_histogram.',
          labelNames: ['tenant', 'kind'],
        });
  return {
    path: REMOTE_WRITE_PATH,
    methods: ['POST'],
    async handler(req, res) {
      try {
        const { tenant } = await authenticate(req, REMOTE_WRITE_PATH, deps.verifier);
        const body = await readBody(req, deps.maxRequestBytes, 'ingestion.maxRequestBytes');
        const skipped: SkippedData = { exemplars: 0, histograms: 0 };
        const series = await decodeRemoteWrite(body, deps.maxRequestBytes, skipped);
        if (skipped.exemplars > 0) dropped?.inc({ tenant, kind: 'exemplar' }, skipped.exemplars);
        if (skipped.histograms > 0) dropped?.inc({ tenant, kind: 'native_histogram' }, skipped.histograms);
        const outcome = await deps.ingester.ingestEncoded(tenant, { series, fieldOf: (i) => `timeseries[${i}]`, protocol: 'remote_write' });
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
