/**
 * A lean gRPC path for long-lived bidi streams that carry many small messages (agent
 * heartbeats), served straight on the HTTP/2 stream instead of through connect-es.
 *
 * Why: on the connect-es path each request message passes a chain of async generators
 * (envelope split, parse, interceptor wrappers) and each stream goes through Node's HTTP/2
 * compatibility layer and adds an abort listener to the server's shared shutdown signal.
 * That costs ~100 µs of main-thread CPU per message and milliseconds per new stream: at
 * 10,000 agents beating once a second the event loop cannot keep up. Here a message costs a
 * frame parse, `fromBinary` and one callback.
 *
 * What stays the same: the server's interceptors (tracing, metrics, request logger, error
 * mapping, authentication) run once per stream, exactly as configured for connect-es, so
 * auth rules, error codes, spans and per-RPC metrics cannot drift between the two paths.
 * Only request messages bypass them: they go to the handler's session callbacks, not
 * through the interceptors' request iterable. Response messages (rare: directives) do pass
 * through the interceptors. Error statuses are written by connect-es's own
 * `setTrailerStatus`, so the wire form of an error (message encoding, details, metadata)
 * is the one connect-es sends.
 *
 * Not supported here, and routed to connect-es instead by the server: other protocols
 * (Connect, gRPC-Web), JSON, and requests declaring a compression (`grpc-encoding` other
 * than identity). Deadlines (`grpc-timeout`) are ignored: the streams served here are meant
 * to live as long as the agent does, and the client can always cancel.
 */
import { type ServerHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { fromBinary, toBinary, type DescMessage, type DescMethodBiDiStreaming, type MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError, createContextKey, createContextValues, type ContextValues, type Interceptor, type StreamRequest, type StreamResponse } from '@connectrpc/connect';
import { setTrailerStatus } from '@connectrpc/connect/protocol-grpc';

/** One native gRPC stream as its handler sees it (see `RpcServer.registerGrpcStream`). */
export interface GrpcStreamCall<O extends DescMessage> {
  /** Request-scoped values as the interceptors left them (principal, request logger). */
  readonly values: ContextValues;
  /** The request headers (without HTTP/2 pseudo-headers). */
  readonly requestHeader: Headers;
  /** Aborted when the stream is over: ended, reset, its connection gone, or the server stopping. */
  readonly signal: AbortSignal;
  /** True once the response has been ended (by the handler, the client or shutdown). */
  readonly ended: boolean;
  /** Queues a response message; ignored once ended. */
  send(message: MessageShape<O>): void;
  /**
   * Ends the response: with `grpc-status` OK, or with `error` mapped by the interceptors
   * like any error a connect-es handler throws. The first call wins.
   */
  end(error?: unknown): void;
}

/** Where the request messages of one stream go. */
export interface GrpcStreamSession<I extends DescMessage> {
  /** One request message, in order. Not called after the response has ended. */
  onMessage(message: MessageShape<I>): void;
  /**
   * The request side is over, called once: without error when the client half-closed,
   * with one when it reset the stream, the connection broke, or the input was malformed.
   */
  onEnd(error?: ConnectError): void;
}

/**
 * Opens the session of one stream; runs after the interceptors accepted the call. May
 * throw (for instance no principal): the error ends the stream like a handler's would.
 */
export type GrpcStreamHandler<I extends DescMessage, O extends DescMessage> = (call: GrpcStreamCall<O>) => GrpcStreamSession<I>;

/** A registered native stream method with its interceptor chain, built once. */
export interface NativeRoute {
  readonly method: DescMethodBiDiStreaming;
  readonly handler: GrpcStreamHandler<DescMessage, DescMessage>;
  readonly chain: (req: StreamRequest) => Promise<StreamResponse>;
}

/** Carries the stream from the route's chain entry to its innermost function. */
const nativeStreamKey = createContextKey<NativeGrpcStream | undefined>(undefined, { description: 'telemesh.native-grpc.stream' });

/** Builds a route: the interceptors wrapped around the function that opens the session. */
export function nativeRoute<I extends DescMessage, O extends DescMessage>(
  method: DescMethodBiDiStreaming<I, O>,
  handler: GrpcStreamHandler<I, O>,
  interceptors: readonly Interceptor[],
): NativeRoute {
  const inner = async (req: StreamRequest | { stream: false }): Promise<StreamResponse> => {
    const s = (req as StreamRequest).contextValues.get(nativeStreamKey);
    if (!s) throw new ConnectError('native gRPC stream lost its context', Code.Internal);
    return s.open(req as StreamRequest);
  };
  // The same composition as connect-es: the first interceptor is the outermost.
  let chain = inner as Parameters<Interceptor>[0];
  for (let i = interceptors.length - 1; i >= 0; i--) chain = interceptors[i]!(chain);
  return {
    method: method as unknown as DescMethodBiDiStreaming,
    handler: handler as unknown as GrpcStreamHandler<DescMessage, DescMessage>,
    chain: chain as (req: StreamRequest) => Promise<StreamResponse>,
  };
}

// Messages held while the interceptors (authentication: possibly a key fetch) decide; a
// client that floods before it is accepted is cut off rather than buffered without bound.
const MAX_EARLY_MESSAGES = 256;
const CONTENT_TYPES = new Set(['application/grpc', 'application/grpc+proto']);

/** Whether a request is plain binary gRPC without compression, which the native path serves. */
export function isNativeGrpc(headers: IncomingHttpHeaders): boolean {
  if (headers[':method'] !== 'POST') return false;
  const ct = headers['content-type'];
  if (typeof ct !== 'string') return false;
  const semi = ct.indexOf(';');
  if (!CONTENT_TYPES.has((semi === -1 ? ct : ct.slice(0, semi)).trim().toLowerCase())) return false;
  const enc = headers['grpc-encoding'];
  return enc === undefined || enc === 'identity';
}

/** Request messages can never be read through the interceptors' iterable on this path. */
const noRequestIterable: AsyncIterable<never> = {
  [Symbol.asyncIterator]() {
    return {
      next: () => Promise.reject(new ConnectError('native gRPC streams deliver request messages to the handler, not to interceptors', Code.Internal)),
    };
  },
};

/** Options of one native stream. */
export interface NativeStreamOptions {
  /** Largest request message accepted, bytes (`server.maxRequestBytes`). */
  readonly maxRequestBytes: number;
  /** Called once when the stream is closed, to drop it from the server's registry. */
  readonly onClose: (s: NativeGrpcStream) => void;
}

/** One live native stream: frames in, session callbacks, frames and trailers out. */
export class NativeGrpcStream implements GrpcStreamCall<DescMessage> {
  readonly values: ContextValues = createContextValues();
  readonly requestHeader: Headers;
  readonly #stream: ServerHttp2Stream;
  readonly #route: NativeRoute;
  readonly #opts: NativeStreamOptions;
  readonly #abort = new AbortController();
  // Response side.
  readonly #out: MessageShape<DescMessage>[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #endError: unknown;
  #headersSent = false;
  #finished = false;
  #responseHeader: Headers | undefined;
  #trailers: OutgoingHttpHeaders | undefined;
  // Request side.
  #session: GrpcStreamSession<DescMessage> | undefined;
  /** Messages decoded before the interceptors let the session open (authentication is async). */
  #early: MessageShape<DescMessage>[] | undefined = [];
  #earlyEnd: { error: ConnectError | undefined } | undefined;
  #inputDone = false;
  #partial: Buffer[] | undefined;
  #partialBytes = 0;
  #need = 0;

  constructor(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, route: NativeRoute, opts: NativeStreamOptions) {
    this.#stream = stream;
    this.#route = route;
    this.#opts = opts;
    const h = new Headers();
    for (const [k, v] of Object.entries(headers)) {
      if (k.startsWith(':') || v === undefined) continue;
      try {
        if (Array.isArray(v)) for (const x of v) h.append(k, x);
        else h.set(k, String(v));
      } catch {
        // A value the Fetch Headers class refuses (HTTP/2 allows a few more bytes) is left out,
        // as connect-es's own header conversion cannot carry it either.
      }
    }
    this.requestHeader = h;
    this.values.set(nativeStreamKey, this);
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('end', () => this.#onInputEnd());
    // 'error' precedes 'close' on a reset with an error code; 'close' does the work.
    stream.on('error', () => {});
    stream.on('close', () => this.#onClose());
    stream.on('wantTrailers', () => stream.sendTrailers(this.#trailers ?? { 'grpc-status': '0' }));
    const authority = headers[':authority'] ?? 'localhost';
    const req: StreamRequest = {
      stream: true,
      service: route.method.parent,
      method: route.method,
      requestMethod: 'POST',
      url: `${headers[':scheme'] ?? 'http'}://${authority}${headers[':path'] ?? ''}`,
      signal: this.#abort.signal,
      header: h,
      contextValues: this.values,
      message: noRequestIterable,
    };
    void this.#run(req);
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get ended(): boolean {
    return this.#ended;
  }

  send(message: MessageShape<DescMessage>): void {
    if (this.#ended) return;
    this.#out.push(message);
    this.#wake?.();
  }

  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endError = error;
    this.#wake?.();
  }

  /** The innermost step of the interceptor chain: opens the session, returns the response. */
  open(req: StreamRequest): StreamResponse {
    const session = this.#route.handler(this);
    this.#session = session;
    const early = this.#early ?? [];
    this.#early = undefined;
    for (const m of early) {
      if (this.#ended) break;
      session.onMessage(m);
    }
    if (this.#earlyEnd) session.onEnd(this.#earlyEnd.error);
    return {
      stream: true,
      service: req.service,
      method: req.method,
      header: new Headers(),
      trailer: new Headers(),
      message: this.#drain(),
    };
  }

  async *#drain(): AsyncGenerator<MessageShape<DescMessage>> {
    for (;;) {
      while (this.#out.length > 0) yield this.#out.shift()!;
      if (this.#ended) {
        if (this.#endError !== undefined) throw this.#endError;
        return;
      }
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }

  /** Runs the interceptor chain once, then writes what the response iterable yields. */
  async #run(req: StreamRequest): Promise<void> {
    let res: StreamResponse;
    try {
      res = await this.#route.chain(req);
    } catch (err) {
      // Refused before the session opened (authentication, no principal, ...).
      this.#early = undefined;
      this.end(err);
      this.#finish(err);
      return;
    }
    this.#responseHeader = res.header;
    try {
      for await (const m of res.message) this.#write(m);
      this.#finish(undefined, res.trailer);
    } catch (err) {
      this.#finish(err, res.trailer);
    }
  }

  #write(m: MessageShape<DescMessage>): void {
    const s = this.#stream;
    if (s.destroyed || s.closed) return;
    const body = toBinary(this.#route.method.output, m);
    const frame = Buffer.allocUnsafe(5 + body.length);
    frame[0] = 0;
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    if (!this.#headersSent) {
      this.#headersSent = true;
      s.respond({ ...headerObject(this.#responseHeader), ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    }
    // Responses are rare directives: no backpressure handling beyond HTTP/2's own buffering.
    s.write(frame);
  }

  /** Ends the response with trailers carrying the status (trailers-only if nothing was sent). */
  #finish(err: unknown, trailer?: Headers): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#ended = true;
    this.#abort.abort();
    const s = this.#stream;
    if (s.destroyed || s.closed) return;
    // As connect-es's gRPC handler does: anything but a ConnectError is an internal error.
    const error = err === undefined ? undefined : err instanceof ConnectError ? err : new ConnectError('internal error', Code.Internal, undefined, undefined, err);
    const t = setTrailerStatus(new Headers(trailer), error);
    const trailers = headerObject(t);
    if (!this.#headersSent) {
      this.#headersSent = true;
      s.respond({ ...headerObject(this.#responseHeader), ...trailers, ':status': 200, 'content-type': 'application/grpc' }, { endStream: true });
    } else {
      this.#trailers = trailers;
      s.end();
    }
  }

  /** Splits 'data' chunks into length-prefixed messages (5-byte header: flag, length). */
  #onData(chunk: Buffer): void {
    if (this.#inputDone) return;
    let buf = chunk;
    if (this.#partial) {
      this.#partial.push(chunk);
      this.#partialBytes += chunk.length;
      if (this.#partialBytes < this.#need) return;
      buf = Buffer.concat(this.#partial, this.#partialBytes);
      this.#partial = undefined;
    }
    let off = 0;
    let need = 0;
    while (off < buf.length) {
      const rest = buf.length - off;
      if (rest < 5) {
        need = 5;
        break;
      }
      const len = buf.readUInt32BE(off + 1);
      if (len > this.#opts.maxRequestBytes) {
        // The same code and text as connect-es's limit (`readMaxBytes`).
        return this.#inputError(new ConnectError(`message size ${len} is larger than configured readMaxBytes ${this.#opts.maxRequestBytes}`, Code.ResourceExhausted));
      }
      if ((buf[off]! & 1) === 1) {
        // Compressed requests go to connect-es; a compressed frame without an encoding is a protocol error.
        return this.#inputError(new ConnectError('received compressed envelope, but do not know how to decompress', Code.Internal));
      }
      if (rest < 5 + len) {
        need = 5 + len;
        break;
      }
      let msg: MessageShape<DescMessage>;
      try {
        msg = fromBinary(this.#route.method.input, buf.subarray(off + 5, off + 5 + len));
      } catch (err) {
        return this.#inputError(new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal));
      }
      off += 5 + len;
      this.#deliver(msg);
      if (this.#inputDone) return;
    }
    if (off < buf.length) {
      this.#partial = [buf.subarray(off)];
      this.#partialBytes = buf.length - off;
      this.#need = need;
    }
  }

  #deliver(msg: MessageShape<DescMessage>): void {
    // After the response ended the session has nothing more to read (as on connect-es,
    // where the handler has returned); only the end of the input is still reported.
    if (this.#ended) return;
    if (this.#session) this.#session.onMessage(msg);
    else if (this.#early && this.#early.length >= MAX_EARLY_MESSAGES) {
      this.#inputError(new ConnectError(`more than ${MAX_EARLY_MESSAGES} messages before the call was accepted`, Code.ResourceExhausted));
    } else this.#early?.push(msg);
  }

  #inputEnded(error: ConnectError | undefined): void {
    if (this.#inputDone) return;
    this.#inputDone = true;
    this.#partial = undefined;
    if (this.#session) this.#session.onEnd(error);
    else if (this.#early) this.#earlyEnd = { error };
  }

  /** Malformed input: the client learns why (the response ends first), then the session. */
  #inputError(err: ConnectError): void {
    this.end(err);
    this.#inputEnded(err);
  }

  #onInputEnd(): void {
    // Node also ends the readable side of a stream that was aborted (reset, connection
    // lost); that is no half-close, and 'close' reports it.
    if (this.#stream.aborted || this.#stream.destroyed) return;
    if (this.#partial) return this.#inputError(new ConnectError('protocol error: incomplete envelope', Code.InvalidArgument));
    this.#inputEnded(undefined);
  }

  #onClose(): void {
    // Closed before the client half-closed: a reset (RST_STREAM) or a lost connection. The
    // session hears of it first, so a handler that ends its response itself on a broken
    // input does so in its own way; otherwise the response ends as cancelled.
    const reset = new ConnectError(`stream closed by the client or connection (code ${this.#stream.rstCode ?? 0})`, Code.Canceled);
    this.#inputEnded(reset);
    this.end(reset);
    this.#abort.abort();
    this.#opts.onClose(this);
  }
}

function headerObject(h: Headers | undefined): Record<string, string> {
  const o: Record<string, string> = {};
  if (h) for (const [k, v] of h) o[k] = v;
  return o;
}
