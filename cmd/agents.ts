/**
 * `telemesh agents`: lists the tenant's agents with state, last heartbeat and the replica
 * holding each stream, through the public HeartbeatService contract like any client.
 */
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { MatchType, type LabelMatcher } from '../libs/contracts/telemesh/common/v1/common_pb.js';
import { AgentState, type Agent } from '../libs/contracts/telemesh/heartbeat/v1/heartbeat_pb.js';
import { HeartbeatService } from '../libs/contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import { formatLabels } from '../libs/model/index.js';
import { parseSelector, PromqlSyntaxError } from '../libs/promql/index.js';
import { flag, type ParsedArgs } from './args.js';
import { authHeaders, transport, UsageError, type ClientIo } from './client.js';

const OP_TYPES = { '=': MatchType.EQUAL, '!=': MatchType.NOT_EQUAL, '=~': MatchType.REGEX, '!~': MatchType.NOT_REGEX } as const;

/** Parses `--state=alive,suspect` into AgentState values. */
function parseStates(text: string | undefined): AgentState[] {
  if (text === undefined || text === '') return [];
  return text.split(',').map((s) => {
    const v = (AgentState as unknown as Record<string, AgentState | undefined>)[s.trim().toUpperCase()];
    if (v === undefined || v === AgentState.UNSPECIFIED) throw new UsageError(`--state: unknown state ${JSON.stringify(s)} (alive, suspect, dead, left)`);
    return v;
  });
}

/** Parses `--selector='{env="prod"}'` into label matchers. */
function parseMatchers(text: string | undefined): LabelMatcher[] {
  if (text === undefined || text === '') return [];
  try {
    return parseSelector(text).map((m) => ({ $typeName: 'telemesh.common.v1.LabelMatcher', type: OP_TYPES[m.op], name: m.name, value: m.value }));
  } catch (err) {
    if (err instanceof PromqlSyntaxError) throw new UsageError(`--selector: ${err.message}`);
    throw err;
  }
}

function ago(ms: bigint, now: number): string {
  if (ms === 0n) return '-';
  const s = Math.max(0, Math.round((now - Number(ms)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

/** Agent state without the enum prefix, lower case: `alive`, `dead`. */
export function stateName(s: AgentState): string {
  return (AgentState[s] ?? String(s)).toLowerCase();
}

/**
 * `telemesh agents [--state=alive,dead] [--selector='{env="prod"}'] [--json]`: lists agents
 * with state, last seen and owner replica, following pages to the end.
 */
export async function agents(args: ParsedArgs, io: ClientIo): Promise<number> {
  const headers = authHeaders(args, io.env);
  const states = parseStates(flag(args, 'state'));
  const matchers = parseMatchers(flag(args, 'selector'));
  const client = createClient(HeartbeatService, transport(args, io.env));
  const all: Agent[] = [];
  try {
    let pageToken = '';
    do {
      const page = await client.listAgents({ states, matchers, pageSize: 1000, pageToken }, { headers });
      all.push(...page.agents);
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
  } catch (err) {
    const ce = ConnectError.from(err);
    io.out(`telemesh: ${Code[ce.code]}: ${ce.rawMessage}`);
    return 1;
  }
  const now = Date.now();
  if (flag(args, 'json') !== undefined) {
    io.out(
      JSON.stringify(
        all.map((a) => ({
          agentId: a.agentId,
          state: stateName(a.state),
          reason: a.reason,
          lastSeenMs: Number(a.lastSeenMs),
          owner: a.ownerReplica,
          hostname: a.hostname,
          intervalMs: Number(a.intervalMs),
          labels: Object.fromEntries(a.labels.map((l) => [l.name, l.value])),
        })),
      ),
    );
    return 0;
  }
  if (all.length === 0) {
    io.out('no agents');
    return 0;
  }
  const rows = [['AGENT', 'STATE', 'LAST SEEN', 'OWNER', 'HOSTNAME', 'INTERVAL', 'LABELS', 'REASON']];
  for (const a of all) {
    rows.push([a.agentId, stateName(a.state), ago(a.lastSeenMs, now), a.ownerReplica, a.hostname, `${Number(a.intervalMs) / 1000}s`, formatLabels(a.labels), a.reason]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
  return 0;
}
