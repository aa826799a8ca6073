/**
 * The IngestService implementation: unary Write and the agents' bidirectional Stream.
 * Both hand their series to the shared {@link Ingester}; acknowledged means durable on the
 * bus (JetStream acked it), and aggregation stores it. Served as `EncodedIngestService`
 * (libs/model): requests arrive with their series still encoded; JSON clients' requests,
 * decoded as messages, are encoded first (`writeMessages`, `streamMessages`).
 */
import { create } from '@bufbuild/protobuf';
import type { HandlerContext } from '@connectrpc/connect';
import { SeriesRejectionSchema, WriteResultSchema, type HistogramSeries, type SummarySeries, type WriteResult } from '../../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import {
  StreamResponseSchema,
  WriteResponseSchema,
  type StreamRequest,
  type StreamResponse,
  type WriteRequest,
  type WriteResponse,
} from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { requirePrincipal } from '../../libs/runtime/auth/index.js';
import { InvalidArgumentError } from '../../libs/runtime/errors.js';
import { expandHistogramsAndSummaries, type Expanded } from './expand.js';
import type { EncodedIngestInput, Ingester, IngestOutcome } from './pipeline.js';
import { encodeSeriesMessage, type Encoded } from './wire.js';

export { splitBatch, type SamplePublisher } from './pipeline.js';

/** Batches of one stream processed at once; acks still go out in batch order. */
const STREAM_WINDOW = 4;

/** Implements `telemesh.ingest.v1.IngestService` (as served by {@link EncodedIngestService}). */
export class IngestServiceImpl {
  readonly #ingester: Ingester;

  constructor(ingester: Ingester) {
    this.#ingester = ingester;
  }

  /** Ingests a native request; malformed histogram points are rejected like invalid samples. */
  async #ingest(tenant: string, req: Encoded<WriteRequest> | Encoded<StreamRequest>, key: string): Promise<IngestOutcome> {
    const { input, problems } = nativeInput(req.series, req.seriesStartTimesMs, req.histograms, req.summaries, key);
    const outcome = await this.#ingester.ingestEncoded(tenant, input);
    if (problems.length === 0) return outcome;
    let rejected = outcome.rejectedSamples;
    const rejections = [...outcome.rejections];
    for (const p of problems) {
      rejected += p.samples;
      rejections.push(create(SeriesRejectionSchema, { seriesIndex: p.index, rejectedSamples: p.samples, violation: { field: p.field, description: p.description } }));
    }
    return { acceptedSamples: outcome.acceptedSamples, rejectedSamples: rejected, rejections };
  }

  /** Unary write: stores the valid samples, then reports the invalid ones as `invalid_argument`. */
  async write(req: Encoded<WriteRequest>, ctx: HandlerContext): Promise<WriteResponse> {
    const { tenant } = requirePrincipal(ctx);
    const outcome = await this.#ingest(tenant, req, req.requestId === '' ? '' : `w:${req.requestId}`);
    const result = toResult(outcome);
    if (outcome.rejections.length > 0) {
      const first = outcome.rejections[0]!.violation!;
      const more = outcome.rejections.length > 1 ? ` (and ${outcome.rejections.length - 1} more series with rejected samples)` : '';
      throw new InvalidArgumentError(
        `${first.field}: ${first.description}${more}; ${outcome.acceptedSamples} samples accepted, ${outcome.rejectedSamples} rejected`,
        outcome.rejections.map((r) => ({ field: r.violation!.field, description: r.violation!.description })),
        { detail: { desc: WriteResultSchema, value: result } },
      );
    }
    return create(WriteResponseSchema, { result });
  }

  /**
   * `write` and `stream` for clients whose series arrive as messages: the JSON encodings,
   * which the server routes to the contract's own descriptor (see
   * `RpcServer.registerService`). Each series is encoded once, as binary clients send it.
   */
  writeMessages(req: WriteRequest, ctx: HandlerContext): Promise<WriteResponse> {
    return this.write(encoded(req), ctx);
  }

  streamMessages(requests: AsyncIterable<StreamRequest>, ctx: HandlerContext): AsyncGenerator<StreamResponse> {
    return this.stream(encodedAll(requests), ctx);
  }

  /**
   * Bidirectional stream: up to {@link STREAM_WINDOW} batches are ingested concurrently;
   * each is acknowledged, in order, once JetStream acknowledged it. A whole-batch failure
   * ends the stream with its code; the client replays unacknowledged batches.
   */
  async *stream(requests: AsyncIterable<Encoded<StreamRequest>>, ctx: HandlerContext): AsyncGenerator<StreamResponse> {
    const { tenant } = requirePrincipal(ctx);
    const queue: Array<Promise<StreamResponse>> = [];
    let readDone = false;
    let readError: unknown;
    let wakeWriter: (() => void) | undefined;
    let wakeReader: (() => void) | undefined;
    const signalWriter = () => {
      wakeWriter?.();
      wakeWriter = undefined;
    };
    const handle = async (req: Encoded<StreamRequest>): Promise<StreamResponse> => {
      const key = req.batchId === '' ? '' : `s:${req.batchId}`;
      const outcome = await this.#ingest(tenant, req, key);
      return create(StreamResponseSchema, { batchSeq: req.batchSeq, result: toResult(outcome) });
    };
    // The reader fills the window; it never throws (its error ends the writer below).
    void (async () => {
      try {
        for await (const req of requests) {
          while (queue.length >= STREAM_WINDOW && !ctx.signal.aborted) await new Promise<void>((r) => (wakeReader = r));
          if (ctx.signal.aborted) break;
          const p = handle(req);
          // Observed when its turn comes; this keeps an early failure from being unhandled.
          p.catch(() => undefined);
          queue.push(p);
          signalWriter();
        }
      } catch (err) {
        readError = err;
      } finally {
        readDone = true;
        signalWriter();
      }
    })();
    const onAbort = () => {
      wakeReader?.();
      signalWriter();
    };
    ctx.signal.addEventListener('abort', onAbort);
    try {
      for (;;) {
        const head = queue[0];
        if (head === undefined) {
          if (readDone) {
            if (readError !== undefined) throw readError;
            return;
          }
          if (ctx.signal.aborted) return;
          await new Promise<void>((r) => (wakeWriter = r));
          continue;
        }
        const ack = await head;
        queue.shift();
        wakeReader?.();
        wakeReader = undefined;
        yield ack;
      }
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      wakeReader?.();
    }
  }
}

/** Builds the shared-path input of a native request: plain series plus expanded histograms and summaries. */
export function nativeInput(
  series: Uint8Array[],
  seriesStartTimesMs: readonly bigint[],
  histograms: readonly HistogramSeries[],
  summaries: readonly SummarySeries[],
  idempotencyKey: string,
): { input: EncodedIngestInput; problems: Expanded['problems'] } {
  if (histograms.length === 0 && summaries.length === 0) {
    const input = { series, startTimesMs: seriesStartTimesMs.length > 0 ? seriesStartTimesMs : undefined, idempotencyKey, protocol: 'native' };
    return { input, problems: [] };
  }
  const x = expandHistogramsAndSummaries(histograms, summaries);
  const n = series.length;
  const starts: bigint[] = [];
  for (let i = 0; i < n; i++) starts.push(seriesStartTimesMs[i] ?? 0n);
  starts.push(...x.startTimesMs);
  const input: EncodedIngestInput = {
    series: [...series, ...x.series.map(encodeSeriesMessage)],
    startTimesMs: starts,
    fieldOf: (i) => (i < n ? `series[${i}]` : x.fields[i - n]!),
    idempotencyKey,
    protocol: 'native',
  };
  return { input, problems: x.problems };
}

function toResult(o: IngestOutcome): WriteResult {
  return create(WriteResultSchema, {
    acceptedSamples: BigInt(o.acceptedSamples),
    rejectedSamples: BigInt(o.rejectedSamples),
    rejections: o.rejections,
  });
}

/** A request with its series encoded, as `EncodedIngestService` decodes it. */
function encoded<R extends WriteRequest | StreamRequest>(r: R): Encoded<R> {
  return { ...r, series: r.series.map(encodeSeriesMessage) };
}

async function* encodedAll(requests: AsyncIterable<StreamRequest>): AsyncGenerator<Encoded<StreamRequest>> {
  for await (const r of requests) yield encoded(r);
}
