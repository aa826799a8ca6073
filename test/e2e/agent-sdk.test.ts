/**
 * The agent SDK against the real mesh: `telemesh serve --target=all` (real ingestion
 * Stream, a real external nats-server with JetStream, aggregation writing DuckDB), with a
 * loopback TCP proxy between the SDK and the server that, on the first connection, stops
 * passing acknowledgements back mid-stream and then cuts the connection. Batches the
 * server received and published but whose acknowledgements were lost are replayed by the
 * SDK on the next connection with the same batch ids; the test proves each is stored once:
 * exactly one JetStream message per batch, and exactly the samples sent, via QueryService.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { AgentClient } from '../../libs/agent-sdk/index.js';
import { samplesSubject, STREAMS } from '../../libs/bus/index.js';
import { startTestNats, type TestNats } from '../../libs/bus/testing.js';
import { AgentState } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_pb.js';
import { HeartbeatService } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import { QueryService } from '../../libs/contracts/telemesh/query/v1/query_service_pb.js';
import { BIN, bearer, eventually, removeDir, ROOT, startMesh, testSecret, token, type MeshProcess } from '../harness.js';

/** A TCP proxy that, on its first connection, swallows responses after `cutAfterBytes` upstream, then drops the connection. */
async function lossyProxy(targetPort: number, cutAfterBytes: number): Promise<{ port: number; cuts: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  let cuts = 0;
  const server: Server = createServer((client) => {
    const first = connections++ === 0;
    const upstream = tcpConnect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    let up = 0;
    let swallowing = false;
    client.on('data', (d: Buffer) => {
      upstream.write(d);
      up += d.length;
      if (first && !swallowing && up >= cutAfterBytes) {
        swallowing = true;
        // Let the server receive and publish what is in flight, then cut: those acks are lost.
        setTimeout(() => {
          cuts++;
          client.destroy();
          upstream.destroy();
        }, 1_000);
      }
    });
    upstream.on('data', (d: Buffer) => {
      if (!swallowing) client.write(d);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    port,
    cuts: () => cuts,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('agent SDK → real ingestion → JetStream → aggregation', () => {
  const secret = testSecret();
  let nats: TestNats;
  let mesh: MeshProcess;

  before(async () => {
    nats = await startTestNats();
    mesh = await startMesh({ target: 'all', secret, natsUrl: nats.url });
  });

  after(async () => {
    await mesh?.terminate();
    if (mesh) await removeDir(mesh.dataDir);
    await nats?.stop();
  });

  it('replays unacknowledged batches after a cut connection and stores each exactly once', async () => {
    const grpcPort = Number(new URL(mesh.grpcUrl).port);
    const proxy = await lossyProxy(grpcPort, 20_000);
    const agentToken = await token(secret, ['agent'], 'sdke2e');
    const client = new AgentClient({
      agentId: 'e2e-agent',
      baseUrl: `http://127.0.0.1:${proxy.port}`,
      token: agentToken,
      maxBatchSamples: 100,
      maxInflightBatches: 4,
      backoff: { initialMs: 50, maxMs: 200 },
    });
    client.start();
    const t0 = Date.now() - 120_000;
    const batches = 20;
    for (let t = 0; t < batches; t++) {
      for (let i = 0; i < 100; i++) client.add({ __name__: 'sdk_e2e_gauge', host: `h${i}`, job: 'sdk' }, t * 100 + i, t0 + t * 1000);
      // A steady trickle, as an agent sends, so the cut falls mid-stream.
      await new Promise((r) => setTimeout(r, 20));
    }
    await client.flush(30_000);
    const stats = await client.close();
    await proxy.close();
    assert.equal(proxy.cuts(), 1);
    assert.ok(stats.reconnects >= 1, `reconnects ${stats.reconnects}`);
    assert.ok(stats.replayedBatches >= 1, `replayed ${stats.replayedBatches}`);
    assert.equal(stats.ackedBatches, batches);
    assert.equal(stats.acceptedSamples, batches * 100);

    // JetStream kept one message per batch: the replays were dropped by Nats-Msg-Id.
    const nc = await natsConnect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      const subject = samplesSubject('sdke2e');
      const info = await jsm.streams.info(STREAMS.samples, { subjects_filter: subject });
      assert.equal(info.state.subjects?.[subject], batches);
    } finally {
      await nc.close();
    }

    // And the store holds exactly the samples sent.
    const reader = await token(secret, ['reader'], 'sdke2e');
    const query = mesh.connect(QueryService);
    const count = async () => {
      const res = await query.select({ selector: 'sdk_e2e_gauge{job="sdk"}', startMs: BigInt(t0 - 1000), endMs: BigInt(Date.now() + 1000) }, bearer(reader));
      return res.series.reduce((n, s) => n + s.values.length, 0);
    };
    await eventually(count, (n) => n >= batches * 100);
    assert.equal(await count(), batches * 100);
  });

  it('telemesh agent streams host metrics with host, environment and agent_id labels, and stops cleanly', async () => {
    const agentToken = await token(secret, ['agent'], 'hosts');
    const child = spawn(process.execPath, [BIN, 'agent', '--id', 'e2e-host', '--interval', '1', '--env', 'test', '--labels', 'rack=r1', '--url', mesh.grpcUrl], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', TELEMESH_TOKEN: agentToken },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const reader = await token(secret, ['reader'], 'hosts');
    const heartbeat = mesh.connect(HeartbeatService);
    const agentState = async () => (await heartbeat.getAgent({ agentId: 'e2e-host' }, bearer(reader))).agent?.state;
    try {
      const query = mesh.connect(QueryService);
      const select = (selector: string) => query.select({ selector, startMs: BigInt(Date.now() - 60_000), endMs: BigInt(Date.now() + 1000) }, bearer(reader));
      // Two collections at least: the agent keeps streaming on its interval.
      const load = await eventually(() => select('node_load1{agent_id="e2e-host"}'), (r) => (r.series[0]?.values.length ?? 0) >= 2, 20_000);
      const labels = Object.fromEntries(load.series[0]!.labels.map((l) => [l.name, l.value]));
      assert.equal(labels.environment, 'test');
      assert.equal(labels.rack, 'r1');
      assert.ok(labels.host);
      const mem = await select('node_memory_MemTotal_bytes{agent_id="e2e-host"}');
      assert.ok((mem.series[0]?.values[0] ?? 0) > 0);
      const cpu = await select('node_cpu_seconds_total{agent_id="e2e-host"}');
      assert.ok(cpu.series.length >= 4, `cpu series: ${cpu.series.length}`);
      // The heartbeat stream runs beside the metrics stream.
      await eventually(agentState, (s) => s === AgentState.ALIVE, 10_000);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, out);
    assert.match(out, /stopped; \d+ samples accepted, 0 dropped, 0 unsent/);
    // A clean stop says goodbye: the agent is `left`, not `dead`.
    await eventually(agentState, (s) => s === AgentState.LEFT, 10_000);
  });
});
