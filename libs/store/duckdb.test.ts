import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
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
import { StoreClosedError } from './errors.js';
import type { MetricStore } from './port.js';
import type { RollupStore } from './rollup.js';

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
// The same contract with every write sealed into compressed chunks at once (the suite's
// timestamps are years old), so reads always mix sealed chunks and newer rows.
// The same contract answered from the in-memory head (covering every age), and with a
// head so small that it keeps trimming, so reads alternate between head and rows.
runMetricStoreContract('duckdb head', () => openDuckDbStore({ path: freshPath(), logger, headMaxAgeMs: Infinity }));
runMetricStoreContract('duckdb small head', () => openDuckDbStore({ path: freshPath(), logger, headMaxAgeMs: Infinity, headSamples: 40 }));
runMetricStoreContract('duckdb sealed', async () => sealingEveryWrite(await openDuckDbStore({ path: freshPath(), logger, sealAfterMs: 1 })));

/** Runs the compactor (which seals) after every write. */
function sealingEveryWrite(store: RollupStore): MetricStore {
  return {
    write: async (tenant, batchId, series) => {
      const result = await store.write(tenant, batchId, series);
      // A write accepted before close still completes; its seal is simply skipped.
      await store.compact().catch((err: unknown) => {
        if (!(err instanceof StoreClosedError)) throw err;
      });
      return result;
    },
    writeColumns: async (tenant, batchId, columns) => {
      const result = await store.writeColumns!(tenant, batchId, columns);
      await store.compact().catch((err: unknown) => {
        if (!(err instanceof StoreClosedError)) throw err;
      });
      return result;
    },
    select: (...args) => store.select(...args),
    selectColumns: (...args) => store.selectColumns(...args),
    series: (...args) => store.series(...args),
    labelNames: (...args) => store.labelNames(...args),
    labelValues: (...args) => store.labelValues(...args),
    close: () => store.close(),
  };
}

describe('DuckDB metric store file', () => {
  it('answers from the head only for ranges after what the file held at open', async () => {
    const path = freshPath();
    const first = await openDuckDbStore({ path, logger, headMaxAgeMs: Infinity });
    await first.write('t', 'b1', [sample('a', 1000, 1), sample('a', 2000, 2)]);
    await first.close();
    const second = await openDuckDbStore({ path, logger, headMaxAgeMs: Infinity });
    try {
      // 3000 reaches the head; 1500 is older than the newest stored sample, so the head,
      // which covers from 2001 on, must not keep it, and ranges before 2001 read rows.
      await second.write('t', 'b2', [sample('a', 3000, 3), sample('a', 1500, 1.5)]);
      // Each read also says where it was answered from (head, or stored rows and chunks).
      const at = async (from: number) => {
        const before = second.stats!();
        const got = (await second.select('t', [], from, 10_000)).map((s) => s.timestampsMs);
        const after = second.stats!();
        return { got, head: after.headReads - before.headReads, stored: after.storedReads - before.storedReads };
      };
      assert.deepEqual(await at(0), { got: [[1000, 1500, 2000, 3000]], head: 0, stored: 1 });
      assert.deepEqual(await at(1400), { got: [[1500, 2000, 3000]], head: 0, stored: 1 });
      assert.deepEqual(await at(2500), { got: [[3000]], head: 1, stored: 0 });
      await second.write('t', 'b3', [sample('a', 2500, 2.5)]);
      assert.deepEqual(await at(2001), { got: [[2500, 3000]], head: 1, stored: 0 }, 'a late sample after the head start is mirrored');
    } finally {
      await second.close();
    }
  });

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
      assert.deepEqual(tables.flat(), ['batches', 'chunks', 'rollup_chunks', 'rollup_dirty', 'rollups', 'samples', 'schema_version', 'series']);
    } finally {
      c.closeSync();
      instance.closeSync();
    }
  });

  it('migrates a version 1 file and rolls up the samples written before the upgrade', async () => {
    const path = freshPath();
    const t = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
    const first = await openDuckDbStore({ path, logger });
    await first.write('t', 'b1', [sample('a', t, 1), sample('a', t + 400_000, 2)]);
    await first.close();
    // Turn the file back into version 1: no rollup tables, version row 1.
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    await c.run('DROP TABLE rollups');
    await c.run('DROP TABLE rollup_dirty');
    await c.run('DROP TABLE chunks');
    await c.run('DROP TABLE rollup_chunks');
    await c.run('UPDATE schema_version SET version = 1');
    c.closeSync();
    instance.closeSync();

    const store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0 });
    try {
      assert.deepEqual(await store.compact(), { windows: 3, rows: 3 });
      const [got] = await store.selectRollup('t', [], -Infinity, Infinity, 300_000);
      assert.deepEqual(
        got.windows.map((w) => [w.startMs - t, w.sum, w.count]),
        [
          [0, 1, 1],
          [300_000, 2, 1],
        ],
      );
      assert.equal((await store.write('t', 'b1', [sample('a', t, 1)])).duplicate, true);
    } finally {
      await store.close();
    }
  });

  it('migrates a version 2 file (no sealed rollup windows) and keeps its rollup rows', async () => {
    const path = freshPath();
    const t = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
    const first = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0 });
    await first.write('t', 'b1', [sample('a', t, 1), sample('a', t + 400_000, 2)]);
    await first.compact();
    await first.close();
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    await c.run('DROP TABLE rollup_chunks');
    await c.run('UPDATE schema_version SET version = 2');
    c.closeSync();
    instance.closeSync();

    const store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0 });
    try {
      const [got] = await store.selectRollup('t', [], -Infinity, Infinity, 300_000);
      assert.deepEqual(got.windows.map((w) => [w.startMs - t, w.sum]), [[0, 1], [300_000, 2]]);
    } finally {
      await store.close();
    }
    const check = await DuckDBInstance.create(path);
    const d = await check.connect();
    try {
      const versions = (await d.runAndReadAll('SELECT version FROM schema_version ORDER BY 1')).getRows().flat();
      assert.deepEqual(versions, [2, DUCKDB_SCHEMA_VERSION]);
    } finally {
      d.closeSync();
      check.closeSync();
    }
  });

  it('seals old samples into compressed chunks that read back exactly, late samples included', async () => {
    const path = freshPath();
    const hour = 3_600_000;
    // On a 2-hour span boundary, 8 hours back: the 4 hours written fill two whole spans,
    // all older than the newest whole span the 2-hour seal age allows.
    const t0 = Math.floor(Date.now() / (2 * hour)) * 2 * hour - 8 * hour;
    const points = (from: number, n: number) => Array.from({ length: n }, (_, i) => [from + i * 15_000, 100 + i * 0.25] as const);
    const series = (host: string, pts: readonly (readonly [number, number])[]) => ({
      ...sample(host, 0, 0),
      timestampsMs: pts.map((p) => p[0]),
      values: pts.map((p) => p[1]),
    });
    let store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0 });
    await store.write('t', 'b1', [series('a', points(t0, 960)), series('b', points(t0 + 60_000, 10))]);
    await store.compact();
    // A late sample for a sealed span, sharing a timestamp with a sealed one.
    await store.write('t', 'b2', [series('a', [[t0, -1]])]);
    const expected = await store.select('t', [], -Infinity, Infinity);
    assert.deepEqual(expected[0].values.slice(0, 3), [100, -1, 100.25]);
    await store.compact();
    assert.deepEqual(await store.select('t', [], -Infinity, Infinity), expected);
    // Ranges cutting through chunks, label queries, and limits see the same samples.
    const mid = await store.select('t', [], t0 + 30_000, t0 + 60_000);
    assert.deepEqual(mid.map((s) => s.timestampsMs.length), [3, 1]);
    assert.deepEqual(await store.labelValues('t', 'host', [], t0 + 61_000, t0 + 74_000), []);
    assert.deepEqual(await store.labelValues('t', 'host', [], t0 + 60_000, t0 + 60_000), ['a', 'b']);
    await assert.rejects(store.select('t', [], -Infinity, Infinity, { maxSamples: 970 }), /maxSamples=970/);
    await store.close();

    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    const counts = (await c.runAndReadAll('SELECT (SELECT count(*) FROM samples)::INTEGER, (SELECT sum(n) FROM chunks)::INTEGER')).getRows();
    c.closeSync();
    instance.closeSync();
    assert.deepEqual(counts, [[0, 971]]);
    store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0 });
    try {
      assert.deepEqual(await store.select('t', [], -Infinity, Infinity), expected);
    } finally {
      await store.close();
    }
  });

  it('seals whole 2-hour spans only, so a compactor running every minute still writes full chunks', async () => {
    const path = freshPath();
    const hour = 3_600_000;
    const span0 = 100 * 2 * hour;
    let now = span0 + 3 * hour;
    const store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0, now: () => now });
    // Three hours at one minute, written and compacted minute by minute, as in service.
    for (let m = 0; m < 180; m++) {
      await store.write('t', `m${m}`, [sample('a', span0 + m * 60_000, m)]);
      now = span0 + m * 60_000 + 2 * hour + 30_000;
      await store.compact();
    }
    now = span0 + 4 * hour + 1;
    await store.compact();
    const all = await store.select('t', [], -Infinity, Infinity);
    await store.close();
    assert.deepEqual(all[0]!.values, Array.from({ length: 180 }, (_, m) => m));
    const instance = await DuckDBInstance.create(path);
    const c = await instance.connect();
    const chunks = (await c.runAndReadAll('SELECT n FROM chunks ORDER BY start_ms')).getRows();
    const rows = (await c.runAndReadAll('SELECT count(*)::INTEGER FROM samples')).getRows();
    c.closeSync();
    instance.closeSync();
    assert.deepEqual(chunks, [[120]], 'one chunk for the first whole span, not one per run');
    assert.deepEqual(rows, [[60]], 'the span still filling stays rows');
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

  it('a batch redelivered after kill -9 between write and ack changes no count or sum', async () => {
    const path = freshPath();
    const module = fileURLToPath(new URL('./duckdb.ts', import.meta.url));
    // Recent timestamps, so the windows are within raw retention and get rolled up.
    const t0 = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
    const batch = (host: string, base: number, t: number) =>
      Array.from({ length: 50 }, (_, i) => ({
        labels: [
          { name: '__name__', value: 'req' },
          { name: 'host', value: `${host}${i}` },
        ],
        timestampsMs: [t, t + 1000, t + 2000],
        values: [base + i, base + i + 1, base + i + 2],
      }));
    // The child plays the aggregation consumer: it stores an earlier batch, then the batch
    // under test, reports that the write resolved and waits for an ack it never sends;
    // the parent kills it with SIGKILL right there (no close, no checkpoint: only the WAL).
    const script = `
      import { pino } from 'pino';
      const { openDuckDbStore } = await import(${JSON.stringify(module)});
      const store = await openDuckDbStore({ path: ${JSON.stringify(path)}, logger: pino({ level: 'silent' }) });
      const batch = ${batch.toString()};
      await store.write('t', 'earlier', batch('e', 0, ${t0}));
      await store.write('t', 'crash-batch', batch('h', 10, ${t0}));
      process.stdout.write('written\\n');
      setInterval(() => {}, 1000);
    `;
    // Run from the repository root so the child resolves tsx and pino like the tests do.
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = once(child, 'exit');
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('written')) resolve();
      });
      void exited.then(() => reject(new Error(`child exited before writing: ${stderr}`)));
    });
    child.kill('SIGKILL');
    const [, signal] = await exited;
    assert.equal(signal, 'SIGKILL');
    assert.equal(existsSync(`${path}.wal`), true);

    const store = await openDuckDbStore({ path, logger, compactionIntervalMs: 0, retentionIntervalMs: 0 });
    try {
      const totals = async () => {
        const got = await store.select('t', [], -Infinity, Infinity);
        await store.compact();
        const windows = (await store.selectRollup('t', [], -Infinity, Infinity, 300_000)).flatMap((s) => s.windows);
        return {
          series: got.length,
          count: got.reduce((n, s) => n + s.values.length, 0),
          sum: got.reduce((n, s) => n + s.values.reduce((a, b) => a + b, 0), 0),
          rollupCount: windows.reduce((n, w) => n + w.count, 0),
          rollupSum: windows.reduce((n, w) => n + w.sum, 0),
        };
      };
      const before = await totals();
      // Per batch: Σ over i < 50 of 3·(base + i) + 3 = 150·base + 3,825.
      assert.deepEqual(before, { series: 100, count: 300, sum: 9_150, rollupCount: 300, rollupSum: 9_150 });
      // JetStream redelivers the unacknowledged batch to the restarted consumer.
      assert.deepEqual(await store.write('t', 'crash-batch', batch('h', 10, t0)), { samplesWritten: 0, duplicate: true });
      assert.deepEqual(await totals(), before);
    } finally {
      await store.close();
    }
  });
});
