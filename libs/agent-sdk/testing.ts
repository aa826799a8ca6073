/**
 * Test support: a small IngestService `Stream` server on a loopback HTTP/2 port (h2c),
 * built with connect-node. It stands in for ingestion where a test is about the SDK's own
 * behaviour (batching, reconnect, replay) and must control the server precisely, e.g.
 * drop the TCP connection between receiving a batch and acknowledging it. End-to-end
 * suites use the real `telemesh serve` instead.
 */
import { createServer, type Http2Server } from 'node:http2';
import type { Socket } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { WriteResultSchema } from '../contracts/telemesh/ingest/v1/ingest_pb.js';
import { IngestService, StreamResponseSchema, type StreamRequest } from '../contracts/telemesh/ingest/v1/ingest_service_pb.js';

/** One batch as the fake server received it. */
export interface ReceivedBatch {
  readonly batchSeq: bigint;
  readonly batchId: string;
  readonly samples: number;
  readonly authorization: string | null;
  /** The request as received. */
  readonly request: StreamRequest;
}

/** What the fake does with a batch. */
export type FakeAction = 'ack' | 'drop' | ConnectError;

/** Behaviour knobs of {@link startFakeIngest}. */
export interface FakeIngestOptions {
  /** Port to bind on 127.0.0.1 (0: any free port). */
  readonly port?: number;
  /**
   * Called for every received batch before it is acknowledged; returning `'drop'` destroys
   * every open TCP connection instead of acknowledging (the batch counts as "stored");
   * returning a ConnectError ends the stream with it (the batch is not stored).
   */
  readonly onBatch?: (b: ReceivedBatch, server: FakeIngest) => FakeAction | Promise<FakeAction>;
  /** When set, requests without exactly this authorization header fail `unauthenticated`. */
  readonly requireAuthorization?: string;
}

/** A running fake ingestion server. */
export interface FakeIngest {
  /** Base URL for a gRPC transport. */
  readonly url: string;
  readonly port: number;
  /** Every batch received, in order (replays included). */
  readonly received: ReceivedBatch[];
  /** Samples per distinct batch id "stored" (what JetStream's Nats-Msg-Id dedupe keeps: a replay overwrites, never adds). */
  readonly stored: Map<string, number>;
  /** Connections accepted so far. */
  connections(): number;
  /** Destroys every open connection (the server keeps listening). */
  dropConnections(): void;
  /** Stops listening and destroys connections. Idempotent. */
  stop(): Promise<void>;
}

/** Starts a fake IngestService Stream server on 127.0.0.1. */
export async function startFakeIngest(opts: FakeIngestOptions = {}): Promise<FakeIngest> {
  const received: ReceivedBatch[] = [];
  const stored = new Map<string, number>();
  const sockets = new Set<Socket>();
  let connectionCount = 0;
  // eslint-disable-next-line prefer-const -- assigned after the server object exists
  let fake: FakeIngest;
  const routes = (router: ConnectRouter) =>
    router.service(IngestService, {
      async *stream(requests: AsyncIterable<StreamRequest>, ctx) {
        const authorization = ctx.requestHeader.get('authorization');
        if (opts.requireAuthorization !== undefined && authorization !== opts.requireAuthorization) {
          throw new ConnectError('bad token', Code.Unauthenticated);
        }
        for await (const req of requests) {
          let samples = 0;
          for (const s of req.series) samples += s.values.length;
          const b: ReceivedBatch = { batchSeq: req.batchSeq, batchId: req.batchId, samples, authorization, request: req };
          received.push(b);
          const action = (await opts.onBatch?.(b, fake)) ?? 'ack';
          if (action instanceof ConnectError) throw action;
          if (action === 'drop') {
            // Stored (as if published to JetStream) but never acknowledged: the worst case for replay.
            stored.set(req.batchId, samples);
            fake.dropConnections();
            return;
          }
          stored.set(req.batchId, samples);
          yield create(StreamResponseSchema, {
            batchSeq: req.batchSeq,
            result: create(WriteResultSchema, { acceptedSamples: BigInt(samples), rejectedSamples: 0n }),
          });
        }
      },
    });
  const server: Http2Server = createServer(connectNodeAdapter({ routes }));
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    connectionCount++;
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  let stopping: Promise<void> | undefined;
  fake = {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    stored,
    connections: () => connectionCount,
    dropConnections() {
      for (const s of sockets) s.destroy();
    },
    stop() {
      return (stopping ??= new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }));
    },
  };
  return fake;
}
