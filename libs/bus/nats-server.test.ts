import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { connect as netConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { StartupError } from '../runtime/errors.js';
import { NATS_INSTALL_HINT, findExecutable, startNatsServer } from './nats-server.js';
import { freePort, startTestNats, testLogger, waitFor } from './testing.js';

/** Resolves true when something accepts TCP connections on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('startNatsServer', () => {
  let scratch = '';
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'telemesh-bus-test-'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  test('startTestNats serves JetStream on 127.0.0.1 and stop() removes everything', async () => {
    const nats = await startTestNats();
    assert.match(nats.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(await accepts(nats.port), true);
    await nats.stop();
    await nats.stop(); // idempotent
    assert.equal(await accepts(nats.port), false);
    await assert.rejects(stat(nats.storeDir), { code: 'ENOENT' });
  });

  test('a missing binary fails with the install hint and names nats.url', async () => {
    await assert.rejects(
      startNatsServer({ port: await freePort(), storeDir: scratch, logger: testLogger(), searchPath: scratch }),
      (err: unknown) => {
        assert.ok(err instanceof StartupError);
        assert.equal(err.setting, 'nats.url');
        assert.ok(err.message.includes('apt-get install -y nats-server'), err.message);
        assert.ok(err.message.includes('TELEMESH_NATS_URL'), err.message);
        assert.ok(err.message.includes(NATS_INSTALL_HINT));
        return true;
      },
    );
    assert.equal(await findExecutable('/nonexistent/nats-server'), undefined);
  });

  test('a taken port fails naming nats.embeddedPort', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const addr = blocker.address();
    assert.ok(addr !== null && typeof addr === 'object');
    try {
      await assert.rejects(startNatsServer({ port: addr.port, storeDir: join(scratch, 'taken'), logger: testLogger() }), (err: unknown) => {
        assert.ok(err instanceof StartupError);
        assert.equal(err.setting, 'nats.embeddedPort');
        assert.ok(err.message.includes(String(addr.port)), err.message);
        return true;
      });
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  test('an early exit reports the last stderr line', async () => {
    const fake = join(scratch, 'fake-nats-server');
    await writeFile(fake, '#!/bin/sh\necho "[1] 2024/01/01 00:00:00.000000 [FTL] something specific went wrong" >&2\nexit 3\n');
    await chmod(fake, 0o755);
    await assert.rejects(startNatsServer({ port: await freePort(), storeDir: scratch, logger: testLogger(), binary: fake }), (err: unknown) => {
      assert.ok(err instanceof StartupError);
      assert.equal(err.setting, 'nats.url');
      assert.ok(err.message.includes('code 3'), err.message);
      assert.ok(err.message.includes('[FTL] something specific went wrong'), err.message);
      return true;
    });
  });

  test('the server does not outlive a parent killed with SIGKILL', async () => {
    const fixture = fileURLToPath(new URL('./testdata/orphaned-server-parent.ts', import.meta.url));
    const parent = spawn(process.execPath, ['--import', 'tsx', fixture], { stdio: ['ignore', 'pipe', 'inherit'] });
    let started: { url: string; port: number; storeDir: string } | undefined;
    try {
      const lines = createInterface({ input: parent.stdout });
      const first = await new Promise<string>((resolve, reject) => {
        lines.once('line', resolve);
        parent.once('exit', (code) => reject(new Error(`fixture exited early (${code})`)));
      });
      started = JSON.parse(first) as { url: string; port: number; storeDir: string };
      assert.equal(await accepts(started.port), true);
      parent.kill('SIGKILL');
      const port = started.port;
      assert.equal(await waitFor(async () => !(await accepts(port)), 10_000, 100), true, 'nats-server still accepts connections after its parent died');
    } finally {
      if (parent.exitCode === null && parent.signalCode === null) parent.kill('SIGKILL');
      // The fixture could not remove its store directory; we do.
      if (started) await rm(started.storeDir, { recursive: true, force: true });
    }
  });
});
