import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import { pino } from 'pino';
import { runMetricStoreContract } from './contract.js';
import { DUCKDB_SCHEMA_VERSION, openDuckDbStore } from './duckdb.js';

const logger = pino({ level: process.env.TELEMESH_LOG_LEVEL ?? 'silent' });
let root = '';
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'telemesh-store-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fresh database file in a not-yet-existing directory, so parent creation is exercised too. */
function freshPath(): string {
  n += 1;
  return join(root, `db-${n}`, 'nested', 'metrics.duckdb');
}

const sample = (host: string, t: number, v: number) => ({
  labels: [
    { name: '__name__', value: 'req' },
    { name: 'host', value: host },
  ],
  timestampsMs: [t],
  values: [v],
});

runMetricStoreContract('duckdb file', () => openDuckDbStore({ path: freshPath(), logger }));
runMetricStoreContract('duckdb :memory:', () => openDuckDbStore({ path: ':memory:', logger }));

describe('DuckDB metric store file', () => {
  it('keeps data and batch ids across close and reopen', async () => {
    const path = freshPath();
    const first = await openDuckDbStore({ path, logger });
    await first.write('t', 'b1', [sample('a', 1000, 1), sample('b', 1000, 2)]);
    await first.write('u', 'b1', [sample('a', 1000, 7)]);
    await first.close();

    const second = await openDuckDbStore({ path, logger });
    try {
      const got = await second.select('t', [], -Infinity, Infinity);
      assert.deepEqual(
        got.map((s) => s.values),
        [[1], [2]],
      );
      // The batch id survived too, so a redelivery after restart is still recognised.
      assert.deepEqual(await second.write('t', 'b1', [sample('a', 1000, 1)]), { samplesWritten: 0, duplicate: true });
      assert.deepEqual(await second.labelValues('u', 'host', [], -Infinity, Infinity), ['a']);
      await second.write('t', 'b2', [sample('a', 2000, 3)]);
    } finally {
      await second.close();
    }
    const third = await openDuckDbStore({ path, logger });
    try {
      const got = await third.select('t', [{ op: '=', name: 'host', value: 'a' }], -Infinity, Infinity);
      assert.deepEqual(got[0].timestampsMs, [1000, 2000]);
    } finally {
      await third.close();
    }
  });

  it('stays correct when the known-series cache overflows', async () => {
    const store = await openDuckDbStore({ path: ':memory:', logger, seriesCacheSize: 2 });
    try {
      for (let b = 0; b < 4; b++) {
        // Overlapping series across batches: each must be stored once in `series`.
        await store.write('t', `b${b}`, [sample('a', b, 1), sample(`x${b}`, b, 1), sample('c', b, 1)]);
      }
      const got = await store.select('t', [], -Infinity, Infinity);
      assert.deepEqual(
        got.map((s) => [s.labels[1].value, s.values.length]),
        [['a', 4], ['c', 4], ['x0', 1], ['x1', 1], ['x2', 1], ['x3', 1]],
      );
    } finally {
      await store.close();
    }
  });

  it('records the schema version and checkpoints on close', async () => {
    const path = freshPath();
    const store = await openDuckDbStore({ path, logger });
    await store.write('t', 'b1', [sample('a', 1000, 1)]);
    await store.close();
    // After the close-time checkpoint the WAL is folded into the file.
    assert.equal(existsSync(`${path}.wal`), false);
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    try {
      const rows = (await c.runAndReadAll('SELECT version FROM schema_version')).getRows();
      assert.deepEqual(rows, [[DUCKDB_SCHEMA_VERSION]]);
      const tables = (await c.runAndReadAll("SELECT table_name FROM duckdb_tables() ORDER BY 1")).getRows();
      assert.deepEqual(tables.flat(), ['batches', 'samples', 'schema_version', 'series']);
    } finally {
      c.closeSync();
      instance.closeSync();
    }
  });

  it('refuses a file written by a newer schema', async () => {
    const path = freshPath();
    await (await openDuckDbStore({ path, logger })).close();
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    await c.run('INSERT INTO schema_version VALUES ($v, 0)', { v: DUCKDB_SCHEMA_VERSION + 1 });
    c.closeSync();
    instance.closeSync();
    await assert.rejects(openDuckDbStore({ path, logger }), /newer than this build/);
  });

  it('recognises a batch committed by a process that crashed before acknowledging it', async () => {
    const path = freshPath();
    const module = fileURLToPath(new URL('./duckdb.ts', import.meta.url));
    // The child writes one batch and exits without close(): no checkpoint, only the WAL.
    const script = `
      import { pino } from 'pino';
      const { openDuckDbStore } = await import(${JSON.stringify(module)});
      const store = await openDuckDbStore({ path: ${JSON.stringify(path)}, logger: pino({ level: 'silent' }) });
      await store.write('t', 'crash-batch', [{ labels: [{ name: '__name__', value: 'req' }], timestampsMs: [5], values: [42] }]);
      process.exit(0);
    `;
    // Run from the repository root so the child resolves tsx and pino like the tests do.
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      encoding: 'utf8',
    });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(existsSync(`${path}.wal`), true);

    const store = await openDuckDbStore({ path, logger });
    try {
      const redelivered = [{ labels: [{ name: '__name__', value: 'req' }], timestampsMs: [5], values: [42] }];
      assert.deepEqual(await store.write('t', 'crash-batch', redelivered), { samplesWritten: 0, duplicate: true });
      const got = await store.select('t', [], -Infinity, Infinity);
      assert.deepEqual(got[0].values, [42]);
    } finally {
      await store.close();
    }
  });
});
