import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { Binary, Double, MongoClient } from 'mongodb';
import { pino } from 'pino';
import { runMetricStoreContract } from './contract.js';
import { runRollupStoreContract } from './rollup-contract.js';
import { StoreInputError } from './errors.js';
import {
  buildCollectionSpecs,
  buildRollupPipeline,
  buildSelectPipeline,
  buildSeriesFilter,
  buildSeriesWithSamplesPipeline,
  buildWindowSamplesPipeline,
  clampDate,
  openMongoStore,
  rollupCollection,
  rollupDocument,
} from './mongodb.js';
import { aggregateWindows, DEFAULT_RETENTION } from './rollup.js';

const logger = pino({ level: process.env.TELEMESH_LOG_LEVEL ?? 'silent' });
const uri = process.env.TELEMESH_TEST_MONGODB_URI ?? '';
const DAY_S = 86_400;

describe('MongoDB adapter: collections, indexes and pipelines it builds', () => {
  it('lays out a time-series raw collection, the series index and one rollup collection per tier', () => {
    assert.deepEqual(buildCollectionSpecs(DEFAULT_RETENTION, 'seconds'), [
      {
        name: 'samples',
        options: { timeseries: { timeField: 'ts', metaField: 'm', granularity: 'seconds' }, expireAfterSeconds: 15 * DAY_S },
        indexes: [{ key: { 'm.t': 1, 'm.s': 1, ts: 1 }, name: 'series_time' }],
      },
      {
        name: 'series',
        options: {},
        indexes: [
          { key: { t: 1, s: 1 }, name: 'tenant_series', unique: true },
          { key: { t: 1, metric: 1 }, name: 'tenant_metric' },
          { key: { t: 1, lk: 1 }, name: 'tenant_labels' },
        ],
      },
      { name: 'batches', options: {}, indexes: [{ key: { at: 1 }, name: 'expire', expireAfterSeconds: 15 * DAY_S }] },
      { name: 'rollup_dirty', options: {}, indexes: [] },
      {
        name: 'rollups_300000',
        options: {},
        indexes: [
          { key: { t: 1, s: 1, w: 1 }, name: 'series_window', unique: true },
          { key: { end: 1 }, name: 'expire', expireAfterSeconds: 90 * DAY_S },
        ],
      },
      {
        name: 'rollups_3600000',
        options: {},
        indexes: [
          { key: { t: 1, s: 1, w: 1 }, name: 'series_window', unique: true },
          { key: { end: 1 }, name: 'expire', expireAfterSeconds: 730 * DAY_S },
        ],
      },
    ]);
    assert.equal(rollupCollection(300_000), 'rollups_300000');
    const hourly = buildCollectionSpecs({ rawRetentionMs: 3_600_000, tiers: [] }, 'minutes');
    assert.deepEqual(hourly[0].options, {
      timeseries: { timeField: 'ts', metaField: 'm', granularity: 'minutes' },
      expireAfterSeconds: 3600,
    });
    assert.equal(hourly.length, 4);
  });

  it('pushes the tenant, metric name and non-empty equalities down to the series index', () => {
    assert.deepEqual(
      buildSeriesFilter('acme', [
        { op: '=', name: '__name__', value: 'http_requests_total' },
        { op: '=', name: 'job', value: 'api' },
        { op: '=', name: 'zone', value: '' },
        { op: '=~', name: 'code', value: '5..' },
        { op: '=', name: 'env', value: 'prod' },
      ]),
      { t: 'acme', metric: 'http_requests_total', lk: { $all: ['job=api', 'env=prod'] } },
    );
    assert.deepEqual(buildSeriesFilter('acme', [{ op: '!=', name: '__name__', value: 'x' }]), { t: 'acme' });
  });

  it('reads samples by tenant, series and time, ordered by series, time and write order', () => {
    const range = { startMs: 1000, endMs: 2000 };
    const match = {
      $match: {
        'm.t': 'acme',
        'm.s': { $in: ['00000000000000aa'] },
        ts: { $gte: new Date(1000), $lte: new Date(2000) },
        ms: { $gte: 1000, $lte: 2000 },
      },
    };
    assert.deepEqual(buildSelectPipeline('acme', ['00000000000000aa'], range), [
      match,
      { $sort: { 'm.s': 1, ms: 1, _id: 1 } },
      { $project: { _id: 0, s: '$m.s', ms: 1, v: 1 } },
    ]);
    assert.deepEqual(buildSeriesWithSamplesPipeline('acme', ['00000000000000aa'], range), [match, { $group: { _id: '$m.s' } }]);
    assert.deepEqual(buildRollupPipeline('acme', ['a', 'b'], 0, 10), [
      { $match: { t: 'acme', s: { $in: ['a', 'b'] }, w: { $gte: 0, $lte: 10 } } },
      { $sort: { s: 1, w: 1 } },
    ]);
  });

  it('selects the raw samples of dirty windows with floor-division window membership', () => {
    const pipeline = buildWindowSamplesPipeline('acme', [600_000, 0], 300_000);
    assert.deepEqual(pipeline, [
      { $match: { 'm.t': 'acme', ts: { $gte: new Date(0), $lte: new Date(899_999) }, ms: { $gte: 0, $lte: 899_999 } } },
      {
        $match: {
          $expr: {
            $in: [{ $subtract: ['$ms', { $mod: [{ $add: [{ $mod: ['$ms', 300_000] }, 300_000] }, 300_000] }] }, [600_000, 0]],
          },
        },
      },
      { $sort: { 'm.s': 1, ms: 1, _id: 1 } },
      { $project: { _id: 0, s: '$m.s', ms: 1, v: 1 } },
    ]);
  });

  it('stores windows as doubles and a binary sketch, and clamps dates to the BSON range', () => {
    const [w] = aggregateWindows([0, 1000], [-0, 2], 300_000);
    const doc = rollupDocument('acme', 'ff', 300_000, w);
    assert.deepEqual(Object.keys(doc), ['t', 's', 'w', 'end', 'min', 'max', 'sum', 'count', 'last', 'lastMs', 'sketch']);
    assert.ok(doc.min instanceof Double && doc.sum instanceof Double);
    assert.ok(doc.sketch instanceof Binary);
    assert.deepEqual(doc.end, new Date(300_000));
    assert.equal(clampDate(Number.MAX_SAFE_INTEGER).getTime(), 8_640_000_000_000_000);
    assert.equal(clampDate(-Number.MAX_SAFE_INTEGER).getTime(), -8_640_000_000_000_000);
    assert.equal(clampDate(5).getTime(), 5);
  });

  it('refuses to open without a connection string, naming the setting', async () => {
    await assert.rejects(openMongoStore({ uri: '', database: 'x', logger }), (err: unknown) => {
      assert.ok(err instanceof StoreInputError);
      assert.match(err.message, /store\.mongodbUri/);
      return true;
    });
  });
});

const skip = uri === '' ? 'TELEMESH_TEST_MONGODB_URI not set: no MongoDB server on this machine' : false;
const databases: string[] = [];

// Every test database is dropped once all suites are done.
after(async () => {
  if (databases.length === 0) return;
  const client = new MongoClient(uri);
  try {
    for (const name of databases) await client.db(name).dropDatabase();
  } finally {
    await client.close();
  }
});

describe('MongoDB adapter against a real server', { skip }, () => {
  runMetricStoreContract('mongodb', () => {
    const database = `telemesh_test_${randomUUID().slice(0, 8)}`;
    databases.push(database);
    return openMongoStore({ uri, database, logger, compactionIntervalMs: 0, retentionIntervalMs: 0 });
  });
});

describe('MongoDB rollups against a real server', { skip }, () => {
  runRollupStoreContract('mongodb', (now) => {
    const database = `telemesh_test_${randomUUID().slice(0, 8)}`;
    databases.push(database);
    return openMongoStore({ uri, database, logger, now, compactionIntervalMs: 0, retentionIntervalMs: 0 });
  });
});
