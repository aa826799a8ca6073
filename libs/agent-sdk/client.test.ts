/**
 * AgentClient against a real loopback HTTP/2 server. The server is the SDK's own fake
 * (testing.ts, connect-node implementing IngestService/Stream), not ingestion: these tests
 * need to drop TCP connections between receiving and acknowledging a batch on cue. The
 * end-to-end path through real ingestion, JetStream and the store is in
 * test/e2e/agent-sdk.test.ts.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Code, ConnectError } from '@connectrpc/connect';
import { freePort } from '../bus/testing.js';
import { backoffCap } from './backoff.js';
import { AgentClient, type Timers } from './client.js';
import { startFakeIngest, type FakeIngest } from './testing.js';

/** Manually advanced timers for time-based behaviour. */
class ManualTimers implements Timers {
  now = 0;
  #next = 1;
  readonly #tasks = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#tasks.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.#tasks.delete(h as number);
  }
  advance(ms: number): void {
    this.now += ms;
    for (const [id, t] of [...this.#tasks].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at <= this.now && this.#tasks.delete(id)) t.fn();
    }
  }
}

const servers: FakeIngest[] = [];
after(async () => {
  for (const s of servers) await s.stop();
});
async function server(opts: Parameters<typeof startFakeIngest>[0] = {}): Promise<FakeIngest> {
  const s = await startFakeIngest(opts);
  servers.push(s);
  return s;
}

function addDistinct(c: AgentClient, from: number, n: number): void {
  for (let i = from; i < from + n; i++) c.add({ __name__: 'sdk_test_gauge', i: String(i) }, i, 1_700_000_000_000 + i);
}

test('batches by size: a batch is sealed and sent at maxBatchSamples; flush sends the rest', async () => {
  const srv = await server();
  const c = new AgentClient({ agentId: 'size', baseUrl: srv.url, maxBatchSamples: 100, maxBatchDelayMs: 60_000 });
  c.start();
  addDistinct(c, 0, 250);
  assert.equal(c.stats().sealedBatches, 2);
  await c.flush(10_000);
  const s = await c.close();
  assert.deepEqual(srv.received.map((b) => b.samples), [100, 100, 50]);
  assert.deepEqual(srv.received.map((b) => b.batchSeq), [1n, 2n, 3n]);
  assert.equal(s.acceptedSamples, 250);
  assert.equal(s.ackedBatches, 3);
  assert.equal(s.bufferedSamples, 0);
  // Ids are unique per agent, process start and sequence.
  const ids = srv.received.map((b) => b.batchId);
  assert.equal(new Set(ids).size, 3);
  for (const [i, id] of ids.entries()) assert.match(id, new RegExp(`^size/[0-9a-z]+/${i + 1}$`));
});

test('batches by time: sealed maxBatchDelayMs after the first sample; samples of one series share an entry', async () => {
  const timers = new ManualTimers();
  const srv = await server();
  const c = new AgentClient({ agentId: 'time', baseUrl: srv.url, maxBatchSamples: 1000, maxBatchDelayMs: 5_000, timers });
  c.add({ __name__: 'cpu', core: '0' }, 1, 1000);
  timers.advance(3_000);
  c.add({ core: '0', __name__: 'cpu' }, 2, 2000); // same series, labels in another order
  c.add({ __name__: 'cpu', core: '1' }, 3, 2000);
  timers.advance(1_999);
  assert.equal(c.stats().sealedBatches, 0, 'not yet: the delay counts from the first sample');
  timers.advance(1);
  assert.equal(c.stats().sealedBatches, 1);
  c.start();
  await c.flush(10_000);
  await c.close();
  assert.equal(srv.received.length, 1);
  assert.equal(srv.received[0]!.samples, 3);
  // A new batch starts its own timer.
  assert.equal(c.stats().sealedBatches, 1);
});

test('overflow drop-oldest: the oldest queued batches are discarded and counted; the newest arrive', async () => {
  const srv = await server();
  const c = new AgentClient({ agentId: 'dropold', baseUrl: srv.url, maxBatchSamples: 100, maxBufferedSamples: 300, overflow: 'drop-oldest' });
  addDistinct(c, 0, 500); // not connected yet: five batches for room of three
  assert.deepEqual([c.stats().droppedSamples, c.stats().droppedBatches], [200, 2]);
  c.start();
  await c.flush(10_000);
  const s = await c.close();
  assert.deepEqual(srv.received.map((b) => b.batchId.split('/')[2]), ['3', '4', '5']);
  assert.equal(s.acceptedSamples, 300);
  assert.equal(s.addedSamples, 500);
});

test('overflow reject-newest: new samples are refused and counted; the buffered ones arrive', async () => {
  const srv = await server();
  const c = new AgentClient({ agentId: 'rejnew', baseUrl: srv.url, maxBatchSamples: 100, maxBufferedSamples: 300, overflow: 'reject-newest' });
  addDistinct(c, 0, 300);
  assert.equal(c.add({ __name__: 'one_more' }, 1), false);
  assert.equal(c.addSeries([{ labels: [{ name: '__name__', value: 'x' }], timestampsMs: [0n, 0n], values: [1, 2] }]), false);
  assert.equal(c.stats().droppedSamples, 3);
  c.start();
  await c.flush(10_000);
  await c.close();
  assert.deepEqual(srv.received.map((b) => b.batchId.split('/')[2]), ['1', '2', '3']);
});

test('reconnect and replay: a connection dropped between receiving and acknowledging loses nothing and stores nothing twice', async () => {
  let dropped = 0;
  const srv = await server({
    // Drop every connection the first time batch 3 and batch 8 arrive (after "storing" them).
    onBatch: (b) => (/\/(3|8)$/.test(b.batchId) && srv.received.filter((r) => r.batchId === b.batchId).length === 1 ? (dropped++, 'drop') : 'ack'),
  });
  const errors: ConnectError[] = [];
  const c = new AgentClient({
    agentId: 'replay',
    baseUrl: srv.url,
    maxBatchSamples: 100,
    maxInflightBatches: 3,
    backoff: { initialMs: 10, maxMs: 50 },
    onError: (e) => errors.push(e),
  });
  c.start();
  addDistinct(c, 0, 1000);
  await c.flush(20_000);
  const s = await c.close();
  assert.equal(dropped, 2);
  assert.ok(srv.connections() >= 3, `connections: ${srv.connections()}`);
  assert.equal(errors.length, 2);
  assert.ok(errors.every((e) => e.code === Code.Unavailable || e.code === Code.Internal || e.code === Code.Canceled || e.code === Code.Unknown), errors.map((e) => Code[e.code]).join());
  // Every batch reached the server; the ones in flight at a drop were sent again with the same id.
  const ids = srv.received.map((b) => b.batchId);
  assert.equal(srv.stored.size, 10);
  assert.equal([...srv.stored.values()].reduce((a, b) => a + b, 0), 1000);
  assert.ok(ids.length > 10, 'some batches were replayed');
  assert.equal(ids.filter((id) => id.endsWith('/3')).length, 2);
  assert.equal(s.reconnects, 2);
  // The client counts re-sends it attempted; a send queued on a dying stream may never reach the server.
  assert.ok(s.replayedBatches >= ids.length - 10, `replayed ${s.replayedBatches}, server saw ${ids.length - 10}`);
  assert.equal(s.ackedBatches, 10);
  assert.equal(s.acceptedSamples, 1000);
  assert.equal(s.bufferedSamples, 0);
  // batch_seq restarts per stream; each stream numbers its batches 1, 2, 3…
  assert.equal(srv.received[0]!.batchSeq, 1n);
});

test('retry with backoff while the server is down, then delivery once it is up', async () => {
  const port = await freePort();
  const delays: [number, number][] = [];
  const backoff = { initialMs: 20, maxMs: 80 };
  const c = new AgentClient({
    agentId: 'down',
    baseUrl: `http://127.0.0.1:${port}`,
    backoff,
    random: () => 0.5,
    onError: (_e, attempt, delay) => delays.push([attempt, delay]),
    token: () => 'tok-1',
  });
  c.add({ __name__: 'up_later' }, 1);
  c.start();
  while (delays.length < 4) await new Promise((r) => setTimeout(r, 10));
  const srv = await server({ port, requireAuthorization: 'Bearer tok-1' });
  await c.flush(10_000);
  await c.close();
  assert.deepEqual(delays.slice(0, 4), [0, 1, 2, 3].map((a) => [a, Math.floor(0.5 * backoffCap(a, backoff))]));
  assert.equal(srv.received.length, 1);
  assert.equal(srv.received[0]!.authorization, 'Bearer tok-1');
});

test('a refused token is reported and retried; flush times out with the count of unacknowledged samples', async () => {
  const srv = await server({ requireAuthorization: 'Bearer right' });
  const codes: Code[] = [];
  const c = new AgentClient({ agentId: 'auth', baseUrl: srv.url, token: 'wrong', backoff: { initialMs: 10, maxMs: 20 }, onError: (e) => codes.push(e.code) });
  c.add({ __name__: 'x' }, 1);
  await assert.rejects(c.flush(1_500), { name: 'FlushTimeoutError', unacknowledgedSamples: 1 });
  const s = await c.close(10);
  assert.ok(codes.length >= 2 && codes.every((code) => code === Code.Unauthenticated), codes.join());
  assert.equal(s.bufferedSamples, 1);
  assert.equal(srv.received.length, 0);
});

test('a batch refused as malformed is discarded and counted, not replayed forever; retry-after sets a floor under the delay', async () => {
  let limited = false;
  const srv = await server({
    onBatch: (b) => {
      if (b.batchId.endsWith('/2')) return new ConnectError('series: malformed', Code.InvalidArgument);
      if (b.batchId.endsWith('/3') && !limited) {
        limited = true;
        return new ConnectError('rate limited', Code.ResourceExhausted, { 'retry-after': '1' });
      }
      return 'ack';
    },
  });
  const seen: [Code, number][] = [];
  const c = new AgentClient({
    agentId: 'poison',
    baseUrl: srv.url,
    maxBatchSamples: 10,
    maxInflightBatches: 1,
    backoff: { initialMs: 5, maxMs: 10 },
    onError: (e, _a, delay) => seen.push([e.code, delay]),
  });
  c.start();
  addDistinct(c, 0, 40);
  await c.flush(10_000);
  const s = await c.close();
  assert.deepEqual(seen.map(([code]) => code), [Code.InvalidArgument, Code.ResourceExhausted]);
  assert.ok(seen[0]![1] < 10 && seen[1]![1] === 1000, JSON.stringify(seen));
  assert.deepEqual([s.refusedBatches, s.refusedSamples, s.ackedBatches, s.acceptedSamples], [1, 10, 3, 30]);
  assert.deepEqual(srv.received.map((b) => b.batchId.split('/')[2]), ['1', '2', '3', '3', '4']);
});

test('histograms, summaries and series start times travel in the batch', async () => {
  const srv = await server();
  const c = new AgentClient({ agentId: 'types', baseUrl: srv.url, maxBatchSamples: 1000 });
  c.addSeries([{ labels: [{ name: '__name__', value: 'reqs_total' }], timestampsMs: [5n], values: [3] }], [1234]);
  c.addHistograms([{ labels: [{ name: '__name__', value: 'lat_seconds' }], points: [{ timestampMs: 5n, upperBounds: [0.1, 1], bucketCounts: [1n, 2n, 0n], sum: 1.5, count: 3n }] }]);
  c.addSummaries([{ labels: [{ name: '__name__', value: 'rpc_seconds' }], points: [{ timestampMs: 5n, quantiles: [{ quantile: 0.5, value: 0.2 }], sum: 1, count: 4n }] }]);
  assert.equal(c.stats().addedSamples, 1 + 5 + 3);
  c.start();
  await c.flush(10_000);
  await c.close();
  assert.equal(srv.received.length, 1);
  const req = srv.received[0]!.request;
  assert.deepEqual(req.seriesStartTimesMs, [1234n]);
  assert.deepEqual(req.histograms[0]!.points[0]!.bucketCounts, [1n, 2n, 0n]);
  assert.equal(req.summaries[0]!.points[0]!.quantiles[0]!.value, 0.2);
});
