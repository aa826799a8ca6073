/**
 * The Prometheus-compatible HTTP API and the PromQL RPCs of a real `telemesh serve
 * --target=all`: authentication and tenancy, GET and POST form, the JSON envelope and its
 * error types, the label and series endpoints, and Prometheus' own `promtool` as a client
 * nobody here wrote.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { SeriesSchema } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { IngestService } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';
import { ResultType } from '../../libs/contracts/telemesh/query/v1/query_pb.js';
import { QueryService } from '../../libs/contracts/telemesh/query/v1/query_service_pb.js';
import { bearer, eventually, removeDir, startMesh, testSecret, token, type MeshProcess } from '../harness.js';

function run(cmd: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', (err) => resolve({ code: -1, stdout, stderr: String(err) }));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const havePromtool = (await run('promtool', ['--version'])).code === 0;

describe('Prometheus HTTP API and PromQL RPCs', () => {
  const secret = testSecret();
  let mesh: MeshProcess;
  let reader: string;
  let otherTenant: string;
  let agent: string;
  // Whole minutes in the recent past, inside ingestion's accepted window.
  const base = Math.floor((Date.now() - 30 * 60_000) / 60_000) * 60_000;
  const sec = (ms: number) => String(ms / 1000);

  before(async () => {
    mesh = await startMesh({ target: 'all', secret });
    agent = await token(secret, ['agent']);
    reader = await token(secret, ['reader']);
    otherTenant = await token(secret, ['reader'], 'globex');
    const samples = (f: (k: number) => number) => Array.from({ length: 121 }, (_, k) => [base + k * 15_000, f(k)] as const);
    const mk = (labels: Record<string, string>, pts: ReadonlyArray<readonly [number, number]>) =>
      create(SeriesSchema, {
        labels: Object.entries(labels).map(([name, value]) => ({ name, value })),
        timestampsMs: pts.map(([t]) => BigInt(t)),
        values: pts.map(([, v]) => v),
      });
    await mesh.connect(IngestService).write(
      {
        series: [
          mk({ __name__: 'api_requests_total', job: 'api', instance: 'a' }, samples((k) => k * 30)),
          mk({ __name__: 'api_requests_total', job: 'api', instance: 'b' }, samples((k) => k * 15)),
          mk({ __name__: 'api_up', job: 'api', instance: 'a' }, samples(() => 1)),
        ],
      },
      bearer(agent),
    );
    await eventually(
      async () => (await mesh.connect(QueryService).select({ selector: '{job="api"}', startMs: BigInt(base), endMs: BigInt(base + 3_600_000) }, bearer(reader))).series.length,
      (n) => n === 3,
    );
  });

  after(async () => {
    await mesh?.terminate();
    if (mesh) await removeDir(mesh.dataDir);
  });

  const get = async (path: string, t?: string) => {
    const res = await fetch(`${mesh.httpUrl}${path}`, { headers: t ? { authorization: `Bearer ${t}` } : {} });
    return { status: res.status, body: (await res.json()) as { status: string; data?: unknown; errorType?: string; error?: string } };
  };

  it('needs a reader token, and scopes answers to its tenant', async () => {
    const q = `/api/v1/query?query=api_up&time=${sec(base + 10 * 60_000)}`;
    const none = await get(q);
    assert.equal(none.status, 401);
    assert.equal(none.body.status, 'error');
    assert.equal(none.body.errorType, 'unauthorized');
    assert.equal((await get(q, agent)).status, 403);
    const ok = await get(q, reader);
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { status: 'success', data: { resultType: 'vector', result: [{ metric: { __name__: 'api_up', job: 'api', instance: 'a' }, value: [(base + 10 * 60_000) / 1000, '1'] }] } });
    const other = await get(q, otherTenant);
    assert.deepEqual(other.body, { status: 'success', data: { resultType: 'vector', result: [] } });
    assert.deepEqual((await get('/api/v1/labels', otherTenant)).body, { status: 'success', data: [] });
  });

  it('answers POST form (Grafana) the same as GET', async () => {
    const params = { query: 'sum by (job) (rate(api_requests_total[5m]))', start: sec(base + 5 * 60_000), end: sec(base + 30 * 60_000), step: '5m' };
    const viaGet = await get(`/api/v1/query_range?${new URLSearchParams(params)}`, reader);
    const res = await fetch(`${mesh.httpUrl}/api/v1/query_range`, {
      method: 'POST',
      headers: { authorization: `Bearer ${reader}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params).toString(),
    });
    assert.equal(res.status, 200);
    const viaPost = await res.json();
    assert.deepEqual(viaPost, viaGet.body);
    const data = viaGet.body.data as { resultType: string; result: Array<{ metric: object; values: Array<[number, string]> }> };
    assert.equal(data.resultType, 'matrix');
    assert.deepEqual(data.result[0]!.metric, { job: 'api' });
    // 30 + 15 per 15 s scrape = 3 per second, at every step.
    assert.equal(data.result[0]!.values.length, 6);
    for (const [, v] of data.result[0]!.values) assert.ok(Math.abs(Number(v) - 3) < 1e-9, v);
  });

  it('serves series, labels, label values, metadata and buildinfo', async () => {
    const range = `start=${sec(base)}&end=${sec(base + 3_600_000)}`;
    assert.deepEqual((await get(`/api/v1/series?match[]=api_requests_total&${range}`, reader)).body.data, [
      { __name__: 'api_requests_total', instance: 'a', job: 'api' },
      { __name__: 'api_requests_total', instance: 'b', job: 'api' },
    ]);
    assert.deepEqual((await get(`/api/v1/labels?${range}`, reader)).body.data, ['__name__', 'instance', 'job']);
    assert.deepEqual((await get(`/api/v1/label/__name__/values?${range}`, reader)).body.data, ['api_requests_total', 'api_up']);
    assert.deepEqual((await get(`/api/v1/label/instance/values?match[]=api_up&${range}`, reader)).body.data, ['a']);
    assert.deepEqual((await get('/api/v1/metadata', reader)).body, { status: 'success', data: {} });
    const build = (await get('/api/v1/status/buildinfo', reader)).body.data as { version: string };
    assert.match(build.version, /^2\.\d+\.\d+$/);
  });

  it('reports bad input in Prometheus error types, naming the parameter or limit', async () => {
    const t = sec(base + 10 * 60_000);
    const cases: Array<[string, number, string, RegExp]> = [
      [`/api/v1/query?query=${encodeURIComponent('sum(rate(x[5m])')}&time=${t}`, 400, 'bad_data', /^invalid parameter "query": .*parse error/],
      [`/api/v1/query?query=${encodeURIComponent('no_such_fn(x)')}&time=${t}`, 400, 'bad_data', /no_such_fn/],
      [`/api/v1/query?query=x&time=yesterday`, 400, 'bad_data', /^invalid parameter "time": Invalid time value for 'time': cannot parse "yesterday" to a valid timestamp$/],
      [`/api/v1/query_range?query=x&start=x&end=${t}&step=15`, 400, 'bad_data', /^invalid parameter "start": cannot parse "x" to a valid timestamp$/],
      [`/api/v1/query_range?query=x&start=${t}&end=${t}&step=often`, 400, 'bad_data', /^invalid parameter "step": cannot parse "often" to a valid duration$/],
      [`/api/v1/query_range?query=x&start=0&end=${t}&step=1`, 400, 'bad_data', /^exceeded maximum resolution of 11,000 points per timeseries\. Try decreasing the query resolution \(\?step=XX\)$/],
      ['/api/v1/series', 400, 'bad_data', /^no match\[\] parameter provided$/],
      ['/api/v1/label/0bad/values', 400, 'bad_data', /^invalid label name: "0bad"$/],
    ];
    for (const [path, status, type, message] of cases) {
      const res = await get(path, reader);
      assert.equal(res.status, status, path);
      assert.equal(res.body.errorType, type, path);
      assert.match(res.body.error!, message, path);
    }
  });

  it('answers Query, QueryRange and ListSeries over Connect, with field-named errors', async () => {
    const client = mesh.connect(QueryService);
    const instant = await client.query({ query: 'sum(api_requests_total)', timeMs: BigInt(base + 60_000) }, bearer(reader));
    assert.equal(instant.resultType, ResultType.VECTOR);
    assert.deepEqual(instant.series[0]!.values, [4 * 30 + 4 * 15]);
    const scalar = await client.query({ query: '1 + 1', timeMs: BigInt(base) }, bearer(reader));
    assert.equal(scalar.resultType, ResultType.SCALAR);
    assert.deepEqual(scalar.series[0]!.values, [2]);
    const range = await client.queryRange({ query: 'api_up', startMs: BigInt(base), endMs: BigInt(base + 60_000), stepMs: 15_000n }, bearer(reader));
    assert.equal(range.resultType, ResultType.MATRIX);
    assert.deepEqual(range.series[0]!.values, [1, 1, 1, 1, 1]);
    const listed = await client.listSeries({ selectors: ['api_requests_total{instance="b"}', 'api_up'], startMs: BigInt(base), endMs: BigInt(base + 3_600_000) }, bearer(reader));
    assert.deepEqual(
      listed.series.map((s) => s.labels.map((l) => `${l.name}=${l.value}`).join(',')),
      ['__name__=api_requests_total,instance=b,job=api', '__name__=api_up,instance=a,job=api'],
    );
    for (const [call, field] of [
      [client.query({ query: 'sum(', timeMs: BigInt(base) }, bearer(reader)), 'query'],
      [client.queryRange({ query: 'x', startMs: 0n, endMs: BigInt(base), stepMs: 1000n }, bearer(reader)), 'step'],
      [client.queryRange({ query: 'x', startMs: 0n, endMs: 1n, stepMs: 0n }, bearer(reader)), 'step_ms'],
      [client.listSeries({ selectors: [] }, bearer(reader)), 'selectors'],
    ] as const) {
      const err = await call.then(() => undefined, (e: unknown) => ConnectError.from(e));
      assert.ok(err, `expected an error naming ${field}`);
      assert.equal(err.code, Code.InvalidArgument, err.rawMessage);
      assert.match(err.rawMessage, new RegExp(field === 'step' ? 'maximum resolution' : field));
    }
  });

  it('works with promtool query instant and range unchanged', { skip: havePromtool ? false : 'promtool is not installed' }, async () => {
    // promtool 2.42 sends no bearer token of its own: `query range` takes a header, and
    // `query instant` sends the URL's user info as basic auth, whose password we take as
    // the token.
    const url = new URL(mesh.httpUrl);
    url.username = 'promtool';
    url.password = reader;
    const instant = await run('promtool', ['query', 'instant', '--time', sec(base + 10 * 60_000), url.toString(), 'api_up']);
    assert.equal(instant.code, 0, instant.stderr);
    assert.match(instant.stdout, /api_up\{instance="a", job="api"\} => 1 @\[/);
    const range = await run('promtool', [
      'query', 'range', `--header=Authorization: Bearer ${reader}`,
      `--start=${sec(base)}`, `--end=${sec(base + 60_000)}`, '--step=30s', mesh.httpUrl, 'sum(api_requests_total)',
    ]);
    assert.equal(range.code, 0, range.stderr);
    assert.match(range.stdout, /\{\} =>\n0 @\[\d+(\.\d+)?\]\n90 @\[\d+(\.\d+)?\]\n180 @\[\d+(\.\d+)?\]/);
    const refused = await run('promtool', ['query', 'instant', mesh.httpUrl, 'api_up']);
    assert.notEqual(refused.code, 0);
  });
});
