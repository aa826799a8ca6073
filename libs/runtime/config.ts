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
      })
      .strict()
      .prefault({}),
    query: z
      .object({
        /** Most series one query may touch. */
        maxSeries: z.number().int().min(1).default(50_000),
        /** Most samples one query may read. */
        maxSamples: z.number().int().min(1).default(50_000_000),
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
