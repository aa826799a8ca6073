/**
 * `telemesh agent`: the reference agent. Every `--interval` seconds it collects this host's
 * CPU, memory, disk, network and load (node_exporter's metric names, so existing
 * dashboards work) and streams them to ingestion through the agent SDK; alongside, it
 * keeps a heartbeat stream so the mesh knows the agent is alive.
 */
import { cpus, hostname, loadavg } from 'node:os';
import si from 'systeminformation';
import { AgentClient, startHeartbeat, type AgentClientStats, type HeartbeatHandle } from '../libs/agent-sdk/index.js';
import { MetricType } from '../libs/contracts/telemesh/common/v1/common_pb.js';
import { isValidLabelName } from '../libs/model/index.js';
import { flag, type ParsedArgs } from './args.js';
import { UsageError, type ClientIo } from './client.js';

/** I/O of the agent command (`main` wires it to the process). */
export interface AgentIo extends Pick<ClientIo, 'env' | 'out'> {
  /** Registers the shutdown handler (SIGINT/SIGTERM). */
  readonly onSignal: (handler: () => void) => void;
}

/** One collected sample. */
export interface HostSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly type: MetricType;
}

const AGENT_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Usage of `telemesh agent`. */
export const AGENT_USAGE = `Usage: telemesh agent --id <agent id> [--interval 10] [--url http://127.0.0.1:7401]
                      [--token T] [--env <environment>] [--labels k=v,…]
Collects this host's CPU, memory, disk, network and load every --interval seconds and
streams them over gRPC (the HTTP/2 port) to ingestion; keeps a heartbeat stream open.
The token (role agent) comes from --token or TELEMESH_TOKEN.`;

/**
 * Reads this host's metrics once. CPU time per core and mode and network byte counts are
 * counters (rates are for queries); the rest are gauges.
 */
export async function collectHostMetrics(): Promise<HostSample[]> {
  const out: HostSample[] = [];
  const gauge = (name: string, value: number, labels: Record<string, string> = {}) => {
    if (Number.isFinite(value)) out.push({ name, labels, value, type: MetricType.GAUGE });
  };
  const count = (name: string, value: number, labels: Record<string, string> = {}) => {
    if (Number.isFinite(value)) out.push({ name, labels, value, type: MetricType.COUNTER });
  };
  for (const [i, c] of cpus().entries()) {
    // os.cpus() reports milliseconds; node_exporter's counter is in seconds.
    for (const [mode, ms] of Object.entries(c.times)) count('node_cpu_seconds_total', ms / 1000, { cpu: String(i), mode: mode === 'sys' ? 'system' : mode });
  }
  const [l1, l5, l15] = loadavg();
  gauge('node_load1', l1!);
  gauge('node_load5', l5!);
  gauge('node_load15', l15!);
  const [mem, fs, net] = await Promise.all([si.mem(), si.fsSize().catch(() => []), si.networkStats('*').catch(() => [])]);
  gauge('node_memory_MemTotal_bytes', mem.total);
  gauge('node_memory_MemFree_bytes', mem.free);
  gauge('node_memory_MemAvailable_bytes', mem.available);
  gauge('node_memory_SwapTotal_bytes', mem.swaptotal);
  gauge('node_memory_SwapFree_bytes', mem.swapfree);
  for (const f of fs) {
    const labels = { device: f.fs, fstype: f.type, mountpoint: f.mount };
    gauge('node_filesystem_size_bytes', f.size, labels);
    gauge('node_filesystem_avail_bytes', f.available, labels);
    gauge('node_filesystem_used_bytes', f.used, labels);
  }
  for (const n of net) {
    const labels = { device: n.iface };
    count('node_network_receive_bytes_total', n.rx_bytes, labels);
    count('node_network_transmit_bytes_total', n.tx_bytes, labels);
    count('node_network_receive_errs_total', n.rx_errors, labels);
    count('node_network_transmit_errs_total', n.tx_errors, labels);
    count('node_network_receive_drop_total', n.rx_dropped, labels);
    count('node_network_transmit_drop_total', n.tx_dropped, labels);
  }
  return out;
}

/** Parses `--labels k=v,k2=v2`. */
export function parseLabelsFlag(text: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!text) return labels;
  for (const part of text.split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const name = eq < 0 ? '' : part.slice(0, eq).trim();
    if (!isValidLabelName(name) || name.startsWith('__')) throw new UsageError(`--labels: ${JSON.stringify(part)} is not name=value with a valid label name`);
    labels[name] = part.slice(eq + 1).trim();
  }
  return labels;
}

/** The agent's own state as self-metrics, sent with the host's. */
function selfMetrics(s: AgentClientStats): HostSample[] {
  const c = (name: string, value: number): HostSample => ({ name, labels: {}, value, type: MetricType.COUNTER });
  return [
    c('telemesh_agent_dropped_samples_total', s.droppedSamples),
    c('telemesh_agent_replayed_batches_total', s.replayedBatches),
    c('telemesh_agent_reconnects_total', s.reconnects),
    c('telemesh_agent_rejected_samples_total', s.rejectedSamples),
    { name: 'telemesh_agent_buffered_samples', labels: {}, value: s.bufferedSamples, type: MetricType.GAUGE },
  ];
}

/** `telemesh agent --id <id> --interval <s> …`: runs until SIGINT/SIGTERM, then flushes and exits 0. */
export async function agent(args: ParsedArgs, io: AgentIo): Promise<number> {
  if (flag(args, 'help') !== undefined) {
    io.out(AGENT_USAGE);
    return 0;
  }
  const agentId = flag(args, 'id') ?? '';
  if (!AGENT_ID.test(agentId)) throw new UsageError(`--id: give the agent id, 1-64 of [A-Za-z0-9_-] (got ${JSON.stringify(agentId)})\n${AGENT_USAGE}`);
  const intervalSec = Number(flag(args, 'interval') ?? 10);
  if (!Number.isFinite(intervalSec) || intervalSec < 1 || intervalSec > 3600) throw new UsageError('--interval: seconds between collections, 1 to 3600');
  const token = flag(args, 'token') ?? io.env.TELEMESH_TOKEN;
  if (!token) throw new UsageError('no token: pass --token or set TELEMESH_TOKEN (an agent token; npm start prints one)');
  const url = flag(args, 'url') ?? 'http://127.0.0.1:7401';
  const environment = flag(args, 'env') ?? 'default';
  const extra = parseLabelsFlag(flag(args, 'labels'));
  const host = hostname();
  const base = { ...extra, host, environment, agent_id: agentId };

  const client = new AgentClient({
    agentId,
    baseUrl: url,
    token,
    // A collection is a few hundred samples: send it right away rather than wait for size.
    maxBatchDelayMs: 200,
    onError: (err, attempt, delayMs) => io.out(`telemesh agent: stream to ${url} broke (${err.message}); retry ${attempt + 1} in ${delayMs} ms`),
  });
  client.start();
  const intervalMs = Math.round(intervalSec * 1000);
  let hb: HeartbeatHandle | undefined;
  try {
    hb = startHeartbeat({
      url,
      token,
      agentId,
      hostname: host,
      labels: { ...extra, environment },
      intervalMs: Math.min(60_000, Math.max(1_000, intervalMs)),
      resources: () => ({ load1: loadavg()[0] ?? 0 }),
    });
  } catch (err) {
    io.out(`telemesh agent: heartbeat not started: ${err instanceof Error ? err.message : String(err)}`);
  }

  let stopping = false;
  let wake: (() => void) | undefined;
  io.onSignal(() => {
    stopping = true;
    wake?.();
  });
  io.out(`telemesh agent ${agentId} on ${host}: every ${intervalSec} s to ${url}`);
  let next = Date.now();
  while (!stopping) {
    const now = Date.now();
    try {
      const samples = [...(await collectHostMetrics()), ...selfMetrics(client.stats())];
      for (const s of samples) client.add({ __name__: s.name, ...base, ...s.labels }, s.value, now, s.type);
    } catch (err) {
      io.out(`telemesh agent: collection failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    // Fixed-rate schedule: a slow collection does not shift every later one.
    next += intervalMs;
    const wait = Math.max(0, next - Date.now());
    if (wait === 0) next = Date.now();
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, wait);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    wake = undefined;
  }
  const stats = await client.close(10_000);
  await hb?.stop();
  io.out(`telemesh agent: stopped; ${stats.acceptedSamples} samples accepted, ${stats.droppedSamples} dropped, ${stats.bufferedSamples} unsent`);
  return 0;
}
