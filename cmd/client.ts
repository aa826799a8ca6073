/**
 * The client commands: `push`, `query` and `token`. They talk to a running Telemesh
 * through its public contracts, like any other client.
 */
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { LabelSchema, SeriesSchema, type Series } from '../libs/contracts/telemesh/common/v1/common_pb.js';
import { WriteResultSchema } from '../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import { IngestService } from '../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { QueryService } from '../libs/contracts/telemesh/query/v1/query_service_pb.js';
import { formatLabels, labelsToObject } from '../libs/model/index.js';
import { parseSampleLine, PromqlSyntaxError } from '../libs/promql/index.js';
import { isRole, mintToken, type Role } from '../libs/runtime/auth/index.js';
import { clientTracingInterceptor } from '../libs/runtime/interceptors.js';
import { flag, type ParsedArgs } from './args.js';
import { resolveAuth } from './dev-auth.js';
import { configFromArgs, type ServeIo } from './serve.js';

/** I/O of the client commands. */
export interface ClientIo extends Pick<ServeIo, 'env' | 'out'> {
  /** Standard input, read whole (for `push` without arguments). */
  readonly stdin: () => Promise<string>;
}

/** A command-line mistake: printed as one line, exit 2. */
export class UsageError extends Error {}

/** The transport of a client command: `--url`/TELEMESH_URL, `--protocol=connect|grpc`, trace propagation. */
export function transport(args: ParsedArgs, env: ClientIo['env']): Transport {
  const url = flag(args, 'url') ?? env.TELEMESH_URL ?? 'http://127.0.0.1:7400';
  const protocol = flag(args, 'protocol') ?? 'connect';
  const interceptors = [clientTracingInterceptor()];
  if (protocol === 'grpc') return createGrpcTransport({ baseUrl: url, interceptors });
  if (protocol !== 'connect') throw new UsageError(`--protocol must be connect or grpc, got ${JSON.stringify(protocol)}`);
  return createConnectTransport({ baseUrl: url, httpVersion: '1.1', interceptors });
}

/** The bearer header of a client command, from `--token` or TELEMESH_TOKEN. */
export function authHeaders(args: ParsedArgs, env: ClientIo['env']): Record<string, string> {
  const token = flag(args, 'token') ?? env.TELEMESH_TOKEN;
  if (!token) throw new UsageError('no token: pass --token or set TELEMESH_TOKEN (npm start prints development tokens)');
  return { authorization: `Bearer ${token}` };
}

/**
 * `telemesh push [lines…]`: sends samples in the text exposition syntax
 * (`name{label="v"} value [timestamp_ms]`), from arguments or, with none, standard input.
 */
export async function push(args: ParsedArgs, io: ClientIo): Promise<number> {
  const lines = args.positionals.length > 0 ? args.positionals : (await io.stdin()).split('\n');
  const now = Date.now();
  const bySeries = new Map<string, Series>();
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let sample;
    try {
      sample = parseSampleLine(line, now);
    } catch (err) {
      if (err instanceof PromqlSyntaxError) throw new UsageError(`line ${i + 1}: ${err.message}`);
      throw err;
    }
    const key = formatLabels(sample.labels);
    let s = bySeries.get(key);
    if (!s) {
      s = create(SeriesSchema, { labels: sample.labels.map((l) => create(LabelSchema, l)) });
      bySeries.set(key, s);
    }
    s.timestampsMs.push(BigInt(sample.timestampMs));
    s.values.push(sample.value);
  }
  if (bySeries.size === 0) throw new UsageError('nothing to push: give sample lines as arguments or on standard input');
  const client = createClient(IngestService, transport(args, io.env));
  try {
    const res = await client.write({ series: [...bySeries.values()] }, { headers: authHeaders(args, io.env) });
    io.out(`accepted ${res.result?.acceptedSamples ?? 0n} samples`);
    return 0;
  } catch (err) {
    const ce = ConnectError.from(err);
    io.out(`telemesh: ${Code[ce.code]}: ${ce.rawMessage}`);
    for (const d of ce.findDetails(WriteResultSchema)) {
      io.out(`accepted ${d.acceptedSamples} samples, rejected ${d.rejectedSamples}`);
      for (const r of d.rejections) io.out(`  ${r.violation?.field}: ${r.violation?.description}`);
    }
    return 1;
  }
}

/** Parses `now`, a relative `-5m`, Unix seconds or milliseconds, or an RFC 3339 time. */
export function parseTime(text: string, now: number, name: string): number {
  if (text === 'now') return now;
  const rel = /^-(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(text);
  if (rel) {
    const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 }[rel[2] as 'ms'];
    return now - Math.round(Number(rel[1]) * unit);
  }
  if (/^\d+(\.\d+)?$/.test(text)) {
    const n = Number(text);
    return n < 1e11 ? Math.round(n * 1000) : Math.round(n); // seconds vs milliseconds
  }
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new UsageError(`--${name}: ${JSON.stringify(text)} is not a time (use now, -15m, Unix seconds or RFC 3339)`);
  return t;
}

/** `telemesh query <selector> [--start=-1h] [--end=now] [--json]`: prints matching samples. */
export async function query(args: ParsedArgs, io: ClientIo): Promise<number> {
  const selector = args.positionals[0];
  if (!selector) throw new UsageError('usage: telemesh query <selector> [--start=-1h] [--end=now] [--json]');
  const now = Date.now();
  const end = parseTime(flag(args, 'end') ?? 'now', now, 'end');
  const start = parseTime(flag(args, 'start') ?? '-1h', now, 'start');
  const client = createClient(QueryService, transport(args, io.env));
  try {
    const res = await client.select({ selector, startMs: BigInt(start), endMs: BigInt(end) }, { headers: authHeaders(args, io.env) });
    if (flag(args, 'json') !== undefined) {
      const out = res.series.map((s) => ({
        labels: labelsToObject(s.labels),
        samples: s.timestampsMs.map((t, i) => [Number(t), s.values[i]]),
      }));
      io.out(JSON.stringify(out));
      return 0;
    }
    if (res.series.length === 0) io.out('no series matched');
    for (const s of res.series) {
      io.out(formatLabels(s.labels));
      s.timestampsMs.forEach((t, i) => io.out(`  ${new Date(Number(t)).toISOString()}  ${s.values[i]}`));
    }
    return 0;
  } catch (err) {
    const ce = ConnectError.from(err);
    io.out(`telemesh: ${Code[ce.code]}: ${ce.rawMessage}`);
    return 1;
  }
}

/**
 * `telemesh token --tenant=T --roles=a,b [--subject=S] [--ttl=86400]`: mints an HS256 token
 * with the configured secret (or the development secret under the data directory).
 */
export async function token(args: ParsedArgs, io: ClientIo): Promise<number> {
  const own = new Set(['tenant', 'roles', 'subject', 'ttl', 'config.file']);
  const loaded = configFromArgs(args, io.env, own);
  // Without a configured key, use (or create) the development secret `npm start` uses.
  const config = resolveAuth({ ...loaded, auth: { ...loaded.auth, devTokens: true } });
  if (!config.auth.hs256Secret) throw new UsageError('telemesh token needs auth.hs256Secret (tokens from a JWKS issuer are minted by that issuer)');
  const tenant = flag(args, 'tenant') ?? 'dev';
  const roles = (flag(args, 'roles') ?? 'reader').split(',').filter(Boolean);
  const bad = roles.filter((r) => !isRole(r));
  if (bad.length > 0) throw new UsageError(`--roles: unknown role ${bad.join(', ')} (agent, reader, editor, admin)`);
  const ttlSec = Number(flag(args, 'ttl') ?? 86_400);
  if (!Number.isInteger(ttlSec) || ttlSec <= 0) throw new UsageError('--ttl must be a positive number of seconds');
  io.out(
    await mintToken(config.auth.hs256Secret, {
      subject: flag(args, 'subject') ?? 'cli',
      tenant,
      roles: roles as Role[],
      ttlSec,
      issuer: config.auth.issuer || undefined,
      audience: config.auth.audience || undefined,
    }),
  );
  return 0;
}
