/**
 * The Connect servers: HTTP/1.1 on `server.httpPort` (Connect JSON and binary, gRPC-Web,
 * plain HTTP endpoints) and HTTP/2 on `server.grpcPort` (gRPC, Connect, gRPC-Web), both
 * from one handler, optionally TLS. Services register their implementation and HTTP
 * routes; health, `/livez`, `/readyz` and `/metrics` are built in. Listening starts early
 * so probes answer while modules start; an RPC whose service has not registered yet gets
 * `unavailable`, not 404. Hot bidi streams (agent heartbeats) can also be served natively
 * for plain gRPC clients on the HTTP/2 listener, beside connect-es (see ./native-grpc.ts).
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { Code, ConnectError, type ConnectRouter, type Interceptor, type ServiceImpl } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { DescMessage, DescMethodBiDiStreaming, DescService } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { Health } from '../contracts/grpc/health/v1/health_pb.js';
import { StartupError } from './errors.js';
import { healthService, type HealthRegistry } from './health.js';
import { describeSetting } from './config.js';
import { tracedHttp } from './http.js';
import { isNativeGrpc, nativeRoute, NativeGrpcStream, type GrpcStreamHandler, type NativeRoute } from './native-grpc.js';

export type { GrpcStreamCall, GrpcStreamHandler, GrpcStreamSession } from './native-grpc.js';

/** A request to a plain HTTP route. */
export type HttpRequest = http.IncomingMessage | http2.Http2ServerRequest;
/** The response of a plain HTTP route. */
export type HttpResponse = http.ServerResponse | http2.Http2ServerResponse;
/** Handles a plain HTTP route. */
export type HttpHandler = (req: HttpRequest, res: HttpResponse) => void | Promise<void>;

/** A plain HTTP route: exact path, or every path under a prefix ending in `/`. */
export interface HttpRoute {
  /** `/metrics` (exact) or `/api/v1/` (prefix). */
  readonly path: string;
  /** Allowed methods; others get 405. */
  readonly methods: readonly string[];
  readonly handler: HttpHandler;
}

/** Server settings (the `server.*` configuration keys). */
export interface ServerOptions {
  readonly host: string;
  readonly httpPort: number;
  readonly grpcPort: number;
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
  readonly maxRequestBytes: number;
  readonly shutdownTimeoutMs: number;
}

/** What the server needs from the process. */
export interface ServerDeps {
  readonly logger: Logger;
  readonly registry: Registry;
  readonly health: HealthRegistry;
  /** Interceptors, outermost first. */
  readonly interceptors: readonly Interceptor[];
  /** Module states for `/readyz`. */
  readiness(): { ready: boolean; modules: ReadonlyMap<string, string> };
}

/** Connect (unary and streaming), gRPC and gRPC-Web requests in their JSON encoding. */
const JSON_CONTENT_TYPE = /^application\/((connect|grpc|grpc-web)\+)?json\b/i;

/** The process's pair of listeners and everything registered on them. */
export class RpcServer {
  readonly #opts: ServerOptions;
  readonly #deps: ServerDeps;
  readonly #services: Array<(router: ConnectRouter) => void> = [];
  /** Services answering JSON-encoded calls of some methods instead (see `registerService`). */
  readonly #jsonServices: Array<(router: ConnectRouter) => void> = [];
  /** Paths (`/<service>/<method>`) whose JSON-encoded calls go to `#jsonHandler`. */
  readonly #jsonPaths = new Set<string>();
  #jsonHandler: ReturnType<typeof connectNodeAdapter> | undefined;
  readonly #serviceNames = new Set<string>();
  readonly #routes: HttpRoute[] = [];
  readonly #shutdown = new AbortController();
  #handler: ReturnType<typeof connectNodeAdapter>;
  #http?: http.Server | https.Server;
  #h2?: http2.Http2Server | http2.Http2SecureServer;
  readonly #sockets = new Set<Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  /** Native gRPC stream methods by path (`/<service>/<method>`). */
  readonly #native = new Map<string, NativeRoute>();
  /** Live native streams: shutdown ends them here, with no listener per stream. */
  readonly #nativeStreams = new Set<NativeGrpcStream>();
  #closing: Promise<void> | undefined;

  constructor(opts: ServerOptions, deps: ServerDeps) {
    this.#opts = opts;
    this.#deps = deps;
    this.#services.push((router) => router.service(Health, healthService(deps.health)));
    this.#routes.push(
      { path: '/livez', methods: ['GET', 'HEAD'], handler: (_req, res) => text(res, 200, 'ok\n') },
      { path: '/readyz', methods: ['GET', 'HEAD'], handler: (_req, res) => this.#readyz(res) },
      { path: '/metrics', methods: ['GET'], handler: (_req, res) => this.#metrics(res) },
    );
    this.#handler = this.#build(this.#services);
  }

  /**
   * Registers a service implementation; methods left out answer `unimplemented`.
   *
   * `json`, optional, serves the JSON encodings (Connect, gRPC and gRPC-Web JSON) of the
   * methods it implements through another descriptor of the same service. Why: a service
   * served through a view of its contract whose message fields are read as `bytes` (same
   * binary wire format, see libs/model/series-wire.ts) would expect base64 strings where
   * JSON clients send objects; their calls go to the contract's own descriptor instead.
   */
  registerService<T extends DescService, J extends DescService>(
    service: T,
    impl: Partial<ServiceImpl<T>>,
    json?: { readonly service: J; readonly impl: Partial<ServiceImpl<J>> },
  ): void {
    this.#services.push((router) => router.service(service, impl));
    this.#serviceNames.add(service.typeName);
    this.#handler = this.#build(this.#services);
    if (json !== undefined) {
      this.#jsonServices.push((router) => router.service(json.service, json.impl));
      for (const m of json.service.methods) if (m.localName in json.impl) this.#jsonPaths.add(`/${json.service.typeName}/${m.name}`);
      this.#jsonHandler = this.#build(this.#jsonServices);
    }
  }

  /**
   * Serves one bidi streaming method natively on the HTTP/2 listener for plain binary gRPC
   * clients (see ./native-grpc.ts): the interceptors run once per stream, request messages
   * go straight to the handler's session. Every other protocol, encoding and listener still
   * reaches the method through connect-es, so the service must be registered there too.
   */
  registerGrpcStream<I extends DescMessage, O extends DescMessage>(method: DescMethodBiDiStreaming<I, O>, handler: GrpcStreamHandler<I, O>): void {
    this.#native.set(`/${method.parent.typeName}/${method.name}`, nativeRoute(method, handler, this.#deps.interceptors));
  }

  /**
   * Registers a plain HTTP route (its handler does its own authentication). Each request
   * runs in a SERVER span that continues the caller's trace context.
   */
  registerHttp(route: HttpRoute): void {
    this.#routes.push({ ...route, handler: tracedHttp(route.path, route.handler) });
  }

  /** Aborted when shutdown begins, so long-lived streams can finish. */
  get shutdownSignal(): AbortSignal {
    return this.#shutdown.signal;
  }

  /** Actual HTTP/1.1 port (differs from the option when it was 0). */
  get httpPort(): number {
    return (this.#http?.address() as AddressInfo | null)?.port ?? this.#opts.httpPort;
  }

  /** Actual HTTP/2 port. */
  get grpcPort(): number {
    return (this.#h2?.address() as AddressInfo | null)?.port ?? this.#opts.grpcPort;
  }

  /** Base URLs of both listeners. */
  get urls(): { http: string; grpc: string } {
    const scheme = this.#tls ? 'https' : 'http';
    const host = this.#opts.host.includes(':') ? `[${this.#opts.host}]` : this.#opts.host;
    return { http: `${scheme}://${host}:${this.httpPort}`, grpc: `${scheme}://${host}:${this.grpcPort}` };
  }

  get #tls(): boolean {
    return this.#opts.tlsCertFile !== '' && this.#opts.tlsKeyFile !== '';
  }

  #build(services: ReadonlyArray<(router: ConnectRouter) => void>): ReturnType<typeof connectNodeAdapter> {
    return connectNodeAdapter({
      routes: (router) => {
        for (const register of services) register(router);
      },
      interceptors: [...this.#deps.interceptors],
      readMaxBytes: this.#opts.maxRequestBytes,
      shutdownSignal: this.#shutdown.signal,
      fallback: (req, res) => void this.#fallback(req, res as HttpResponse),
    });
  }

  async #fallback(req: HttpRequest, res: HttpResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = this.#routes.find((r) => (r.path.endsWith('/') ? path.startsWith(r.path) : path === r.path));
    if (!route) {
      // An RPC path whose service has not registered yet (still starting) is unavailable.
      if (/^\/[a-z0-9_.]+\.[A-Za-z0-9_]+\/[A-Za-z0-9_]+$/.test(path) && req.method === 'POST') {
        const err = new ConnectError('service not available on this server (not started, or not part of its target)', Code.Unavailable);
        return text(res, 503, `${err.message}\n`);
      }
      return text(res, 404, 'not found\n');
    }
    if (!route.methods.includes(req.method ?? 'GET')) {
      res.setHeader('allow', route.methods.join(', '));
      return text(res, 405, 'method not allowed\n');
    }
    try {
      await route.handler(req, res);
    } catch (err) {
      this.#deps.logger.error({ err, path }, 'http handler failed');
      if (!res.headersSent) text(res, 500, 'internal error\n');
      else res.end();
    }
  }

  #readyz(res: HttpResponse): void {
    const { ready, modules } = this.#deps.readiness();
    const lines = [...modules].map(([name, state]) => `${name}: ${state}`).join('\n');
    text(res, ready && !this.#shutdown.signal.aborted ? 200 : 503, `${ready ? 'ready' : 'not ready'}\n${lines}\n`);
  }

  async #metrics(res: HttpResponse): Promise<void> {
    const body = await this.#deps.registry.metrics();
    res.writeHead(200, { 'content-type': this.#deps.registry.contentType });
    res.end(body);
  }

  /** Starts both listeners. A port in use stops start-up with the setting to change. */
  async listen(): Promise<void> {
    const handler = (req: HttpRequest, res: HttpResponse) => {
      const json = this.#jsonHandler !== undefined && JSON_CONTENT_TYPE.test(req.headers['content-type'] ?? '') && this.#jsonPaths.has((req.url ?? '').split('?')[0]!);
      return (json ? this.#jsonHandler! : this.#handler)(req as never, res as never);
    };
    let tlsOpts: { cert: Buffer; key: Buffer } | undefined;
    if (this.#tls) {
      try {
        tlsOpts = { cert: readFileSync(this.#opts.tlsCertFile), key: readFileSync(this.#opts.tlsKeyFile) };
      } catch (err) {
        throw new StartupError(`cannot read TLS certificate or key: ${(err as Error).message}`, describeSetting('server.tlsCertFile'));
      }
    }
    this.#http = tlsOpts ? https.createServer(tlsOpts, handler) : http.createServer(handler);
    this.#http.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
    // Agents multiplex many long-lived streams over few connections; Node's default of 10 MB
    // of buffered data per HTTP/2 session stalls new streams well before CPU runs out.
    const h2opts = { maxSessionMemory: 128 };
    this.#h2 = tlsOpts ? http2.createSecureServer({ ...tlsOpts, ...h2opts, allowHTTP1: true }, handler) : http2.createServer(h2opts, handler);
    this.#routeNativeStreams(this.#h2);
    this.#h2.on('session', (s: http2.ServerHttp2Session) => {
      this.#sessions.add(s);
      s.once('close', () => this.#sessions.delete(s));
    });
    await bind(this.#http, this.#opts.host, this.#opts.httpPort, 'server.httpPort');
    await bind(this.#h2, this.#opts.host, this.#opts.grpcPort, 'server.grpcPort');
    this.#deps.logger.info({ http: this.urls.http, grpc: this.urls.grpc }, 'listening');
  }

  /**
   * Puts the native gRPC path in front of Node's HTTP/2 compatibility layer. That layer is
   * itself just a 'stream' listener (added by Node when the server got a request handler)
   * that wraps each stream in request/response objects for connect-es; a native stream must
   * be taken before it does, because once wrapped its data already flows to connect-es. So
   * its listener is replaced by one that hands registered gRPC paths to the native path and
   * everything else to the original listener, unchanged.
   */
  #routeNativeStreams(h2: http2.Http2Server | http2.Http2SecureServer): void {
    type StreamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;
    const compat = h2.listeners('stream') as StreamListener[];
    for (const l of compat) h2.off('stream', l);
    h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
      const route = this.#native.size > 0 ? this.#native.get(headers[':path'] ?? '') : undefined;
      if (route && isNativeGrpc(headers)) {
        if (this.#shutdown.signal.aborted) {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(Code.Unavailable), 'grpc-message': encodeURIComponent('server is shutting down') }, { endStream: true });
          return;
        }
        const s = new NativeGrpcStream(stream, headers, route, {
          maxRequestBytes: this.#opts.maxRequestBytes,
          onClose: (x) => this.#nativeStreams.delete(x),
        });
        if (!stream.closed) this.#nativeStreams.add(s);
        return;
      }
      for (const l of compat) l.call(h2, stream, headers, flags, rawHeaders);
    });
  }

  /**
   * Graceful shutdown: stop accepting, tell streams to finish (shutdown signal, HTTP/2
   * GOAWAY), wait for in-flight requests up to `shutdownTimeoutMs`, then cut what is left.
   * Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const shuttingDown = new ConnectError('server is shutting down', Code.Unavailable);
      this.#shutdown.abort(shuttingDown);
      for (const s of this.#nativeStreams) s.end(shuttingDown);
      const closed = Promise.all([
        this.#http ? new Promise<void>((r) => this.#http!.close(() => r())) : undefined,
        this.#h2 ? new Promise<void>((r) => this.#h2!.close(() => r())) : undefined,
      ]);
      this.#http?.closeIdleConnections();
      for (const s of this.#sessions) s.close();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), this.#opts.shutdownTimeoutMs)));
      const outcome = await Promise.race([closed.then(() => 'closed' as const), timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        this.#deps.logger.warn('shutdown timeout: closing remaining connections');
        for (const s of this.#sockets) s.destroy();
        for (const s of this.#sessions) s.destroy();
        await closed;
      }
    })();
    return this.#closing;
  }
}

function text(res: HttpResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(body);
}

function bind(server: http.Server | http2.Http2Server | http2.Http2SecureServer, host: string, port: number, setting: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const reason = err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EACCES' ? 'permission denied' : err.message;
      reject(new StartupError(`cannot listen on ${host}:${port}: ${reason}`, describeSetting(setting)));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
