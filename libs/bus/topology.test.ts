import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { InvalidArgumentError, StartupError } from '../runtime/errors.js';
import {
  agentsSubject,
  alertsSubject,
  BUCKETS,
  bucketStreamName,
  CONSUMERS,
  declareTopology,
  ensureTopology,
  samplesSubject,
  STREAMS,
  type EnsureAction,
} from './topology.js';
import { parseSubject } from './subjects.js';
import { startTestNats, testLogger, type TestNats } from './testing.js';

const logger = testLogger();

function actionsOf(list: readonly EnsureAction[]): Record<string, string> {
  return Object.fromEntries(list.map((a) => [`${a.kind}:${a.name}`, a.action]));
}

describe('subject helpers', () => {
  test('build tenant-scoped subjects', () => {
    assert.equal(samplesSubject('acme'), 'telemesh.samples.v1.acme');
    assert.equal(agentsSubject('acme', 'host-01_a'), 'telemesh.agents.v1.acme.host-01_a');
    assert.equal(alertsSubject('ACME-2'), 'telemesh.alerts.v1.ACME-2');
  });

  test('reject tokens that are not subject-safe, naming the field', () => {
    for (const bad of ['', 'a.b', 'a*', '>', 'a b', 'tenant\n', 'x'.repeat(65), 'é']) {
      assert.throws(() => samplesSubject(bad), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.violations[0]?.field, 'tenant');
        return true;
      });
    }
    assert.throws(() => agentsSubject('acme', 'host.1'), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.equal(err.violations[0]?.field, 'agent_id');
      return true;
    });
    assert.equal(samplesSubject('x'.repeat(64)).length, 'telemesh.samples.v1.'.length + 64);
  });

  test('parseSubject finds the tenant after the prefix, not the last token', () => {
    assert.deepEqual(parseSubject('telemesh.agents.v1.acme.host1'), { prefix: 'telemesh.agents.v1', tenant: 'acme' });
    assert.deepEqual(parseSubject('telemesh.samples.v1.acme'), { prefix: 'telemesh.samples.v1', tenant: 'acme' });
  });
});

describe('declareTopology', () => {
  test('declares the fixed streams, consumers and buckets', () => {
    const t = declareTopology();
    assert.deepEqual(t.streams.map((s) => s.name), [STREAMS.samples, STREAMS.agents, STREAMS.alerts]);
    const samples = t.streams[0];
    assert.ok(samples);
    assert.deepEqual(samples.subjects, ['telemesh.samples.v1.>']);
    assert.equal(samples.maxAgeMs, 24 * 3600_000);
    assert.equal(samples.duplicateWindowMs, 120_000);
    assert.equal(samples.replicas, 1);
    const agg = t.consumers.find((c) => c.durable === CONSUMERS.aggregation);
    assert.ok(agg);
    assert.equal(agg.stream, STREAMS.samples);
    assert.equal(agg.ackWaitMs, 30_000);
    assert.equal(agg.backoffMs[0], agg.ackWaitMs);
    assert.equal(agg.maxDeliver, 10);
    assert.deepEqual(t.buckets.map((b) => b.bucket), [BUCKETS.agents, BUCKETS.alertState]);
    assert.equal(declareTopology({ replicas: 3 }).streams[1]?.replicas, 3);
  });

  test('rejects a bad replica count naming nats.replicas', () => {
    assert.throws(() => declareTopology({ replicas: 0 }), (err: unknown) => err instanceof StartupError && err.setting === 'nats.replicas');
  });
});

describe('ensureTopology against nats-server', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    jsm = await jetstreamManager(nc);
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  test('creates everything, then is idempotent', async () => {
    const topology = declareTopology();
    const first = await ensureTopology(jsm, topology, logger);
    assert.ok(first.every((a) => a.action === 'created'), JSON.stringify(first));
    assert.equal(first.length, topology.streams.length + topology.consumers.length + topology.buckets.length);
    const second = await ensureTopology(jsm, topology, logger);
    assert.ok(second.every((a) => a.action === 'unchanged'), JSON.stringify(second));

    const si = await jsm.streams.info(STREAMS.samples);
    assert.equal(si.config.storage, 'file');
    assert.equal(si.config.retention, 'limits');
    assert.equal(si.config.max_age, nanos(24 * 3600_000));
    assert.equal(si.config.duplicate_window, nanos(120_000));
    const ci = await jsm.consumers.info(STREAMS.samples, CONSUMERS.aggregation);
    assert.equal(ci.config.ack_policy, 'explicit');
    assert.equal(ci.config.ack_wait, nanos(30_000));
    assert.equal(ci.config.max_deliver, 10);
    assert.equal(ci.config.max_ack_pending, 256);
    await jsm.streams.info(bucketStreamName(BUCKETS.agents));
  });

  test('updates what differs and leaves the rest alone', async () => {
    const changed = declareTopology({ samplesMaxAgeMs: 3600_000, aggregationMaxAckPending: 100 });
    // Someone changed the bucket's history by hand; the table wins.
    await jsm.streams.update(bucketStreamName(BUCKETS.alertState), { max_msgs_per_subject: 1 });
    const actions = await ensureTopology(jsm, changed, logger);
    const byName = actionsOf(actions);
    assert.equal(byName[`stream:${STREAMS.samples}`], 'updated');
    assert.deepEqual(actions.find((a) => a.name === STREAMS.samples)?.changed, ['max_age']);
    assert.equal(byName[`consumer:${CONSUMERS.aggregation}`], 'updated');
    assert.deepEqual(actions.find((a) => a.name === CONSUMERS.aggregation)?.changed, ['max_ack_pending']);
    assert.equal(byName[`bucket:${BUCKETS.alertState}`], 'updated');
    assert.equal(byName[`stream:${STREAMS.agents}`], 'unchanged');
    assert.equal(byName[`consumer:${CONSUMERS.notification}`], 'unchanged');

    assert.equal((await jsm.streams.info(STREAMS.samples)).config.max_age, nanos(3600_000));
    assert.equal((await jsm.consumers.info(STREAMS.samples, CONSUMERS.aggregation)).config.max_ack_pending, 100);
    assert.equal((await jsm.streams.info(bucketStreamName(BUCKETS.alertState))).config.max_msgs_per_subject, 5);
    const again = await ensureTopology(jsm, changed, logger);
    assert.ok(again.every((a) => a.action === 'unchanged'), JSON.stringify(again));
  });

  test('refuses to change what JetStream cannot change in place', async () => {
    await jsm.streams.delete(STREAMS.alerts);
    await jsm.streams.add({ name: STREAMS.alerts, subjects: ['telemesh.alerts.v1.>'], storage: StorageType.Memory });
    await assert.rejects(ensureTopology(jsm, declareTopology(), logger), (err: unknown) => {
      assert.ok(err instanceof StartupError);
      assert.match(err.message, /TELEMESH_ALERTS.*storage/);
      return true;
    });
    await jsm.streams.delete(STREAMS.alerts);
    await ensureTopology(jsm, declareTopology(), logger);
  });
});

describe('ensureTopology with replicas the server cannot honour', () => {
  let nats: TestNats;
  before(async () => {
    nats = await startTestNats();
  });
  after(async () => {
    await nats?.stop();
  });

  test('fails naming nats.replicas', async () => {
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      await assert.rejects(ensureTopology(jsm, declareTopology({ replicas: 3 }), logger), (err: unknown) => {
        assert.ok(err instanceof StartupError);
        assert.equal(err.setting, 'nats.replicas');
        return true;
      });
    } finally {
      await nc.close();
    }
  });
});
