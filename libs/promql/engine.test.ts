import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalLabels, compileMatcher, matchesAll } from '../model/index.js';
import type { Label, Matcher, SeriesSamples } from '../model/index.js';
import { createMemoryStore } from '../store/testing.js';
import { LimitExceededError } from '../runtime/errors.js';
import { PromqlExecutionError, QueryLimitError, QueryTimeoutError, STALE_NAN, instantQuery, isStaleNaN, rangeQuery } from './engine.js';
import type { PromValue, Queryable } from './engine.js';
import { PromqlSyntaxError } from './errors.js';

const S = 1000;

function lbl(obj: Record<string, string>): Label[] {
  return canonicalLabels(Object.entries(obj).map(([name, value]) => ({ name, value })));
}

/**
 * Values in a Float64Array typed as number[]: V8 turns any NaN stored in a plain number
 * array into the canonical NaN, which would erase staleness markers.
 */
function values(vs: readonly number[], staleAt: readonly number[] = []): number[] {
  const out = new Float64Array(vs);
  const words = new Uint32Array(out.buffer);
  for (const i of staleAt) {
    words[2 * i] = 2;
    words[2 * i + 1] = 0x7ff00000;
  }
  return out as unknown as number[];
}

/** An in-memory Queryable that records every select. */
function memory(series: SeriesSamples[]): Queryable & { calls: Array<{ matchers: readonly Matcher[]; startMs: number; endMs: number }> } {
  const calls: Array<{ matchers: readonly Matcher[]; startMs: number; endMs: number }> = [];
  return {
    calls,
    select(matchers, startMs, endMs) {
      calls.push({ matchers, startMs, endMs });
      const cm = matchers.map(compileMatcher);
      const out: SeriesSamples[] = [];
      for (const s of series) {
        if (!matchesAll(s.labels, cm)) continue;
        const idx = s.timestampsMs.map((_t, i) => i).filter((i) => (s.timestampsMs[i] ?? 0) >= startMs && (s.timestampsMs[i] ?? 0) <= endMs);
        const vs = new Float64Array(idx.map((i) => s.values[i] ?? 0));
        // Copy stale bits exactly (the map above went through plain numbers).
        idx.forEach((i, k) => {
          vs[k] = s.values[i] ?? 0;
        });
        if (idx.length > 0) out.push({ labels: s.labels, timestampsMs: idx.map((i) => s.timestampsMs[i] ?? 0), values: vs as unknown as number[] });
      }
      return Promise.resolve(out);
    },
  };
}

const minutes = (n: number): number[] => Array.from({ length: n }, (_, i) => i * 60 * S);

/** x{job="a"}: counter 0,10,…,100 every minute from 0 to 10m. x{job="b"}: 1,2,3, stale at 3m, 5 at 5m. */
function fixture(): ReturnType<typeof memory> {
  return memory([
    { labels: lbl({ __name__: 'x', job: 'a' }), timestampsMs: minutes(11), values: values(minutes(11).map((t) => t / 6000)) },
    { labels: lbl({ __name__: 'x', job: 'b' }), timestampsMs: [0, 60 * S, 120 * S, 180 * S, 300 * S], values: values([1, 2, 3, NaN, 5], [3]) },
    { labels: lbl({ __name__: 'c', job: 'a' }), timestampsMs: [0, 60 * S, 120 * S, 180 * S], values: values([5, 10, 2, 6]) },
    { labels: lbl({ __name__: 'h_bucket', le: '1' }), timestampsMs: [0], values: values([2]) },
    { labels: lbl({ __name__: 'h_bucket', le: '2' }), timestampsMs: [0], values: values([4]) },
    { labels: lbl({ __name__: 'h_bucket', le: '+Inf' }), timestampsMs: [0], values: values([4]) },
    { labels: lbl({ __name__: 'g_bucket', le: '1' }), timestampsMs: [0], values: values([3]) },
    { labels: lbl({ __name__: 'g_bucket', le: '2' }), timestampsMs: [0], values: values([2]) },
    { labels: lbl({ __name__: 'g_bucket', le: '+Inf' }), timestampsMs: [0], values: values([4]) },
  ]);
}

function vector(v: PromValue): Array<{ labels: Record<string, string>; value: number }> {
  assert.equal(v.type, 'vector');
  if (v.type !== 'vector') return [];
  return v.value
    .map((s) => ({ labels: Object.fromEntries(s.labels.map((l) => [l.name, l.value])), value: s.value }))
    .sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)));
}

function close(actual: number | undefined, expected: number): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected)), `${actual} ≉ ${expected}`);
}

async function rejects<T extends Error>(p: Promise<unknown>, cls: abstract new (...args: never[]) => T, message: RegExp): Promise<T> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.match(err.message, message);
    return err;
  }
  assert.fail('expected a rejection');
}

describe('instant selectors', () => {
  it('a staleness marker ends the series until the next sample', async () => {
    const q = fixture();
    assert.deepEqual(vector(await instantQuery(q, 'x{job="b"}', 170 * S)), [{ labels: { __name__: 'x', job: 'b' }, value: 3 }]);
    assert.deepEqual(vector(await instantQuery(q, 'x{job="b"}', 180 * S)), []);
    assert.deepEqual(vector(await instantQuery(q, 'x{job="b"}', 299 * S)), []);
    assert.deepEqual(vector(await instantQuery(q, 'x{job="b"}', 300 * S)), [{ labels: { __name__: 'x', job: 'b' }, value: 5 }]);
  });

  it('looks back 5 minutes inclusive by default, or lookbackDeltaMs', async () => {
    const q = fixture();
    assert.equal(vector(await instantQuery(q, 'x{job="b"}', 600 * S)).length, 1);
    assert.equal(vector(await instantQuery(q, 'x{job="b"}', 600 * S + 1)).length, 0);
    assert.equal(vector(await instantQuery(q, 'x{job="b"}', 330 * S, { lookbackDeltaMs: 20 * S })).length, 0);
    assert.equal(vector(await instantQuery(q, 'x{job="b"}', 310 * S, { lookbackDeltaMs: 20 * S })).length, 1);
  });

  it('supports the four matcher operators', async () => {
    const q = fixture();
    assert.deepEqual(vector(await instantQuery(q, 'x{job!="a"}', 60 * S)).map((s) => s.value), [2]);
    assert.deepEqual(vector(await instantQuery(q, 'x{job=~"a|b"}', 60 * S)).map((s) => s.value), [10, 2]);
    assert.deepEqual(vector(await instantQuery(q, 'x{job!~"a"}', 60 * S)).map((s) => s.value), [2]);
  });

  it('returns a range vector at top level with stale markers left out', async () => {
    const v = await instantQuery(fixture(), 'x{job="b"}[5m]', 300 * S);
    assert.equal(v.type, 'matrix');
    if (v.type !== 'matrix') return;
    assert.deepEqual(v.value[0]?.points, [
      [0, 1],
      [60 * S, 2],
      [120 * S, 3],
      [300 * S, 5],
    ]);
  });
});

describe('fetched data', () => {
  it('sorts unsorted samples and keeps the last of duplicate timestamps', async () => {
    const q: Queryable = {
      select: () => Promise.resolve([{ labels: lbl({ __name__: 'u' }), timestampsMs: [120 * S, 0, 60 * S, 60 * S], values: [3, 1, 2, 9] }]),
    };
    assert.deepEqual(vector(await instantQuery(q, 'u', 60 * S)), [{ labels: { __name__: 'u' }, value: 9 }]);
    const m = await instantQuery(q, 'u[5m]', 120 * S);
    assert.ok(m.type === 'matrix');
    assert.deepEqual(m.value[0]?.points, [
      [0, 1],
      [60 * S, 9],
      [120 * S, 3],
    ]);
  });

  it('reads typed arrays as it reads plain ones: in order, unsorted, with staleness markers', async () => {
    const ts = [0, 60 * S, 120 * S, 180 * S];
    const typed = (t: number[], v: number[]): Queryable => ({
      select: () => Promise.resolve([{ labels: lbl({ __name__: 'u' }), timestampsMs: Float64Array.from(t), values: Float64Array.from(v) }]),
    });
    const plain = (t: number[], v: number[]): Queryable => ({
      select: () => Promise.resolve([{ labels: lbl({ __name__: 'u' }), timestampsMs: t, values: v }]),
    });
    for (const [t, v] of [
      [ts, [1, 2, 3, 4]],
      [[120 * S, 0, 60 * S, 180 * S], [3, 1, 2, 4]],
    ] as const) {
      for (const expr of ['u', 'rate(u[5m])', 'count_over_time(u[5m])']) {
        for (const at of [60 * S, 150 * S, 200 * S]) {
          assert.deepEqual(await instantQuery(typed([...t], [...v]), expr, at), await instantQuery(plain([...t], [...v]), expr, at), `${expr} @ ${at}`);
        }
        assert.deepEqual(await rangeQuery(typed([...t], [...v]), expr, 0, 240 * S, 30 * S), await rangeQuery(plain([...t], [...v]), expr, 0, 240 * S, 30 * S), expr);
      }
    }
    // A staleness marker in a typed array still ends the series (its bits reach the engine).
    const stale: Queryable = {
      select: () => Promise.resolve([{ labels: lbl({ __name__: 'u' }), timestampsMs: Float64Array.from(ts), values: values([1, 2, 0, 4], [2]) as unknown as Float64Array }]),
    };
    assert.deepEqual(vector(await instantQuery(stale, 'u', 150 * S)), []);
    assert.deepEqual(vector(await instantQuery(stale, 'count_over_time(u[5m])', 150 * S)), [{ labels: {}, value: 2 }]);
  });
});

describe('rate and friends', () => {
  it('rate without extrapolation when samples sit on the window edges', async () => {
    // Window [300s, 600s]: 50 … 100 → 50 / 300 s.
    const [r] = vector(await instantQuery(fixture(), 'rate(x{job="a"}[5m])', 600 * S));
    close(r?.value, 50 / 300);
    assert.deepEqual(r?.labels, { job: 'a' });
  });

  it('extrapolates to the window edges as Prometheus', async () => {
    // Window [330s, 630s]: samples 360…600 (60…100). 40 over 240 s, 30 s to each edge
    // (< 1.1 × 60 s average) → extrapolated over 300 s: 50.
    const [inc] = vector(await instantQuery(fixture(), 'increase(x{job="a"}[5m])', 630 * S));
    close(inc?.value, 50);
    const [d] = vector(await instantQuery(fixture(), 'delta(x{job="a"}[5m])', 630 * S));
    close(d?.value, 50);
  });

  it('counts counter resets', async () => {
    // 5, 10, 2, 6: 6 - 5 + 10 (reset) = 11; edges exact, zero point (81.8 s back) not reached.
    const [inc] = vector(await instantQuery(fixture(), 'increase(c[3m])', 180 * S));
    close(inc?.value, 11);
    const [resets] = vector(await instantQuery(fixture(), 'resets(c[3m])', 180 * S));
    assert.equal(resets?.value, 1);
    // irate over the last two samples 2 → 6: 4 / 60 s; idelta 4.
    close(vector(await instantQuery(fixture(), 'irate(c[3m])', 180 * S))[0]?.value, 4 / 60);
    close(vector(await instantQuery(fixture(), 'idelta(c[3m])', 180 * S))[0]?.value, 4);
  });

  it('needs two samples for rate, one for *_over_time', async () => {
    assert.deepEqual(vector(await instantQuery(fixture(), 'rate(x{job="b"}[1m])', 300 * S)), []);
    assert.deepEqual(vector(await instantQuery(fixture(), 'count_over_time(x{job="b"}[1m])', 300 * S)), [{ labels: { job: 'b' }, value: 1 }]);
  });

  it('deriv and predict_linear fit a line', async () => {
    // x{job="a"} rises 10 per 60 s.
    close(vector(await instantQuery(fixture(), 'deriv(x{job="a"}[5m])', 600 * S))[0]?.value, 10 / 60);
    close(vector(await instantQuery(fixture(), 'predict_linear(x{job="a"}[5m], 60)', 600 * S))[0]?.value, 110);
  });
});

describe('aggregations and functions', () => {
  it('histogram_quantile interpolates within the bucket', async () => {
    // rank 3 of 4 falls in (1, 2] holding 2 observations, 1 of them below: 1 + 1 × 1/2.
    close(vector(await instantQuery(fixture(), 'histogram_quantile(0.75, h_bucket)', 0))[0]?.value, 1.5);
  });

  it('histogram_quantile lifts non-monotonic bucket counts', async () => {
    // le=2 holds 2 < 3 (le=1): lifted to 3. rank 2 of 4 is in (0, 1]: 2/3.
    close(vector(await instantQuery(fixture(), 'histogram_quantile(0.5, g_bucket)', 0))[0]?.value, 2 / 3);
  });

  it('drops __name__ on functions and arithmetic, keeps it on comparisons, sort and last_over_time', async () => {
    const q = fixture();
    const names = async (expr: string): Promise<string[]> => vector(await instantQuery(q, expr, 60 * S)).map((s) => s.labels.__name__ ?? '');
    assert.deepEqual(await names('x * 1'), ['', '']);
    assert.deepEqual(await names('abs(x)'), ['', '']);
    assert.deepEqual(await names('x > 0'), ['x', 'x']);
    assert.deepEqual(await names('x > bool 0'), ['', '']);
    assert.deepEqual(await names('sort(x)'), ['x', 'x']);
    assert.deepEqual(await names('last_over_time(x[1m])'), ['x', 'x']);
    assert.deepEqual(await names('max_over_time(x[1m])'), ['', '']);
  });

  it('topk/bottomk prefer earlier series on ties and never prefer NaN', async () => {
    const q = memory(
      [3, NaN, 3, 5].map((v, i) => ({ labels: lbl({ __name__: 't', i: String(i) }), timestampsMs: [0], values: values([v]) })),
    );
    const order = async (e: string): Promise<string[]> => {
      const v = await instantQuery(q, e, 0);
      return v.type === 'vector' ? v.value.map((s) => s.labels.find((l) => l.name === 'i')?.value ?? '') : [];
    };
    assert.deepEqual(await order('topk(2, t)'), ['3', '0']);
    assert.deepEqual(await order('bottomk(2, t)'), ['0', '2']);
    assert.deepEqual(await order('topk(9, t)'), ['3', '0', '2', '1']);
    assert.deepEqual(await order('bottomk(9, t)'), ['0', '2', '3', '1']);
  });

  it('absent gives the equality matchers as labels', async () => {
    assert.deepEqual(vector(await instantQuery(fixture(), 'absent(nope{job="a",env=~"p.*"})', 0)), [{ labels: { job: 'a' }, value: 1 }]);
    assert.deepEqual(vector(await instantQuery(fixture(), 'absent(x)', 0)), []);
  });

  it('scalar() of anything but one element is NaN', async () => {
    const v = await instantQuery(fixture(), 'scalar(x)', 0);
    assert.equal(v.type, 'scalar');
    if (v.type === 'scalar') assert.ok(Number.isNaN(v.value[1]));
  });

  it('count_values formats values as Go does', async () => {
    assert.deepEqual(vector(await instantQuery(fixture(), 'count_values("v", x * 1e21 + 0.5)', 60 * S)), [
      { labels: { v: '10000000000000000000000' }, value: 1 },
      { labels: { v: '2000000000000000000000' }, value: 1 },
    ]);
  });

  it('label_replace expands groups and leaves non-matching series alone', async () => {
    const got = vector(await instantQuery(fixture(), 'label_replace(x, "dst", "<$1>", "job", "(a)")', 60 * S));
    assert.deepEqual(
      got.map((s) => s.labels.dst ?? '-'),
      ['<a>', '-'],
    );
  });
});

describe('double_exponential_smoothing (Prometheus 2 holt_winters)', () => {
  const q = memory([{ labels: lbl({ __name__: 'g', h: '1' }), timestampsMs: minutes(15), values: values([5, -3, 8, 2.5, -1, 0, 9, 4, 4, 4, 12, 1.5, -7, 7, 3]) }]);

  it('smooths as Prometheus 2.42 holt_winters did', async () => {
    // Expected values computed by promtool 2.42 with holt_winters(…) on the same series.
    assert.equal(vector(await instantQuery(q, 'double_exponential_smoothing(g[10m], 0.5, 0.3)', 720 * S))[0]?.value, -0.8264671256250002);
    assert.equal(vector(await instantQuery(q, 'double_exponential_smoothing(g[4m], 0.1, 0.9)', 840 * S))[0]?.value, -21.72948);
  });

  it('refuses factors outside (0, 1)', async () => {
    await rejects(instantQuery(q, 'double_exponential_smoothing(g[4m], 1, 0.5)', 840 * S), PromqlExecutionError, /^invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000$/);
    await rejects(instantQuery(q, 'double_exponential_smoothing(g[4m], 0.5, 0)', 840 * S), PromqlExecutionError, /^invalid trend factor. Expected: 0 < tf < 1, got: 0.000000$/);
  });
});

describe('literals', () => {
  it('reads numbers, durations, hex, Inf and NaN', async () => {
    const scalar = async (e: string): Promise<number> => {
      const v = await instantQuery(fixture(), e, 0);
      assert.equal(v.type, 'scalar');
      return v.type === 'scalar' ? v.value[1] : NaN;
    };
    assert.equal(await scalar('0x10'), 16);
    assert.equal(await scalar('1h30m'), 5400);
    assert.equal(await scalar('1e3'), 1000);
    assert.equal(await scalar('-Inf'), -Infinity);
    assert.ok(Number.isNaN(await scalar('NaN')));
    assert.equal(await scalar('-2 ^ 2'), -4);
  });

  it('returns string literals as strings', async () => {
    assert.deepEqual(await instantQuery(fixture(), '"hello"', 5 * S), { type: 'string', value: [5 * S, 'hello'] });
  });
});

describe('range queries', () => {
  it('evaluates every step from start, not aligned to the step', async () => {
    const v = await rangeQuery(fixture(), 'x{job="a"}', 30 * S, 300 * S, 120 * S);
    assert.deepEqual(v.value, [
      {
        labels: lbl({ __name__: 'x', job: 'a' }),
        points: [
          [30 * S, 0],
          [150 * S, 20],
          [270 * S, 40],
        ],
      },
    ]);
  });

  it('fetches each selector once, over the whole range', async () => {
    const q = fixture();
    await rangeQuery(q, 'rate(x[5m] offset 1m) + on(job) x', 600 * S, 1200 * S, 60 * S);
    assert.equal(q.calls.length, 2);
    const spans = q.calls.map((c) => [c.startMs, c.endMs]).sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0));
    // range selector: [start - offset - range, end - offset]; instant: [start - lookback, end].
    assert.deepEqual(spans, [
      [240 * S, 1140 * S],
      [300 * S, 1200 * S],
    ]);
  });

  it('gives a scalar expression one unlabelled series', async () => {
    const v = await rangeQuery(fixture(), 'time() * 2', 0, 120 * S, 60 * S);
    assert.deepEqual(v.value, [
      {
        labels: [],
        points: [
          [0, 0],
          [60 * S, 120],
          [120 * S, 240],
        ],
      },
    ]);
  });

  it('holds @ end() fixed at every step and sorts series by labels', async () => {
    const v = await rangeQuery(fixture(), 'x @ end()', 0, 600 * S, 300 * S);
    assert.deepEqual(
      v.value.map((s) => [s.labels.map((l) => l.value).join(','), s.points]),
      [
        [
          'x,a',
          [
            [0, 100],
            [300 * S, 100],
            [600 * S, 100],
          ],
        ],
        [
          'x,b',
          [
            [0, 5],
            [300 * S, 5],
            [600 * S, 5],
          ],
        ],
      ],
    );
  });

  it('aligns subquery steps to multiples of the step', async () => {
    // [5m:2m] at 610 s: inner steps 360, 480, 600 s.
    const v = await rangeQuery(fixture(), 'count_over_time(x{job="a"}[5m:2m])', 600 * S, 610 * S, 10 * S);
    assert.deepEqual(v.value[0]?.points, [
      [600 * S, 3],
      [610 * S, 3],
    ]);
  });

  it('refuses range vectors and bad steps', async () => {
    await rejects(rangeQuery(fixture(), 'x[5m]', 0, 60 * S, 1 * S), PromqlSyntaxError, /invalid expression type "range vector" for range query/);
    await rejects(rangeQuery(fixture(), 'x', 0, 60 * S, 0), PromqlExecutionError, /step/);
    await rejects(rangeQuery(fixture(), 'x', 0, 60_000 * S, 1 * S), PromqlExecutionError, /11,000 points/);
  });
});

describe('errors', () => {
  it('reports syntax errors with a position', async () => {
    const err = await rejects(instantQuery(fixture(), 'sum(x', 0), PromqlSyntaxError, /^parse error at char \d+: /);
    assert.ok(err.position >= 0);
  });

  it('names an unknown function', async () => {
    await rejects(instantQuery(fixture(), 'foo(x)', 0), PromqlSyntaxError, /^parse error at char 1: unknown function with name "foo"$/);
  });

  it('checks argument types and counts', async () => {
    await rejects(instantQuery(fixture(), 'rate(x)', 0), PromqlSyntaxError, /expected type range vector in call to function "rate", got instant vector/);
    await rejects(instantQuery(fixture(), 'clamp(x, 1)', 0), PromqlSyntaxError, /expected 3 argument\(s\) in call to "clamp", got 2/);
    await rejects(instantQuery(fixture(), 'topk(x, x)', 0), PromqlSyntaxError, /expected type scalar in aggregation parameter, got instant vector/);
    await rejects(instantQuery(fixture(), '1 > 2', 0), PromqlSyntaxError, /comparisons between scalars must use BOOL modifier/);
    await rejects(instantQuery(fixture(), 'x and 1', 0), PromqlSyntaxError, /set operator "and" not allowed in binary scalar expression/);
    await rejects(instantQuery(fixture(), 'sum(x) offset 1m', 0), PromqlSyntaxError, /offset modifier must be preceded by/);
    // Prometheus 3 syntax the grammar accepts but Prometheus 2 semantics do not have.
    await rejects(instantQuery(fixture(), 'x + fill(0) x', 0), PromqlSyntaxError, /fill\(0\) modifiers are not supported/);
    await rejects(instantQuery(fixture(), 'x[5m] smoothed', 0), PromqlSyntaxError, /not supported/);
    await rejects(instantQuery(fixture(), 'limitk(1, x)', 0), PromqlSyntaxError, /aggregation "limitk" is not supported/);
    await rejects(instantQuery(fixture(), 'x[5m+1m]', 0), PromqlSyntaxError, /only a plain duration/);
  });

  it('reports many-to-many matching as Prometheus', async () => {
    await rejects(
      instantQuery(fixture(), 'x + on() x', 60 * S),
      PromqlExecutionError,
      /^found duplicate series for the match group \{\} on the right hand-side of the operation: \[\{__name__="x", job="[ab]"\}, \{__name__="x", job="[ab]"\}\];many-to-many matching not allowed: matching labels must be unique on one side$/,
    );
    await rejects(instantQuery(fixture(), 'x + on() group_left x', 60 * S), PromqlExecutionError, /on the right hand-side/);
    await rejects(instantQuery(fixture(), 'x + on() group_right x', 60 * S), PromqlExecutionError, /on the left hand-side/);
    await rejects(instantQuery(fixture(), 'x + ignoring(job) x{job="a"}', 60 * S), PromqlExecutionError, /^multiple matches for labels: many-to-one matching must be explicit \(group_left\/group_right\)$/);
  });

  it('reports bad label_replace / label_join / count_values arguments as execution errors', async () => {
    await rejects(instantQuery(fixture(), 'label_replace(x, "d", "$1", "job", "(")', 0), PromqlExecutionError, /^invalid regular expression in label_replace\(\): \($/);
    await rejects(instantQuery(fixture(), 'label_replace(x, "1d", "$1", "job", "(.*)")', 0), PromqlExecutionError, /^invalid destination label name in label_replace\(\): 1d$/);
    await rejects(instantQuery(fixture(), 'label_join(x, "d", "-", "a-b")', 0), PromqlExecutionError, /^invalid source label name in label_join\(\): a-b$/);
    await rejects(instantQuery(fixture(), 'count_values("a-b", x)', 0), PromqlExecutionError, /^invalid label name "a-b"$/);
  });

  it('understands RE2 flag groups and named groups in label_replace', async () => {
    const got = vector(await instantQuery(fixture(), 'label_replace(x, "d", "$n", "job", "(?i)(?P<n>A)")', 60 * S));
    assert.deepEqual(
      got.map((s) => s.labels.d ?? '-'),
      ['a', '-'],
    );
  });

  it('refuses a step with duplicate output series', async () => {
    await rejects(instantQuery(fixture(), 'label_replace(x, "job", "", "job", ".*")', 60 * S), PromqlExecutionError, /vector cannot contain metrics with the same labelset/);
    // x{job="a"} and c{job="a"} collide once __name__ is dropped.
    await rejects(instantQuery(fixture(), 'rate({__name__=~"x|c",job="a"}[3m])', 180 * S), PromqlExecutionError, /same labelset/);
    await rejects(instantQuery(fixture(), '{__name__=~"x|c",job="a"} * 2', 180 * S), PromqlExecutionError, /same labelset/);
    assert.equal(vector(await instantQuery(fixture(), '{__name__=~"x|c",job="a"} > 2', 180 * S)).length, 2);
  });
});

describe('limits', () => {
  it('QueryLimitError for series and samples, naming the limit', async () => {
    const series = await rejects(instantQuery(fixture(), 'x', 0, { maxSeries: 1 }), QueryLimitError, /query\.maxSeries/);
    assert.equal(series.limit, 'query.maxSeries');
    assert.equal(series.value, 1);
    assert.ok(series instanceof LimitExceededError);
    const samples = await rejects(instantQuery(fixture(), 'x[10m]', 600 * S, { maxSamples: 5 }), QueryLimitError, /query\.maxSamples/);
    assert.equal(samples.limit, 'query.maxSamples');
    await rejects(rangeQuery(fixture(), 'vector(1)', 0, 600 * S, 1 * S, { maxSamples: 100 }), QueryLimitError, /query\.maxSamples/);
  });

  it('QueryTimeoutError when the deadline passes', async () => {
    const slow: Queryable = {
      select: () => new Promise((resolve) => setTimeout(() => resolve([]), 50)),
    };
    await rejects(instantQuery(slow, 'x', 0, { timeoutMs: 5 }), QueryTimeoutError, /timed out/);
  });

  it('stops when the signal aborts', async () => {
    const ac = new AbortController();
    ac.abort(new Error('client went away'));
    await rejects(instantQuery(fixture(), 'x', 0, { signal: ac.signal }), Error, /client went away/);
  });
});

describe('staleness markers', () => {
  it('recognises both the signalling and the quieted bit pattern', () => {
    assert.ok(isStaleNaN(STALE_NAN));
    const quiet = new Float64Array(1);
    new Uint32Array(quiet.buffer).set([2, 0x7ff80000]);
    assert.ok(isStaleNaN(quiet[0] ?? 0));
    assert.ok(!isStaleNaN(NaN));
    assert.ok(!isStaleNaN(1));
  });
});

describe('over the in-memory MetricStore', () => {
  it('evaluates a rate aggregation over a tenant of createMemoryStore', async () => {
    const store = createMemoryStore();
    const ts = minutes(6);
    await store.write('t1', 'b1', [
      { labels: lbl({ __name__: 'req', job: 'api', pod: '1' }), timestampsMs: ts, values: ts.map((t) => t / 1000) },
      { labels: lbl({ __name__: 'req', job: 'api', pod: '2' }), timestampsMs: ts, values: ts.map((t) => t / 500) },
    ]);
    await store.write('t2', 'b1', [{ labels: lbl({ __name__: 'req', job: 'api', pod: '3' }), timestampsMs: ts, values: ts.map(() => 1e9) }]);
    const q: Queryable = { select: (m, s, e) => store.select('t1', m, s, e) };
    // Pods rise 1/s and 2/s, samples on the window edges: sum is 3/s.
    const got = vector(await instantQuery(q, 'sum by (job) (rate(req[5m]))', 300 * S));
    assert.equal(got.length, 1);
    assert.deepEqual(got[0]?.labels, { job: 'api' });
    close(got[0]?.value, 3);
    const r = await rangeQuery(q, 'count(req)', 0, 300 * S, 60 * S);
    assert.deepEqual(
      r.value[0]?.points.map((p) => p[1]),
      [2, 2, 2, 2, 2, 2],
    );
  });
});
