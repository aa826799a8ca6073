/**
 * Runs a local nats-server with JetStream as a child process: the embedded bus of
 * `telemesh serve --target=all` on a laptop, and the real peer of every integration test.
 *
 * The server is started through a tiny POSIX shell supervisor whose stdin is a pipe from
 * this process. When we exit — cleanly, by an uncaught error, or by SIGKILL, which no
 * 'exit' handler can observe — the kernel closes the pipe, the supervisor reads EOF and
 * stops the server. That is the only portable way on Linux to tie a child's life to its
 * parent's without native code (there is no prctl(PR_SET_PDEATHSIG) in Node).
 */
import { spawn } from 'node:child_process';
import { access, constants, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { StartupError } from '../runtime/errors.js';

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Address to bind. Default 127.0.0.1: the embedded bus is never exposed. */
  readonly host?: string;
  /** Client port. */
  readonly port: number;
  /** JetStream store directory (created by the server if missing). */
  readonly storeDir: string;
  readonly logger: Logger;
  /** Executable name or path. Default `nats-server`, looked up on PATH. */
  readonly binary?: string;
  /** PATH to search when `binary` has no slash. Default `process.env.PATH`. */
  readonly searchPath?: string;
  /** How long to wait for "Server is ready". Default 15 s. */
  readonly startTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL. Default 5 s. */
  readonly stopTimeoutMs?: number;
}

/** A running nats-server. */
export interface NatsServer {
  /** Client URL, e.g. `nats://127.0.0.1:4222`. */
  readonly url: string;
  /** Supervisor process id (the server runs in its process group). */
  readonly pid: number;
  /** Stops the server: SIGTERM, then SIGKILL after the stop timeout. Idempotent. */
  stop(): Promise<void>;
}

/** The fix we print whenever the binary is missing. */
export const NATS_INSTALL_HINT =
  'install it with `apt-get install -y nats-server` (Debian/Ubuntu), or set nats.url (TELEMESH_NATS_URL) to an external NATS server with JetStream';

// The supervisor. $1.. is the server command line. fd 3 keeps our stdin pipe for the
// watcher only; the server itself gets /dev/null so it never holds the pipe. `wait` is
// re-entered after a trapped signal because a trap interrupts it before the child exits.
const SUPERVISOR = `
exec 3<&0
"$@" </dev/null 3<&- &
server=$!
( while read -r _ <&3; do :; done; kill -TERM "$server" 2>/dev/null ) >/dev/null 2>&1 &
watcher=$!
exec 3<&-
trap 'kill -TERM "$server" 2>/dev/null' TERM INT HUP
while :; do
  wait "$server"
  rc=$?
  kill -0 "$server" 2>/dev/null || break
done
kill "$watcher" 2>/dev/null
exit "$rc"
`;

const READY_LINE = 'Server is ready';
const PORT_IN_USE = /address already in use/i;
const TAIL_LINES = 20;

/**
 * Finds an executable. Returns its path, or undefined when absent. We look it up ourselves
 * (instead of letting spawn fail) because the supervisor shell would turn ENOENT into a
 * generic exit code 127, and because the operator deserves the install hint up front.
 */
export async function findExecutable(binary: string, searchPath = process.env['PATH'] ?? ''): Promise<string | undefined> {
  const candidates = binary.includes('/') ? [binary] : searchPath.split(delimiter).filter((d) => d !== '').map((d) => join(d, binary));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      if ((await stat(c)).isFile()) return c;
    } catch {
      // not here; try the next directory
    }
  }
  return undefined;
}

/**
 * Starts `nats-server -js -a <host> -p <port> -sd <storeDir>` and resolves once it accepts
 * clients. Fails with {@link StartupError} naming the setting to fix: `nats.embeddedPort`
 * when the port is taken; otherwise `nats.url` (the alternative to an embedded server)
 * when the binary is missing (with the install command), when the server exits early
 * (the message carries its last log line) or does not become ready in time.
 */
export async function startNatsServer(opts: NatsServerOptions): Promise<NatsServer> {
  const host = opts.host ?? '127.0.0.1';
  const binaryName = opts.binary ?? 'nats-server';
  const log = opts.logger.child({ component: 'nats-server', port: opts.port });
  const binary = await findExecutable(binaryName, opts.searchPath);
  if (binary === undefined) {
    throw new StartupError(`nats-server executable ${JSON.stringify(binaryName)} was not found: ${NATS_INSTALL_HINT}`, 'nats.url');
  }
  const args = ['-js', '-a', host, '-p', String(opts.port), '-sd', opts.storeDir];
  // detached: the supervisor leads its own process group, so SIGKILL escalation can take
  // down the supervisor, the watcher and the server in one call.
  const child = spawn('/bin/sh', ['-c', SUPERVISOR, 'telemesh-nats-supervisor', binary, ...args], {
    stdio: ['pipe', 'ignore', 'pipe'],
    detached: true,
  });
  const pid = child.pid;
  if (pid === undefined) {
    // spawn failed synchronously (no /bin/sh?); the 'error' event carries the reason.
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new StartupError(`cannot start nats-server: ${err.message}`, 'nats.url', { cause: err });
  }
  // A write to a dead supervisor's stdin must not crash us with EPIPE.
  child.stdin?.on('error', () => {});

  const tail: string[] = [];
  let ready = false;
  let onReady: () => void = () => {};
  const readyPromise = new Promise<void>((resolve) => (onReady = resolve));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  if (child.stderr) {
    // nats-server logs to stderr. Forward it at debug (it is chatty), warnings above.
    const lines = createInterface({ input: child.stderr, crlfDelay: Infinity });
    lines.on('line', (line) => {
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      if (line.includes('[ERR]') || line.includes('[FTL]')) log.error({ line }, 'nats-server');
      else if (line.includes('[WRN]')) log.warn({ line }, 'nats-server');
      else log.debug({ line }, 'nats-server');
      if (!ready && line.includes(READY_LINE)) {
        ready = true;
        onReady();
      }
    });
  }

  // Last resort for a parent that exits without calling stop(): signal the whole group.
  // 'exit' handlers must be synchronous, and process.kill is.
  const onExit = (): void => {
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      // already gone
    }
  };
  process.once('exit', onExit);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const killTimer = setTimeout(() => {
        log.warn('nats-server did not stop in time; sending SIGKILL');
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }, opts.stopTimeoutMs ?? 5000);
      try {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        child.stdin?.end();
        await closed;
      } finally {
        clearTimeout(killTimer);
        process.removeListener('exit', onExit);
      }
    })();
    return stopping;
  };

  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    readyPromise.then(() => 'ready' as const),
    closed.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), startTimeoutMs))),
  ]);
  clearTimeout(timer);

  if (outcome === 'ready') {
    const url = `nats://${host.includes(':') ? `[${host}]` : host}:${opts.port}`;
    log.info({ url, storeDir: opts.storeDir }, 'nats-server ready');
    // Once running, an unexpected exit is worth an error log: the bus is gone.
    void closed.then(({ code, signal }) => {
      if (stopping === undefined) log.error({ code, signal, lastLine: lastLine(tail) }, 'nats-server exited unexpectedly');
    });
    return { url, pid, stop };
  }

  await stop();
  if (outcome === 'timeout') {
    throw new StartupError(
      `nats-server did not become ready within ${startTimeoutMs} ms; last log line: ${lastLine(tail)} (or set nats.url to an external NATS server)`,
      'nats.url',
    );
  }
  const { code, signal } = await closed;
  if (tail.some((l) => PORT_IN_USE.test(l))) {
    throw new StartupError(
      `nats-server cannot listen on ${host}:${opts.port}: the port is already in use; choose another nats.embeddedPort (TELEMESH_NATS_EMBEDDED_PORT) or stop the other process`,
      'nats.embeddedPort',
    );
  }
  throw new StartupError(
    `nats-server exited during start-up (${signal ?? `code ${code}`}): ${lastLine(tail)} (or set nats.url to an external NATS server)`,
    'nats.url',
  );
}

/** The last non-empty stderr line with the "[pid] date time" prefix stripped. */
function lastLine(tail: readonly string[]): string {
  for (let i = tail.length - 1; i >= 0; i--) {
    const l = tail[i]?.trim() ?? '';
    if (l !== '') return l.replace(/^\[\d+\] \S+ \S+ /, '');
  }
  return '(no output)';
}

