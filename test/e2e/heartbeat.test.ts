/**
 * Heartbeat through the real single binary (`telemesh serve --target=all`): an agent using
 * the SDK's heartbeat client appears in `telemesh agents` with its owner replica, its `up`
 * series reaches the store through the normal sample path (`telemesh query up`), and a
 * clean stop shows as `left`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startHeartbeat, type HeartbeatHandle } from '../../libs/agent-sdk/heartbeat.js';
import { removeDir, runCli, startMesh, testSecret, token, type MeshProcess } from '../harness.js';

describe('heartbeat end to end (target all)', () => {
  const secret = testSecret();
  let mesh: MeshProcess;
  let hb: HeartbeatHandle | undefined;

  before(async () => {
    mesh = await startMesh({ target: 'all', secret, env: { TELEMESH_REPLICA: 'e2e-1', TELEMESH_HEARTBEAT_UP_INTERVAL_MS: '1000' } });
  });
  after(async () => {
    await hb?.stop(false);
    await mesh?.terminate();
    if (mesh) await removeDir(mesh.dataDir);
  });

  it('telemesh agents lists the agent with state and owner; telemesh query up finds its series', async () => {
    hb = startHeartbeat({ url: mesh.grpcUrl, token: await token(secret, ['agent']), agentId: 'e2e-agent', hostname: 'box1', version: '1.2.3', labels: { env: 'test' }, intervalMs: 1000 });
    const env = { TELEMESH_URL: mesh.httpUrl, TELEMESH_TOKEN: await token(secret, ['reader']) };
    const deadline = Date.now() + 20_000;
    let listed = '';
    while (Date.now() < deadline) {
      const r = await runCli(['agents'], env);
      listed = r.stdout;
      if (/e2e-agent\s+alive/.test(listed)) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.match(listed, /AGENT\s+STATE\s+LAST SEEN\s+OWNER/);
    assert.match(listed, /e2e-agent\s+alive\s+\d+s ago\s+e2e-1\s+box1/);

    let q = '';
    while (Date.now() < deadline) {
      const r = await runCli(['query', 'up{agent_id="e2e-agent"}', '--start=-5m'], env);
      q = r.stdout;
      if (/up\{.*agent_id="e2e-agent"/.test(q) && /\s1$/m.test(q)) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.match(q, /up\{.*agent_id="e2e-agent".*hostname="box1"/);

    await hb.stop();
    hb = undefined;
    let after = '';
    while (Date.now() < deadline + 10_000) {
      after = (await runCli(['agents', '--state=left', '--json'], env)).stdout;
      if (after.includes('e2e-agent')) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    const rows = JSON.parse(after) as Array<{ agentId: string; state: string; reason: string }>;
    assert.equal(rows.find((r) => r.agentId === 'e2e-agent')?.state, 'left');
  });
});
