/**
 * Who may call what. Every RPC and every authenticated HTTP endpoint has one entry in
 * {@link ACCESS_TABLE}; anything not in it is refused (fail closed), so a new RPC cannot
 * ship reachable by everyone just because nobody thought about its access.
 */

/** The roles a token can carry in its `roles` claim. */
export type Role = 'agent' | 'reader' | 'editor' | 'admin';

/** Every role, in order of increasing power (agent is a separate lane, not "less than" reader). */
export const ROLES: readonly Role[] = Object.freeze(['agent', 'reader', 'editor', 'admin']);

/**
 * Marker for endpoints that need no token at all (health checks, `/metrics`): probes from
 * Kubernetes and scrapers do not carry credentials.
 */
export const PUBLIC = 'public';

/** What one endpoint needs: no token ({@link PUBLIC}) or a token holding one of the roles. */
export type Access = typeof PUBLIC | readonly Role[];

/**
 * The roles each role implies. Kept as an explicit table rather than an ordering because
 * `agent` is not below `reader`: an agent token may write samples but must not read them
 * back, and a reader must not be able to write.
 */
const IMPLIED_ROLES: Readonly<Record<Role, readonly Role[]>> = {
  agent: ['agent'],
  reader: ['reader'],
  editor: ['editor', 'reader'],
  admin: ['admin', 'editor', 'reader', 'agent'],
};

/**
 * The one declared access table.
 *
 * `rpc` keys are `"<service typeName>/<method name>"` (the path of a gRPC/Connect call
 * without its leading slash); `"<service typeName>/*"` covers every method of a service and
 * is used only for the standard health service. `http` keys are request paths; a key ending
 * in `*` matches every path with that prefix.
 *
 * Each value lists the roles that grant access; `admin` needs no mention because it is
 * implied everywhere (see {@link rolesSatisfy}), and `editor` implies `reader`.
 */
export const ACCESS_TABLE = {
  rpc: {
    // Health is probed by kubelets and load balancers, which carry no token.
    'grpc.health.v1.Health/*': PUBLIC,

    'telemesh.ingest.v1.IngestService/Write': ['agent'],
    'telemesh.ingest.v1.IngestService/Stream': ['agent'],
    // OTLP metrics receiver (gRPC); its HTTP twin is `/v1/metrics` below.
    'opentelemetry.proto.collector.metrics.v1.MetricsService/Export': ['agent'],

    'telemesh.heartbeat.v1.HeartbeatService/Connect': ['agent'],
    'telemesh.heartbeat.v1.HeartbeatService/GetAgent': ['reader'],
    'telemesh.heartbeat.v1.HeartbeatService/ListAgents': ['reader'],
    'telemesh.heartbeat.v1.HeartbeatService/WatchAgents': ['reader'],

    'telemesh.query.v1.QueryService/Select': ['reader'],
    'telemesh.query.v1.QueryService/Query': ['reader'],
    'telemesh.query.v1.QueryService/QueryRange': ['reader'],
    'telemesh.query.v1.QueryService/ListSeries': ['reader'],
    'telemesh.query.v1.QueryService/LabelNames': ['reader'],
    'telemesh.query.v1.QueryService/LabelValues': ['reader'],

    'telemesh.alerting.v1.AlertingService/ListRuleGroups': ['reader'],
    'telemesh.alerting.v1.AlertingService/ListAlerts': ['reader'],
    'telemesh.alerting.v1.AlertingService/PutRuleGroup': ['editor'],
    'telemesh.alerting.v1.AlertingService/DeleteRuleGroup': ['editor'],

    'telemesh.notify.v1.NotificationService/ListSilences': ['reader'],
    'telemesh.notify.v1.NotificationService/ListDeliveries': ['reader'],
    'telemesh.notify.v1.NotificationService/CreateSilence': ['editor'],
    'telemesh.notify.v1.NotificationService/DeleteSilence': ['editor'],
  },
  http: {
    // Probes and Prometheus scrapes of our own metrics carry no token.
    '/livez': PUBLIC,
    '/readyz': PUBLIC,
    '/metrics': PUBLIC,

    // Receivers: Prometheus remote_write and OTLP/HTTP metrics.
    '/api/v1/write': ['agent'],
    '/v1/metrics': ['agent'],

    // Prometheus-compatible query API (Grafana). `query*` covers query, query_range and
    // query_exemplars; `label/*` covers `/api/v1/label/<name>/values`.
    '/api/v1/query*': ['reader'],
    '/api/v1/series': ['reader'],
    '/api/v1/labels': ['reader'],
    '/api/v1/label/*': ['reader'],
    '/api/v1/metadata': ['reader'],
    '/api/v1/status/*': ['reader'],
  },
} as const satisfies {
  readonly rpc: Readonly<Record<string, Access>>;
  readonly http: Readonly<Record<string, Access>>;
};

/** The shape of an access table, so tests and embedders can declare their own. */
export interface AccessTable {
  /** RPC procedure (`"<service>/<method>"`, or `"<service>/*"`) → access. */
  readonly rpc: Readonly<Record<string, Access>>;
  /** HTTP path (exact, or a prefix ending in `*`) → access. */
  readonly http: Readonly<Record<string, Access>>;
}

/** Looks endpoints up in an access table. `undefined` means "no entry": refuse the call. */
export interface AccessPolicy {
  /** Access for an RPC procedure, `"<service typeName>/<method name>"`. */
  rpc(procedure: string): Access | undefined;
  /** Access for an HTTP request path (query string, if any, is ignored). */
  http(path: string): Access | undefined;
}

/**
 * Builds an {@link AccessPolicy} over a table (the declared {@link ACCESS_TABLE} by default).
 * Prefix patterns are resolved longest-first so a more specific entry always wins.
 */
export function createAccessPolicy(table: AccessTable = ACCESS_TABLE): AccessPolicy {
  const rpc = new Map(Object.entries(table.rpc));
  const httpExact = new Map<string, Access>();
  const httpPrefixes: [prefix: string, access: Access][] = [];
  for (const [pattern, access] of Object.entries(table.http)) {
    if (pattern.endsWith('*')) httpPrefixes.push([pattern.slice(0, -1), access]);
    else httpExact.set(pattern, access);
  }
  httpPrefixes.sort((a, b) => b[0].length - a[0].length);

  return {
    rpc(procedure) {
      const exact = rpc.get(procedure);
      if (exact !== undefined) return exact;
      const slash = procedure.lastIndexOf('/');
      if (slash <= 0) return undefined;
      return rpc.get(`${procedure.slice(0, slash)}/*`);
    },
    http(rawPath) {
      const q = rawPath.search(/[?#]/);
      const path = q === -1 ? rawPath : rawPath.slice(0, q);
      // Dot segments and backslashes would let a prefix rule (`/api/v1/query*`) vouch for a
      // path a lenient router might resolve elsewhere; such paths get no entry at all.
      if (!path.startsWith('/') || path.includes('\\') || /\/\.\.?(\/|$)/.test(path)) return undefined;
      const exact = httpExact.get(path);
      if (exact !== undefined) return exact;
      for (const [prefix, access] of httpPrefixes) if (path.startsWith(prefix)) return access;
      return undefined;
    },
  };
}

/** The policy over the declared {@link ACCESS_TABLE}; what production wiring should use. */
export const defaultAccessPolicy: AccessPolicy = createAccessPolicy();

/**
 * Whether a holder of `held` roles satisfies an entry that needs one of `required`,
 * expanding implications (admin → everything, editor → reader).
 */
export function rolesSatisfy(held: readonly Role[], required: readonly Role[]): boolean {
  for (const role of held) {
    // `?? []`: a Principal built outside the verifier could carry an unchecked string.
    for (const implied of IMPLIED_ROLES[role] ?? []) if (required.includes(implied)) return true;
  }
  return false;
}

/** Narrows an arbitrary string to a known {@link Role}. */
export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}
