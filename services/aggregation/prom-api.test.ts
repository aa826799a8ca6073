/**
 * The Prometheus HTTP API routes over a real loopback HTTP server, the real PromQL engine
 * and the in-memory store fake (which passes the same contract suite as DuckDB); the
 * process-level wiring is covered by test/e2e/prometheus-api.test.ts.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createTestAuth, type TestAuth } from '../../libs/runtime/auth/testing.js';
import { loadConfig } from '../../libs/runtime/config.js';
import type { MetricStore } from '../../libs/store/index.js';
import { createMemoryStore } from '../../libs/store/testing.js';
import { prometheusApiRoutes } from './prom-api.js';
import { Querier } from './querier.js';

describe('Prometheus HTTP API routes', () => {
  let server: Server;
  let url: string;
  let auth: TestAuth;
  let reader: string;
  const base = 1_700_000_000_000;
  const limits = { ...loadConfig({}).query, maxRangePoints: 100, maxSamples: 50 };

  before(async () => {
    auth = createTestAuth();
    reader = await auth.token(['reader'], 'acme');
    const store = createMemoryStore();
    const pts = (f: (k: number) => number) => ({ timestampsMs: Array.from({ length: 41 }, (_, k) => base + k * 15_000), values: Array.from({ length: 41 }, (_, k) => f(k)) });
    await store.write('acme', 'b1', [
      { labels: [{ name: '__name__', value: 'up' }, { name: 'job', value: 'a' }], ...pts(() => 1) },
      { labels: [{ name: '__name__', value: 'reqs_total' }, { name: 'job', value: 'a' }], ...pts((k) => k * 15) },
    ]);
    await store.write('other', 'b1', [{ labels: [{ name: '__name__', value: 'up' }, { name: 'job', value: 'secret' }], ...pts(() => 1) }]);
    const routes = prometheusApiRoutes({ querier: new Querier(store, limits), verifier: auth.verifier, logger: pino({ level: 'silent' }), maxRequestBytes: 4096, version: 'test' });
    server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      const route = routes.find((r) => (r.path.endsWith('/') ? path.startsWith(r.path) : path === r.path));
      if (!route) return void res.writeHead(404).end();
      void route.handler(req, res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((r) => server.close(() => r())));

  async function call(path: string, init: RequestInit & { token?: string | null } = {}) {
    const headers = new Headers(init.headers);
    if (init.token !== null) headers.set('authorization', `Bearer ${init.token ?? reader}`);
    const res = await fetch(`${url}${path}`, { ...init, headers });
    return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as Record<string, unknown> };
  }

  it('answers an instant query in the Prometheus envelope, scoped to the tenant', async () => {
    const res = await call(`/api/v1/query?query=up&time=${(base + 60_000) / 1000}`);
    assert.equal(res.status, 200);
    assert.equal(res.type, 'application/json');
    assert.deepEqual(res.body, { status: 'success', data: { resultType: 'vector', result: [{ metric: { __name__: 'up', job: 'a' }, value: [(base + 60_000) / 1000, '1'] }] } });
  });

  it('takes POST form parameters and the query string together', async () => {
    const res = await call(`/api/v1/query_range?step=60`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `query=${encodeURIComponent('rate(reqs_total[1m])')}&start=${(base + 60_000) / 1000}&end=${(base + 180_000) / 1000}`,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const data = res.body.data as { resultType: string; result: Array<{ metric: object; values: Array<[number, string]> }> };
    assert.equal(data.resultType, 'matrix');
    assert.deepEqual(data.result.map((r) => r.values.map(([, v]) => v)), [['1', '1', '1']]);
  });

  it('refuses missing and wrong-role tokens, and reads basic auth passwords as tokens', async () => {
    const none = await call('/api/v1/labels', { token: null });
    assert.equal(none.status, 401);
    assert.equal(none.body.errorType, 'unauthorized');
    const agent = await call('/api/v1/labels', { token: await auth.token(['agent'], 'acme') });
    assert.equal(agent.status, 403);
    assert.equal(agent.body.errorType, 'forbidden');
    const basic = await call('/api/v1/labels', { token: null, headers: { authorization: `Basic ${Buffer.from(`promtool:${reader}`).toString('base64')}` } });
    assert.deepEqual(basic.body, { status: 'success', data: ['__name__', 'job'] });
  });

  it('names the parameter or limit in bad_data errors', async () => {
    const t = (base + 60_000) / 1000;
    const cases: Array<[string, RegExp]> = [
      [`/api/v1/query_range?query=up&start=${t}&end=${t + 3600}&step=1`, /^exceeded maximum resolution of 100 points per timeseries/],
      [`/api/v1/query_range?query=up&start=${t}&end=${t}&step=-1`, /^invalid parameter "step": zero or negative query resolution step widths are not accepted/],
      [`/api/v1/query_range?query=up&start=${t}&end=${t - 1}&step=1`, /^invalid parameter "end": end timestamp must not be before start time$/],
      [`/api/v1/query_range?query=up&end=${t}&step=1`, /^invalid parameter "start": cannot parse "" to a valid timestamp$/],
      [`/api/v1/query?query=up&time=${t}&timeout=soon`, /^invalid parameter "timeout": cannot parse "soon" to a valid duration$/],
      [`/api/v1/query?query=${encodeURIComponent('up{')}&time=${t}`, /^invalid parameter "query": parse error at char \d+/],
      [`/api/v1/labels?match[]=${encodeURIComponent('{')}`, /^invalid parameter "match\[\]": parse error/],
    ];
    for (const [path, message] of cases) {
      const res = await call(path);
      assert.equal(res.status, 400, path);
      assert.equal(res.body.status, 'error');
      assert.equal(res.body.errorType, 'bad_data', path);
      assert.match(String(res.body.error), message, path);
    }
  });

  it('ends a query that reads too many samples with an execution error naming the limit', async () => {
    const res = await call(`/api/v1/query?query=${encodeURIComponent('count_over_time({__name__=~".+"}[1h])')}&time=${(base + 600_000) / 1000}`);
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.errorType, 'execution');
    assert.match(String(res.body.error), /maxSamples|50/);
  });

  it('ends a query past its time budget with a timeout error (503)', async () => {
    // A store that answers 50 ms late, and a 10 ms budget: the engine must give up.
    const store = createMemoryStore();
    await store.write('acme', 'b', [{ labels: [{ name: '__name__', value: 'up' }], timestampsMs: [base], values: [1] }]);
    const slow: MetricStore = {
      write: (...a) => store.write(...a),
      select: async (...a) => (await new Promise((r) => setTimeout(r, 50)), store.select(...a)),
      selectColumns: async (...a) => (await new Promise((r) => setTimeout(r, 50)), store.selectColumns(...a)),
      series: (...a) => store.series(...a),
      labelNames: (...a) => store.labelNames(...a),
      labelValues: (...a) => store.labelValues(...a),
      close: () => store.close(),
    };
    const routes = prometheusApiRoutes({ querier: new Querier(slow, { ...limits, timeoutMs: 10 }), verifier: auth.verifier, logger: pino({ level: 'silent' }), maxRequestBytes: 4096, version: 'test' });
    const srv = createServer((req, res) => void routes[0]!.handler(req, res));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/api/v1/query?query=up&time=${base / 1000}`, { headers: { authorization: `Bearer ${reader}` } });
      assert.equal(res.status, 503);
      const body = (await res.json()) as Record<string, unknown>;
      assert.equal(body.errorType, 'timeout');
      assert.match(String(body.error), /timed out.*query\.timeoutMs/);
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });

  it('refuses oversized and non-form bodies', async () => {
    const big = await call('/api/v1/query', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `query=${'x'.repeat(5000)}` });
    assert.equal(big.status, 400);
    assert.match(String(big.body.error), /server\.maxRequestBytes = 4096/);
    const json = await call('/api/v1/query', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"up"}' });
    assert.equal(json.status, 400);
    assert.match(String(json.body.error), /application\/x-www-form-urlencoded/);
  });

  it('serves series and label values only for the tenant', async () => {
    assert.deepEqual((await call('/api/v1/series?match[]=up')).body.data, [{ __name__: 'up', job: 'a' }]);
    assert.deepEqual((await call('/api/v1/label/job/values')).body.data, ['a']);
    // A series-only read: 82 samples in range, over the 50-sample limit, yet no error.
    assert.deepEqual((await call(`/api/v1/series?match[]=${encodeURIComponent('{__name__=~".+"}')}&start=${base / 1000}&end=${(base + 600_000) / 1000}`)).body.data, [
      { __name__: 'reqs_total', job: 'a' },
      { __name__: 'up', job: 'a' },
    ]);
    // An inverted range selects nothing, as in Prometheus.
    assert.deepEqual((await call(`/api/v1/labels?start=${base / 1000}&end=${base / 1000 - 1}`)).body, { status: 'success', data: [] });
    assert.deepEqual((await call('/api/v1/label/job/values', { token: await auth.token(['reader'], 'other') })).body.data, ['secret']);
    assert.equal((await call('/api/v1/label/job/other')).status, 404);
  });
});
