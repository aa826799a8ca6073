import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../libs/runtime/config.js';
import { ActiveSeries, InflightGate, seriesKey, TokenBucket } from './limits.js';
import { createScrubber, hashValue } from './scrub.js';
import { parseTenantOverrides } from './config.js';
import { StartupError } from '../../libs/runtime/errors.js';

const defaults = loadConfig().ingestion;
const L = (labels: Record<string, string>) => Object.entries(labels).map(([name, value]) => ({ $typeName: 'telemesh.common.v1.Label' as const, name, value }));

describe('TokenBucket', () => {
  it('allows the burst, then refills at the rate, and says how long to wait', () => {
    const b = new TokenBucket(100, 1000, 0);
    assert.equal(b.take(1000, 0), 0);
    assert.equal(b.take(50, 0), 500, 'empty: 50 samples at 100/s need 500 ms');
    assert.equal(b.take(50, 500), 0, 'refilled after 500 ms');
    assert.equal(b.take(2000, 500), Infinity, 'more than the burst can never pass');
    b.refund(50);
    assert.ok(b.utilisation(500) < 1);
    assert.equal(new TokenBucket(0, 1, 0).take(1e9, 0), 0, 'rate 0 means unlimited');
  });
});

describe('ActiveSeries', () => {
  it('admits known series at the cap, refuses new ones, and forgets idle ones after the window', () => {
    const a = new ActiveSeries(2, 1000);
    assert.ok(a.admit(1, 0));
    assert.ok(a.admit(2, 0));
    assert.ok(!a.admit(3, 10));
    assert.ok(a.admit(1, 600), 'a known series always passes');
    a.purge(1500);
    assert.equal(a.size, 1, 'series 2 was idle for more than the window');
    assert.ok(a.admit(3, 1500));
  });

  it('refreshes a kept entry without a lookup, and a purged entry is admitted afresh', () => {
    const a = new ActiveSeries(1, 1000);
    const e = a.admit(7, 0);
    assert.ok(e);
    assert.equal(a.admit(7, 900, e), e);
    a.purge(1500);
    assert.equal(a.size, 1, 'the refresh through the kept entry counts as activity');
    a.purge(2000);
    assert.equal(a.size, 0);
    assert.equal(e.live, false);
    const again = a.admit(7, 2000, e);
    assert.ok(again && again !== e, 'a dead entry is not reused');
    assert.equal(a.size, 1, 'the series is counted again');
    assert.equal(a.admit(8, 2000), undefined, 'the cap still applies');
  });

  it('keys label sets stably and distinctly', () => {
    const k = seriesKey(L({ __name__: 'm', a: '1' }));
    assert.equal(k, seriesKey(L({ __name__: 'm', a: '1' })));
    assert.notEqual(k, seriesKey(L({ __name__: 'm', a: '2' })));
    assert.notEqual(seriesKey(L({ __name__: 'm', ab: '' })), seriesKey(L({ __name__: 'm', a: 'b' })), 'name/value boundary matters');
    assert.ok(Number.isSafeInteger(k));
    const keys = new Set<number>();
    for (let i = 0; i < 100_000; i++) keys.add(seriesKey(L({ __name__: 'm', i: String(i) })));
    assert.equal(keys.size, 100_000);
  });
});

describe('InflightGate', () => {
  it('caps what is in flight but never blocks a lone request', () => {
    const g = new InflightGate(100);
    assert.ok(g.tryAcquire(500), 'alone, even an oversize request passes');
    assert.ok(!g.tryAcquire(1));
    g.release(500);
    assert.ok(g.tryAcquire(60));
    assert.ok(!g.tryAcquire(50));
    assert.ok(g.tryAcquire(40));
  });
});

describe('scrubber', () => {
  it('by default hashes sensitive label names and values, keeps the rest, and counts', () => {
    const s = createScrubber(defaults);
    const reasons: string[] = [];
    const input = L({ __name__: 'login_total', user: 'alice@example.com', db_password: 'hunter2', auth: 'Bearer abc.def', region: 'eu', api_key: 'k' });
    const out = s.scrub(input, (r) => reasons.push(r));
    const byName = Object.fromEntries(out.map((l) => [l.name, l.value]));
    assert.equal(byName.__name__, 'login_total');
    assert.equal(byName.region, 'eu');
    assert.equal(byName.user, hashValue('alice@example.com'));
    assert.equal(byName.db_password, hashValue('hunter2'));
    assert.equal(byName.auth, hashValue('Bearer abc.def'));
    assert.equal(byName.api_key, hashValue('k'));
    assert.deepEqual(reasons.sort(), ['name', 'name', 'value', 'value']);
    const clean = L({ __name__: 'up', job: 'node' });
    assert.equal(s.scrub(clean, () => assert.fail('nothing to scrub')), clean, 'no copy when nothing is sensitive');
  });

  it('drops instead when configured, and can be switched off', () => {
    const drop = createScrubber({ ...defaults, scrubAction: 'drop' });
    assert.deepEqual(drop.scrub(L({ __name__: 'x', session_id: 's', a: 'b' }), () => undefined).map((l) => l.name), ['__name__', 'a']);
    assert.throws(() => createScrubber({ ...defaults, scrubNamePattern: '(' }), (e) => e instanceof StartupError && e.setting === 'ingestion.scrubNamePattern');
    const off = createScrubber({ ...defaults, scrubEnabled: false });
    assert.equal(off.scrub(L({ password: 'p' }), () => assert.fail()).length, 1);
  });
});

describe('tenant overrides', () => {
  it('overrides only the named limits of the named tenants', () => {
    const o = parseTenantOverrides({ ...defaults, tenantOverrides: 'acme:ratePerSecond=5, maxActiveSeries=0; beta:maxSampleAgeMs=1000;' });
    assert.deepEqual([...o.keys()], ['acme', 'beta']);
    assert.equal(o.get('acme')!.ratePerSecond, 5);
    assert.equal(o.get('acme')!.maxActiveSeries, 0);
    assert.equal(o.get('acme')!.burstSamples, defaults.burstSamples);
    assert.equal(o.get('beta')!.maxSampleAgeMs, 1000);
    assert.equal(parseTenantOverrides(defaults).size, 0);
  });

  it('refuses malformed rules naming the setting', () => {
    for (const bad of ['acme', ':ratePerSecond=1', 'acme:nope=1', 'acme:ratePerSecond=x', 'acme:burstSamples=0', 'acme:scrubEnabled=0']) {
      assert.throws(() => parseTenantOverrides({ ...defaults, tenantOverrides: bad }), (e) => e instanceof StartupError && e.setting === 'ingestion.tenantOverrides', bad);
    }
  });
});
