/**
 * Configuration: defaults → YAML file → `TELEMESH_*` environment → command-line flags,
 * validated with zod. Unknown keys in the file or flags are errors, and every error names
 * the key, where the bad value came from, and the setting that fixes it.
 *
 * Every leaf key `a.bKey` can be set as `TELEMESH_A_B_KEY` and as `--a.bKey=value`; the
 * list is derived from the schema, so adding a key to the schema is all it takes.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { StartupError } from './errors.js';

const port = z.number().int().min(0).max(65535);
const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** The configuration schema: every key, its type and its default. */
export const configSchema = z
  .object({
    /** Directory for local state: the embedded NATS store, the DuckDB file, dev secrets. */
    dataDir: z.string().min(1).default('./var'),
    /** Name of this replica (logs, ownership); defaults to the host name. */
    replica: z.string().default(''),
    log: z
      .object({
        /** Minimum log level. */
        level: logLevel.default('info'),
      })
      .strict()
      .prefault({}),
    server: z
      .object({
        /** Address both listeners bind to. */
        host: z.string().min(1).default('127.0.0.1'),
        /** HTTP/1.1 port: Connect JSON, gRPC-Web, /metrics, /livez, /readyz, HTTP APIs. */
        httpPort: port.default(7400),
        /** HTTP/2 port: gRPC, Connect, gRPC-Web. */
        grpcPort: port.default(7401),
        /** PEM certificate file; with `tlsKeyFile`, both ports serve TLS. */
        tlsCertFile: z.string().default(''),
        /** PEM private key file. */
        tlsKeyFile: z.string().default(''),
        /** Longest time a graceful shutdown may take before in-flight work is abandoned. */
        shutdownTimeoutMs: z.number().int().min(0).default(10_000),
        /** Largest accepted request body, bytes. */
        maxRequestBytes: z.number().int().min(1024).default(16 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    nats: z
      .object({
        /** URL of an external NATS server with JetStream; empty starts an embedded one. */
        url: z.string().default(''),
        /** Stream and KV replicas (1 locally, 3 on a NATS cluster). */
        replicas: z.number().int().min(1).max(5).default(1),
        /** Port of the embedded nats-server (used when `nats.url` is empty). */
        embeddedPort: port.default(4222),
        /** How long to wait for NATS at start-up, milliseconds. */
        connectTimeoutMs: z.number().int().min(100).default(5_000),
      })
      .strict()
      .prefault({}),
    store: z
      .object({
        /** Metric store backend. */
        backend: z.enum(['duckdb', 'mongodb']).default('duckdb'),
        /** DuckDB file; empty means `<dataDir>/telemesh.duckdb`. */
        duckdbPath: z.string().default(''),
        /** MongoDB connection string (backend `mongodb`). */
        mongodbUri: z.string().default(''),
        /** MongoDB database name. */
        mongodbDatabase: z.string().default('telemesh'),
        /**
         * Granularity of the MongoDB raw time-series collection; `seconds` suits agents that
         * report every few seconds to a minute (MongoDB buckets an hour of one series).
         */
        mongodbGranularity: z.enum(['seconds', 'minutes', 'hours']).default('seconds'),
        /** How long raw samples are kept, ms (default 15 days). */
        rawRetentionMs: z.number().int().min(60_000).default(15 * 24 * 3600 * 1000),
        /**
         * Rollup tiers, `<resolution>:<retention>` pairs, finest first, each resolution a
         * multiple of the one before (`5m:90d,1h:2y`; empty for none).
         */
        rollupTiers: z
          .string()
          .regex(/^$|^\d+(ms|s|m|h|d|w|y)+:(\d+(ms|s|m|h|d|w|y))+(,\d+(ms|s|m|h|d|w|y)+:(\d+(ms|s|m|h|d|w|y))+)*$/, {
            message: 'must be <resolution>:<retention> pairs separated by commas, e.g. 5m:90d,1h:2y',
          })
          .default('5m:90d,1h:2y'),
        /** How often the compactor recomputes touched rollup windows, ms (0: never). */
        compactionIntervalMs: z.number().int().min(0).default(60_000),
        /** How often expired samples and rollups are deleted, ms (0: never). */
        retentionIntervalMs: z.number().int().min(0).default(3_600_000),
        /**
         * DuckDB: raw samples older than this are sealed into compressed per-series chunks
         * by the compactor, ms (0: never).
         */
        sealAfterMs: z.number().int().min(0).default(7_200_000),
        /**
         * DuckDB: most samples the in-memory head holds for queries over recent data
         * (16 bytes each, up to twice that while arrays grow or batches wait; 0: off).
         */
        headSamples: z.number().int().min(0).default(4_000_000),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        /** HS256 shared secret for bearer JWTs (at least 32 characters). */
        hs256Secret: z.string().default(''),
        /** JWKS file with the public keys that sign bearer JWTs. */
        jwksFile: z.string().default(''),
        /** JWKS URL with the public keys that sign bearer JWTs. */
        jwksUrl: z.string().default(''),
        /** Required `iss` claim, if set. */
        issuer: z.string().default(''),
        /** Required `aud` claim, if set. */
        audience: z.string().default(''),
        /**
         * Development mode: with no key configured, generate an HS256 secret under the data
         * directory and print an agent and an admin token at start. Never in production.
         */
        devTokens: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    ingestion: z
      .object({
        /** Most series in one write request. */
        maxSeriesPerRequest: z.number().int().min(1).default(100_000),
        /** Most samples in one write request. */
        maxSamplesPerRequest: z.number().int().min(1).default(1_000_000),
        /** Most labels per series (including `__name__`). */
        maxLabelsPerSeries: z.number().int().min(1).default(40),
        /** Longest label name, characters. */
        maxLabelNameLength: z.number().int().min(1).default(1024),
        /** Longest label value, characters. */
        maxLabelValueLength: z.number().int().min(1).default(4096),
        /** Oldest accepted sample, relative to now (default 7 days of backfill). */
        maxSampleAgeMs: z.number().int().min(0).default(7 * 24 * 3600 * 1000),
        /** Furthest accepted sample in the future, relative to now. */
        maxFutureMs: z.number().int().min(0).default(10 * 60 * 1000),
        /** Largest request body of the HTTP receivers (remote_write, OTLP/HTTP), after decompression, bytes. */
        maxRequestBytes: z.number().int().min(1024).default(64 * 1024 * 1024),
        /** Sustained ingestion rate per tenant, samples per second (token bucket refill); 0 = unlimited. */
        ratePerSecond: z.number().int().min(0).default(1_000_000),
        /** Burst per tenant, samples (token bucket size); at least the largest request. */
        burstSamples: z.number().int().min(1).default(2_000_000),
        /** Most active series per tenant (seen within `activeSeriesWindowMs`); 0 = unlimited. */
        maxActiveSeries: z.number().int().min(0).default(1_000_000),
        /** How long a series stays active after its last sample, ms. */
        activeSeriesWindowMs: z.number().int().min(1000).default(20 * 60 * 1000),
        /** Most samples being published at once by this process; beyond it clients get `unavailable`/429 to retry. */
        maxInflightSamples: z.number().int().min(1).default(4_000_000),
        /** Timeout of one publish to JetStream before the client is told to retry, ms. */
        publishTimeoutMs: z.number().int().min(100).default(10_000),
        /** Privacy scrubbing of labels that look sensitive, before anything is stored. */
        scrubEnabled: z.boolean().default(true),
        /** What scrubbing does to a sensitive label: `hash` its value (sha256) or `drop` the label. */
        scrubAction: z.enum(['hash', 'drop']).default('hash'),
        /** Case-insensitive regular expression of sensitive label names. */
        scrubNamePattern: z
          .string()
          .default('passw(or)?d|passwd|secret|token|api_?key|authorization|auth_header|cookie|session_?id|private_?key|credential'),
        /** Regular expression of sensitive label values (e-mail addresses, bearer/basic credentials, JWTs). */
        scrubValuePattern: z
          .string()
          .default('[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}|^(Bearer|Basic)\\s+\\S+|eyJ[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*'),
        /** Extra OTLP/gRPC listener port (the standard one is 4317); 0 = off. */
        otlpGrpcPort: port.default(0),
        /** Extra OTLP/HTTP listener port (the standard one is 4318); 0 = off. */
        otlpHttpPort: port.default(0),
        /**
         * Per-tenant limit overrides: `<tenant>:<key>=<value>[,<key>=<value>…]` separated by
         * `;`, e.g. `acme:ratePerSecond=50000,maxActiveSeries=200000; beta:maxSampleAgeMs=0`.
         * Keys: the numeric limits above (series/samples per request, label limits, sample
         * age and future, rate, burst, active series).
         */
        tenantOverrides: z.string().default(''),
      })
      .strict()
      .prefault({}),
    query: z
      .object({
        /** Most series one query may touch. */
        maxSeries: z.number().int().min(1).default(50_000),
        /** Most samples one query may read. */
        maxSamples: z.number().int().min(1).default(50_000_000),
        /** Longest a PromQL query may run before it ends with a timeout error, milliseconds. */
        timeoutMs: z.number().int().min(1).default(120_000),
        /** How far back an instant vector selector looks for a sample (Prometheus' 5 m). */
        lookbackDeltaMs: z.number().int().min(1).default(300_000),
        /** Most points per series a range query may return (Prometheus' 11,000). */
        maxRangePoints: z.number().int().min(1).default(11_000),
      })
      .strict()
      .prefault({}),
    heartbeat: z
      .object({
        /** Heartbeat interval when neither the agent nor a rule asks for one, ms (1–60 s). */
        defaultIntervalMs: z.number().int().min(1000).max(60_000).default(1000),
        /**
         * Interval rules that override what agents ask for, first match wins:
         * `<tenant|*>[{label matchers}]=<seconds>` separated by `;`, e.g.
         * `acme=5; *{env="dev"}=10`. Seconds from 1 to 60.
         */
        intervalRules: z.string().default(''),
        /** phi at which an agent becomes suspect. */
        suspectPhi: z.number().min(0.1).default(3),
        /** phi at which a suspect agent is declared dead. */
        deadPhi: z.number().min(0.1).default(8),
        /** Lower bound of the detector's standard deviation, ms. */
        minStdDevMs: z.number().int().min(1).default(200),
        /** Lateness the detector tolerates before phi rises fast, ms. */
        acceptablePauseMs: z.number().int().min(0).default(2000),
        /** Heartbeat inter-arrival samples kept per agent. */
        windowSize: z.number().int().min(2).max(10_000).default(100),
        /** How long an agent whose stream broke without a goodbye may take to reconnect before it is dead, ms. */
        graceMs: z.number().int().min(0).default(1000),
        /** How often the detector checks every agent, ms. */
        sweepIntervalMs: z.number().int().min(10).max(10_000).default(100),
        /**
         * Lifetime of a replica's lease unless renewed (each replica renews its own every
         * second), ms. When it lapses the replica's agents that have not reconnected
         * elsewhere are declared dead by a surviving replica.
         */
        leaseTtlMs: z.number().int().min(2000).default(15_000),
        /**
         * How often the registry's copy of a connected agent's last heartbeat is rewritten,
         * spread over agents, ms; 0: only on state changes. The owning replica always
         * answers from memory; other replicas show the registry's copy.
         */
        lastSeenRefreshMs: z.number().int().min(0).default(60_000),
        /** How often `up` samples of every owned agent are written, ms. */
        upIntervalMs: z.number().int().min(1000).default(15_000),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** The validated configuration. */
export type Config = z.infer<typeof configSchema>;

/** Where configuration values come from, for {@link loadConfig}. */
export interface ConfigSources {
  /** YAML file path, if any (`--config.file` or `TELEMESH_CONFIG_FILE`). */
  readonly file?: string;
  /** Environment (only `TELEMESH_*` keys that name a config key are read). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** `--dotted.key=value` flags, already split into key and raw value. */
  readonly flags?: ReadonlyArray<readonly [string, string]>;
}

type LeafKind = 'string' | 'number' | 'boolean' | 'enum';

/** One settable key of the schema. */
export interface ConfigKey {
  /** Dotted path, e.g. `server.httpPort`. */
  readonly path: string;
  /** Environment variable, e.g. `TELEMESH_SERVER_HTTP_PORT`. */
  readonly env: string;
  /** Value kind, used to read strings from env and flags. */
  readonly kind: LeafKind;
  /** Default value. */
  readonly defaultValue: unknown;
  /** Allowed values of an enum key. */
  readonly options?: readonly string[];
}

const envName = (path: readonly string[]): string =>
  'TELEMESH_' + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');

/** Every settable key, derived from the schema (drives env, flags and the README table). */
export const configKeys: readonly ConfigKey[] = collectKeys(configSchema, []);

/** How to set a key, for error messages: `server.httpPort (TELEMESH_SERVER_HTTP_PORT, --server.httpPort)`. */
export function describeSetting(path: string): string {
  const key = configKeys.find((k) => k.path === path);
  return key ? `${path} (${key.env} or --${path})` : path;
}

function unwrap(schema: z.ZodType): { inner: z.ZodType; defaultValue: unknown } {
  let s: z.ZodType = schema;
  let defaultValue: unknown;
  for (;;) {
    const def = s._zod.def as { type: string; innerType?: z.ZodType; defaultValue?: unknown };
    if ((def.type === 'default' || def.type === 'prefault') && def.innerType) {
      if (defaultValue === undefined) defaultValue = def.defaultValue;
      s = def.innerType;
    } else if ((def.type === 'optional' || def.type === 'nullable') && def.innerType) {
      s = def.innerType;
    } else {
      return { inner: s, defaultValue };
    }
  }
}

function collectKeys(schema: z.ZodObject, prefix: readonly string[]): ConfigKey[] {
  const out: ConfigKey[] = [];
  for (const [name, field] of Object.entries(schema.shape)) {
    const path = [...prefix, name];
    const { inner, defaultValue } = unwrap(field as z.ZodType);
    const type = inner._zod.def.type;
    if (type === 'object') {
      out.push(...collectKeys(inner as z.ZodObject, path));
    } else if (type === 'string' || type === 'number' || type === 'boolean' || type === 'enum') {
      const options = type === 'enum' ? (inner as z.ZodEnum).options.map(String) : undefined;
      out.push({ path: path.join('.'), env: envName(path), kind: type, defaultValue, options });
    } else {
      throw new Error(`config schema: unsupported type ${type} at ${path.join('.')}`);
    }
  }
  return out;
}

function coerce(key: ConfigKey, raw: string, source: string): unknown {
  switch (key.kind) {
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) {
        throw new StartupError(`config: ${key.path} must be a number, got ${JSON.stringify(raw)} (from ${source})`, describeSetting(key.path));
      }
      return n;
    }
    case 'boolean':
      if (/^(true|1|yes|on)$/i.test(raw) || raw === '') return true;
      if (/^(false|0|no|off)$/i.test(raw)) return false;
      throw new StartupError(`config: ${key.path} must be true or false, got ${JSON.stringify(raw)} (from ${source})`, describeSetting(key.path));
    default:
      return raw;
  }
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const p of parts.slice(0, -1)) {
    const next = node[p];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[p] = {};
    node = node[p] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]!] = value;
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new StartupError(`config: cannot read config file ${file} (${code})`, 'config.file (TELEMESH_CONFIG_FILE or --config.file)');
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    if (err instanceof YAMLParseError) {
      const pos = err.linePos?.[0];
      const where = pos ? ` at line ${pos.line}, column ${pos.col}` : '';
      throw new StartupError(`config: ${file} is not valid YAML${where}: ${err.message.split('\n')[0]}`, 'config.file');
    }
    throw err;
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new StartupError(`config: ${file} must hold a mapping of settings at the top level`, 'config.file');
  }
  return doc as Record<string, unknown>;
}

/**
 * Loads and validates the configuration from its sources. Throws {@link StartupError}
 * with a one-line message naming the key and the source of the bad value.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const raw: Record<string, unknown> = {};
  const origin = new Map<string, string>();
  const file = sources.file;
  if (file) {
    const doc = readYaml(file);
    Object.assign(raw, doc);
    for (const k of configKeys) origin.set(k.path, file);
  }
  const env = sources.env ?? {};
  for (const key of configKeys) {
    const v = env[key.env];
    if (v !== undefined) {
      setPath(raw, key.path, coerce(key, v, key.env));
      origin.set(key.path, key.env);
    }
  }
  for (const [name, value] of sources.flags ?? []) {
    const key = configKeys.find((k) => k.path === name);
    if (!key) {
      throw new StartupError(`config: unknown flag --${name}`, 'see `telemesh help` for the list of settings');
    }
    setPath(raw, key.path, coerce(key, value, `--${name}`));
    origin.set(key.path, `--${name}`);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => (path ? `${path}.${k}` : k));
      throw new StartupError(`config: unknown key ${keys.map((k) => JSON.stringify(k)).join(', ')}${file ? ` in ${file}` : ''}`, 'remove it or fix its spelling (`telemesh help` lists every key)');
    }
    const from = origin.get(path);
    throw new StartupError(`config: ${path}: ${issue.message}${from ? ` (from ${from})` : ''}`, describeSetting(path));
  }
  return result.data;
}

const SECRET_KEYS = new Set(['auth.hs256Secret', 'store.mongodbUri']);

/** The configuration with secrets replaced by `<redacted>`, for logs and `--config.verify`. */
export function redactConfig(config: Config): Record<string, unknown> {
  const copy = structuredClone(config) as unknown as Record<string, unknown>;
  for (const path of SECRET_KEYS) {
    const parts = path.split('.');
    const parent = parts.slice(0, -1).reduce<Record<string, unknown>>((n, p) => n[p] as Record<string, unknown>, copy);
    const leaf = parts[parts.length - 1]!;
    if (parent[leaf]) parent[leaf] = '<redacted>';
  }
  return copy;
}

/** Resolves a path relative to the data directory unless it is absolute. */
export function dataPath(config: Config, ...parts: string[]): string {
  return resolve(config.dataDir, ...parts);
}
