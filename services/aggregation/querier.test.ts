/**
 * Range queries served from rollup tiers, against the exact answer from raw samples: a
 * real DuckDB store holding three days of minutely gauges, compacted into the 5-minute and
 * 1-hour tiers (and sealed into chunks), queried through the tenant view the services use.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { rangeQuery, type EngineOptions, type PromValue } from '../../libs/promql/index.js';
import { loadConfig } from '../../libs/runtime/config.js';
import { DEFAULT_RELATIVE_ACCURACY, openDuckDbStore, type RollupStore } from '../../libs/store/index.js';
import type { SeriesSamples } from '../../libs/model/index.js';
import { tenantQueryable } from './querier.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const END = Math.floor(Date.now() / DAY) * DAY;
const START = END - 3 * DAY;
const limits = loadConfig({}).query;

type Use = Parameters<NonNullable<EngineOptions['onRollup']>>[0];

function gauge(job: string, instance: number, from: number, to: number): SeriesSamples {
  const ts: number[] = [];
  const vs: number[] = [];
  // One second past each minute: no sample sits exactly on a window boundary, where the
  // tiers (windows [t - range, t)) and raw evaluation ([t - range, t]) differ by design.
  for (let t = from + 1000; t < to; t += MIN) {
    ts.push(t);
    vs.push(Math.round((20 + 5 * Math.sin(t / (7 * HOUR) + instance) + ((t / MIN) % 7) / 3) * 100) / 100);
  }
  return { labels: [{ name: '__name__', value: 'temp' }, { name: 'job', value: job }, { name: 'instance', value: String(instance) }], timestampsMs: ts, values: vs };
}

function points(v: PromValue): Map<string, Array<[number, number]>> {
  assert.equal(v.type, 'matrix');
  return new Map(v.value.map((s) => [JSON.stringify(s.labels), s.points]));
}

describe('range queries from rollup tiers', () => {
  let dir: string;
  let store: RollupStore;
  const clock = { now: END + 10 * MIN };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'telemesh-querier-'));
    store = await openDuckDbStore({ path: join(dir, 'm.duckdb'), logger: pino({ level: 'silent' }), now: () => clock.now, compactionIntervalMs: 0, retentionIntervalMs: 0 });
    const series: SeriesSamples[] = [];
    for (let i = 0; i < 4; i++) series.push(gauge(i % 2 === 0 ? 'a' : 'b', i, START, END));
    await store.write('t', 'b1', series);
    await store.compact();
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function both(expr: string, start: number, end: number, step: number) {
    const uses: Use[] = [];
    const q = tenantQueryable(store, 't', limits);
    const fromRollups = await rangeQuery(q, expr, start, end, step, { onRollup: (u) => uses.push(u) });
    const exact = await rangeQuery({ select: q.select }, expr, start, end, step);
    return { fromRollups: points(fromRollups), exact: points(exact), uses };
  }

  function assertClose(got: Map<string, Array<[number, number]>>, want: Map<string, Array<[number, number]>>, tolerance: (want: number) => number): void {
    assert.deepEqual([...got.keys()], [...want.keys()]);
    for (const [k, ps] of want) {
      const gs = got.get(k)!;
      assert.deepEqual(gs.map((p) => p[0]), ps.map((p) => p[0]), k);
      ps.forEach(([t, v], i) => {
        const g = gs[i]![1];
        assert.ok(Math.abs(g - v) <= tolerance(v), `${k} at ${t}: ${g} vs exact ${v}`);
      });
    }
  }

  it('answers min/max/count/last exactly, sum/avg up to rounding, from the hourly tier', async () => {
    const start = END - 2 * DAY;
    for (const fn of ['min_over_time', 'max_over_time', 'count_over_time', 'last_over_time', 'present_over_time']) {
      const r = await both(`${fn}(temp[1h])`, start, END, HOUR);
      assert.deepEqual(r.uses, [{ function: fn, resolutionMs: HOUR, steps: 49, rawSteps: 0 }], fn);
      assert.deepEqual(r.fromRollups, r.exact, fn);
    }
    for (const expr of ['sum_over_time(temp[3h])', 'avg_over_time(temp[1h])', 'avg by (job) (avg_over_time(temp[1h]))']) {
      const r = await both(expr, start, END, HOUR);
      assert.equal(r.uses[0]?.resolutionMs, HOUR, expr);
      assertClose(r.fromRollups, r.exact, (v) => Math.abs(v) * 1e-12);
    }
  });

  it('reads the 5-minute tier when the step is finer than an hour', async () => {
    const r = await both('avg_over_time(temp[1h])', END - 6 * HOUR, END, 15 * MIN);
    assert.deepEqual(r.uses, [{ function: 'avg_over_time', resolutionMs: 5 * MIN, steps: 25, rawSteps: 0 }]);
    assertClose(r.fromRollups, r.exact, (v) => Math.abs(v) * 1e-12);
  });

  it('answers quantile_over_time within the sketch accuracy of the exact rank values', async () => {
    const start = END - DAY;
    const r = await both('quantile_over_time(0.95, temp[6h])', start, END, HOUR);
    assert.equal(r.uses[0]?.resolutionMs, HOUR);
    // The sketch is within α of the value of rank ⌊q(n−1)⌋; Prometheus interpolates up to
    // the next rank. Allow α of the exact answer plus that gap (bounded by 1% here too).
    assertClose(r.fromRollups, r.exact, (v) => 2 * DEFAULT_RELATIVE_ACCURACY * Math.abs(v));
  });

  it('keeps raw evaluation for unaligned steps, fine steps and functions tiers cannot answer', async () => {
    for (const [expr, start, step] of [
      ['avg_over_time(temp[1h])', END - DAY + MIN, HOUR],
      ['avg_over_time(temp[1h])', END - HOUR, MIN],
      ['stddev_over_time(temp[1h])', END - DAY, HOUR],
      ['avg_over_time(temp[90m])', END - DAY, HOUR],
    ] as const) {
      const r = await both(expr, start, END, step);
      assert.deepEqual(r.uses, [], expr);
      assert.deepEqual(r.fromRollups, r.exact, expr);
    }
  });

  it('reads raw samples for steps past what the compactor has rolled up', async () => {
    // Late samples for the last two hours: their windows are pending until compaction.
    await store.write('t', 'late', [gauge('a', 9, END - 2 * HOUR, END)]);
    const r = await both('max_over_time(temp[1h])', END - DAY, END, HOUR);
    assert.deepEqual(r.uses, [{ function: 'max_over_time', resolutionMs: HOUR, steps: 23, rawSteps: 2 }]);
    assert.deepEqual(r.fromRollups, r.exact);
    clock.now = END + 20 * MIN;
    await store.compact();
    const again = await both('max_over_time(temp[1h])', END - DAY, END, HOUR);
    assert.equal(again.uses[0]?.rawSteps, 0);
    assert.deepEqual(again.fromRollups, again.exact);
  });
});
