/**
 * Test support for everything that talks to the bus: a real nats-server with JetStream on
 * a free loopback port and a throw-away store directory. Integration tests across the
 * repository use this rather than a fake, so they exercise the same server the product
 * runs against.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { StartupError } from '../runtime/errors.js';
import { startNatsServer, type NatsServerOptions } from './nats-server.js';

/** A nats-server started for one test (file or suite). */
export interface TestNats {
  /** Client URL on 127.0.0.1. */
  readonly url: string;
  readonly port: number;
  /** The temporary JetStream store directory; removed by `stop()`. */
  readonly storeDir: string;
  /** Stops the server and removes its store directory. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startTestNats}. */
export interface TestNatsOptions {
  /** Logger for the server's output. Default: pino at TELEMESH_LOG_LEVEL, else silent. */
  readonly logger?: Logger;
  /** Override the executable, e.g. to test the missing-binary path. */
  readonly binary?: NatsServerOptions['binary'];
}

/**
 * Asks the kernel for a free TCP port on `host`. Another process may take the port before
 * the caller binds it, so callers must tolerate "port in use" (startTestNats retries).
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A logger for tests: silent unless TELEMESH_LOG_LEVEL asks for output. */
export function testLogger(): Logger {
  return pino({ level: process.env['TELEMESH_LOG_LEVEL'] ?? 'silent' });
}

/**
 * Starts nats-server (JetStream on, bound to 127.0.0.1) in a fresh temp directory on a
 * free port. Call `stop()` in an `after` hook: it stops the server and deletes the store.
 */
export async function startTestNats(opts: TestNatsOptions = {}): Promise<TestNats> {
  const logger = opts.logger ?? testLogger();
  const storeDir = await mkdtemp(join(tmpdir(), 'telemesh-nats-'));
  let lastErr: unknown;
  // Free-port probing races with other processes; a couple of retries make it reliable.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      const server = await startNatsServer({ port, storeDir, logger, ...(opts.binary !== undefined ? { binary: opts.binary } : {}) });
      let stopping: Promise<void> | undefined;
      return {
        url: server.url,
        port,
        storeDir,
        stop: () =>
          (stopping ??= (async () => {
            try {
              await server.stop();
            } finally {
              await rm(storeDir, { recursive: true, force: true });
            }
          })()),
      };
    } catch (err) {
      lastErr = err;
      if (!(err instanceof StartupError && err.setting === 'nats.embeddedPort')) break;
    }
  }
  await rm(storeDir, { recursive: true, force: true });
  throw lastErr;
}

/**
 * Polls `cond` every `intervalMs` until it returns true or `timeoutMs` passes; resolves to
 * its last answer. For asserting on eventually-consistent bus state without fixed sleeps.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, intervalMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return cond();
}
