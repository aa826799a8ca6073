/**
 * Cross-service test harness: runs `telemesh serve` as real child processes (the same
 * binary users run), each on free loopback ports with its own data directory, against a
 * real nats-server. Every process and directory is cleaned up by `stop()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient, type Client, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import type { DescService } from '@bufbuild/protobuf';
import { freePort } from '../libs/bus/testing.js';
import { mintToken, type Role } from '../libs/runtime/auth/index.js';

/** Repository root. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The `telemesh` executable. */
export const BIN = join(ROOT, 'cmd', 'telemesh.js');

/** One running `telemesh serve` process. */
export interface MeshProcess {
  readonly httpUrl: string;
  readonly grpcUrl: string;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** Everything the process printed (stdout + stderr). */
  output(): string;
  /** A Connect (HTTP/1.1) client for a service on this process. */
  connect<T extends DescService>(service: T): Client<T>;
  /** A gRPC (HTTP/2) client for a service on this process. */
  grpc<T extends DescService>(service: T): Client<T>;
  /** Sends SIGTERM and resolves with the exit code (SIGKILL after `timeoutMs`). */
  terminate(timeoutMs?: number): Promise<number | null>;
}

/** Options for {@link startMesh}. */
export interface MeshOptions {
  readonly target: string;
  /** HS256 secret shared by every process of a test. */
  readonly secret: string;
  /** External NATS URL; empty starts the embedded one. */
  readonly natsUrl?: string;
  /** Extra environment. */
  readonly env?: Record<string, string>;
  /** Extra command-line arguments. */
  readonly args?: readonly string[];
  /** Reuse a data directory (restart tests). */
  readonly dataDir?: string;
  /** Keep the given ports (restart tests). */
  readonly ports?: { http: number; grpc: number; nats: number };
}

/** A fresh HS256 secret for one test. */
export function testSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Mints a token for `tenant` with `roles`, signed with `secret`. */
export function token(secret: string, roles: Role[], tenant = 'acme'): Promise<string> {
  return mintToken(secret, { subject: `test-${roles.join('-')}`, tenant, roles, ttlSec: 3600 });
}

/** Bearer header options for a client call. */
export function bearer(t: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${t}` } };
}

/** Starts `telemesh serve --target=…` and waits until `/readyz` answers 200. */
export async function startMesh(opts: MeshOptions): Promise<MeshProcess> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'telemesh-e2e-')));
  const ports = opts.ports ?? { http: await freePort(), grpc: await freePort(), nats: await freePort() };
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    TELEMESH_DATA_DIR: dataDir,
    TELEMESH_SERVER_HTTP_PORT: String(ports.http),
    TELEMESH_SERVER_GRPC_PORT: String(ports.grpc),
    TELEMESH_NATS_EMBEDDED_PORT: String(ports.nats),
    TELEMESH_AUTH_HS256_SECRET: opts.secret,
    TELEMESH_LOG_LEVEL: process.env.TELEMESH_E2E_LOG_LEVEL ?? 'warn',
    ...(opts.natsUrl ? { TELEMESH_NATS_URL: opts.natsUrl } : {}),
    ...opts.env,
  };
  const child = spawn(process.execPath, [BIN, 'serve', `--target=${opts.target}`, ...(opts.args ?? [])], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const httpUrl = `http://127.0.0.1:${ports.http}`;
  const grpcUrl = `http://127.0.0.1:${ports.grpc}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`telemesh exited with ${child.exitCode} before ready:\n${out}`);
    try {
      const res = await fetch(`${httpUrl}/readyz`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`telemesh not ready within 60 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const transports = new Map<string, Transport>();
  const t = (kind: 'connect' | 'grpc') => {
    let tr = transports.get(kind);
    if (!tr) {
      tr = kind === 'connect' ? createConnectTransport({ baseUrl: httpUrl, httpVersion: '1.1' }) : createGrpcTransport({ baseUrl: grpcUrl });
      transports.set(kind, tr);
    }
    return tr;
  };
  return {
    httpUrl,
    grpcUrl,
    dataDir,
    child,
    output: () => out,
    connect: (service) => createClient(service, t('connect')),
    grpc: (service) => createClient(service, t('grpc')),
    async terminate(timeoutMs = 15_000) {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Removes a data directory made by {@link startMesh}. */
export function removeDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}

/** Polls `fn` until it returns a value that `ok` accepts, or fails after `timeoutMs`. */
export async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (ok(last)) return last;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`condition not met within ${timeoutMs} ms; last value ${JSON.stringify(last, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}; last error ${String(lastErr)}`);
}

/** Runs the CLI once and resolves with its exit code and output. */
export function runCli(args: readonly string[], env: Record<string, string> = {}, stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(stdin ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
