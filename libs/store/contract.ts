/**
 * The one contract every `MetricStore` adapter must pass. An adapter's test file calls
 * `runMetricStoreContract` with a factory; adding a behaviour to the port means adding it
 * here, so the DuckDB adapter, the in-memory fake and (later) MongoDB cannot drift apart.
 *
 * Imports node:test, so only test files may import this module.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Label, Matcher, SeriesSamples } from '../model/index.js';
import { StoreClosedError, StoreInputError, StoreLimitError } from './errors.js';
import type { MetricStore } from './port.js';

const T0 = 1_700_000_000_000;
const ALL = [-Infinity, Infinity] as const;

function labels(obj: Record<string, string>): Label[] {
  return Object.entries(obj)
    .map(([name, value]) => ({ name, value }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function series(obj: Record<string, string>, points: readonly (readonly [number, number])[]): SeriesSamples {
  return { labels: labels(obj), timestampsMs: points.map((p) => p[0]), values: points.map((p) => p[1]) };
}

const eq = (name: string, value: string): Matcher => ({ op: '=', name, value });
const ne = (name: string, value: string): Matcher => ({ op: '!=', name, value });
const re = (name: string, value: string): Matcher => ({ op: '=~', name, value });
const nre = (name: string, value: string): Matcher => ({ op: '!~', name, value });

/** The `host` label of each selected series, in answer order: compact to assert on. */
function hosts(result: readonly SeriesSamples[]): string[] {
  return result.map((s) => s.labels.find((l) => l.name === 'host')?.value ?? '');
}

function sampleCount(result: readonly SeriesSamples[]): number {
  return result.reduce((n, s) => n + s.values.length, 0);
}

function valueSum(result: readonly SeriesSamples[]): number {
  return result.reduce((n, s) => n + s.values.reduce((a, b) => a + b, 0), 0);
}

/**
 * Registers the contract suite (node:test `describe`/`it`) for one adapter. `open` must
 * return a fresh, empty store on every call; each test closes the store it opened.
 */
export function runMetricStoreContract(name: string, open: () => Promise<MetricStore>): void {
  /** Opens a store, runs `body`, and always closes it so a failing test leaks nothing. */
  async function withStore(body: (store: MetricStore) => Promise<void>): Promise<void> {
    const store = await open();
    try {
      await body(store);
    } finally {
      await store.close();
    }
  }

  describe(`MetricStore contract: ${name}`, () => {
    it('round-trips a batch, scoped by tenant', () =>
      withStore(async (store) => {
        const a = [
          series({ __name__: 'cpu', host: 'a', only_in_a: 'x' }, [[T0, 1], [T0 + 1000, 2]]),
          series({ __name__: 'cpu', host: 'b' }, [[T0, 3]]),
        ];
        const b = [series({ __name__: 'cpu', host: 'a', only_in_a: 'x' }, [[T0, 100]])];
        assert.deepEqual(await store.write('tenant-a', 'batch-1', a), { samplesWritten: 3, duplicate: false });
        assert.deepEqual(await store.write('tenant-b', 'batch-1', b), { samplesWritten: 1, duplicate: false });

        assert.deepEqual(await store.select('tenant-a', [eq('__name__', 'cpu')], ...ALL), a);
        assert.deepEqual(await store.select('tenant-b', [eq('__name__', 'cpu')], ...ALL), b);
        assert.deepEqual(await store.select('tenant-b', [], ...ALL), b);
        assert.deepEqual(await store.select('tenant-c', [], ...ALL), []);
        assert.deepEqual(await store.labelValues('tenant-b', 'host', [], ...ALL), ['a']);
        assert.deepEqual(await store.labelNames('tenant-c', [], ...ALL), []);
      }));

    it('stores label sets canonically and merges a series split within a batch', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [
          { labels: [{ name: 'z', value: '1' }, { name: '__name__', value: 'm' }, { name: 'e', value: '' }], timestampsMs: [T0 + 2], values: [2] },
          { labels: [{ name: '__name__', value: 'm' }, { name: 'z', value: '1' }], timestampsMs: [T0 + 1], values: [1] },
        ]);
        assert.deepEqual(await store.select('t', [eq('__name__', 'm')], ...ALL), [
          series({ __name__: 'm', z: '1' }, [[T0 + 1, 1], [T0 + 2, 2]]),
        ]);
      }));

    it('sorts series by label set and samples by time across batches', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [
          series({ __name__: 'm', host: 'c' }, [[T0 + 30, 3], [T0 + 10, 1]]),
          series({ __name__: 'm', host: 'a', zone: 'z' }, [[T0, 1]]),
        ]);
        await store.write('t', 'b2', [
          series({ __name__: 'm', host: 'c' }, [[T0 + 20, 2], [T0, 0]]),
          series({ __name__: 'm', host: 'a' }, [[T0, 1]]),
          series({ __name__: 'm', host: 'b' }, [[T0, 1]]),
        ]);
        const got = await store.select('t', [eq('__name__', 'm')], ...ALL);
        // {host=a} sorts before {host=a, zone=z}: a prefix comes first.
        assert.deepEqual(
          got.map((s) => s.labels),
          [
            labels({ __name__: 'm', host: 'a' }),
            labels({ __name__: 'm', host: 'a', zone: 'z' }),
            labels({ __name__: 'm', host: 'b' }),
            labels({ __name__: 'm', host: 'c' }),
          ],
        );
        assert.deepEqual(got[3].timestampsMs, [T0, T0 + 10, T0 + 20, T0 + 30]);
        assert.deepEqual(got[3].values, [0, 1, 2, 3]);
      }));

    it('keeps write order for samples sharing a timestamp', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [series({ __name__: 'm' }, [[T0 + 1, 1], [T0, 9], [T0, -0]])]);
        await store.write('t', 'b2', [series({ __name__: 'm' }, [[T0, 3]])]);
        const [got] = await store.select('t', [], ...ALL);
        assert.deepEqual(got.timestampsMs, [T0, T0, T0, T0 + 1]);
        assert.deepEqual(got.values, [9, -0, 3, 1]);
      }));

    it('applies all four matcher ops with Prometheus semantics', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [
          series({ __name__: 'up', host: 'a', job: 'api' }, [[T0, 1]]),
          series({ __name__: 'up', host: 'ab', job: 'db' }, [[T0, 1]]),
          series({ __name__: 'up', host: 'b' }, [[T0, 1]]),
          series({ __name__: 'down', host: 'x', job: 'api' }, [[T0, 1]]),
        ]);
        const up = eq('__name__', 'up');
        const sel = async (...m: Matcher[]) => hosts(await store.select('t', m, ...ALL));

        assert.deepEqual(await sel(up, eq('host', 'a')), ['a']);
        assert.deepEqual(await sel(up, ne('host', 'a')), ['ab', 'b']);
        // Regexes are anchored at both ends: "a" must not match "ab".
        assert.deepEqual(await sel(up, re('host', 'a')), ['a']);
        assert.deepEqual(await sel(up, re('host', 'a.*')), ['a', 'ab']);
        assert.deepEqual(await sel(up, re('host', 'b|a')), ['a', 'b']);
        assert.deepEqual(await sel(up, nre('host', 'a')), ['ab', 'b']);
        assert.deepEqual(await sel(up, nre('host', 'a.*')), ['b']);
        // A missing label matches as the empty string.
        assert.deepEqual(await sel(up, eq('job', '')), ['b']);
        assert.deepEqual(await sel(up, ne('job', '')), ['a', 'ab']);
        assert.deepEqual(await sel(up, re('job', '')), ['b']);
        assert.deepEqual(await sel(up, re('job', '.+')), ['a', 'ab']);
        assert.deepEqual(await sel(up, nre('job', 'db')), ['a', 'b']);
        assert.deepEqual(await sel(up, eq('nonexistent', 'x')), []);
        // Matchers on the metric name without an equality, and none at all.
        // Series sort by label set, so down{…} comes before up{…}.
        assert.deepEqual(await sel(re('__name__', 'up|down'), eq('job', 'api')), ['x', 'a']);
        assert.deepEqual(await sel(ne('__name__', 'up')), ['x']);
        assert.deepEqual(await sel(), ['x', 'a', 'ab', 'b']);
        assert.deepEqual(await sel(eq('__name__', 'nope')), []);
      }));

    it('rejects an invalid regular expression as bad input', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [series({ __name__: 'up' }, [[T0, 1]])]);
        await assert.rejects(store.select('t', [re('host', '(')], ...ALL), StoreInputError);
        await assert.rejects(store.labelNames('t', [nre('host', '[')], ...ALL), StoreInputError);
      }));

    it('treats the time range as inclusive at both ends', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [series({ __name__: 'm', host: 'a' }, [[1000, 1], [2000, 2], [3000, 3]])]);
        await store.write('t', 'b2', [series({ __name__: 'm', host: 'late' }, [[5000, 5]])]);
        const m = [eq('__name__', 'm')];
        assert.deepEqual((await store.select('t', m, 1000, 2000))[0].timestampsMs, [1000, 2000]);
        assert.deepEqual((await store.select('t', m, 1001, 2999))[0].timestampsMs, [2000]);
        assert.deepEqual((await store.select('t', m, 3000, 3000))[0].values, [3]);
        // Series with no sample in range are left out, including from label queries.
        assert.deepEqual(hosts(await store.select('t', m, 1000, 3000)), ['a']);
        assert.deepEqual(await store.select('t', m, 3001, 4999), []);
        assert.deepEqual(await store.labelValues('t', 'host', m, 4000, 6000), ['late']);
        assert.deepEqual(await store.labelNames('t', m, 3001, 4999), []);
        assert.deepEqual(await store.select('t', m, 2000, 1000), []);
      }));

    it('ignores a redelivered batch id: counts and sums do not change', () =>
      withStore(async (store) => {
        const batch = [
          series({ __name__: 'req', host: 'a' }, [[T0, 10], [T0 + 1, 20]]),
          series({ __name__: 'req', host: 'b' }, [[T0, 5]]),
        ];
        assert.deepEqual(await store.write('t', 'batch-42', batch), { samplesWritten: 3, duplicate: false });
        const before = await store.select('t', [eq('__name__', 'req')], ...ALL);
        assert.deepEqual(await store.write('t', 'batch-42', batch), { samplesWritten: 0, duplicate: true });
        // Even a redelivery with different content must not add anything: the id decides.
        assert.deepEqual(await store.write('t', 'batch-42', [series({ __name__: 'req', host: 'c' }, [[T0, 1]])]), {
          samplesWritten: 0,
          duplicate: true,
        });
        const after = await store.select('t', [eq('__name__', 'req')], ...ALL);
        assert.deepEqual(after, before);
        assert.equal(sampleCount(after), 3);
        assert.equal(valueSum(after), 35);
        // Batch ids are per tenant: another tenant's batch with the same id is new.
        assert.deepEqual(await store.write('other', 'batch-42', batch), { samplesWritten: 3, duplicate: false });
      }));

    it('stores a batch once when the same id is written concurrently', () =>
      withStore(async (store) => {
        const batch = [series({ __name__: 'req', host: 'a' }, [[T0, 1]])];
        const results = await Promise.all([1, 2, 3].map(() => store.write('t', 'same', batch)));
        assert.equal(results.filter((r) => !r.duplicate).length, 1);
        assert.equal(sampleCount(await store.select('t', [], ...ALL)), 1);
      }));

    it('keeps every sample when many batches overlap', () =>
      withStore(async (store) => {
        const writes = Array.from({ length: 20 }, (_, i) =>
          store.write('t', `b${i}`, [
            series({ __name__: 'req', host: `h${i % 4}` }, [[T0 + i, i]]),
            series({ __name__: 'req', host: 'all' }, [[T0 + i, 1]]),
          ]),
        );
        const reads = [store.select('t', [], ...ALL), store.labelNames('t', [], ...ALL)];
        await Promise.all([...writes, ...reads]);
        const got = await store.select('t', [eq('__name__', 'req')], ...ALL);
        assert.equal(sampleCount(got), 40);
        assert.equal(valueSum(got), 190 + 20);
      }));

    it('rejects a malformed batch without recording its id', () =>
      withStore(async (store) => {
        const bad = [
          series({ __name__: 'ok' }, [[T0, 1]]),
          { labels: labels({ __name__: 'm' }), timestampsMs: [T0, T0 + 1], values: [1] },
        ];
        await assert.rejects(store.write('t', 'b1', bad), StoreInputError);
        await assert.rejects(store.write('t', 'b1', [series({ __name__: 'm' }, [[T0 + 0.5, 1]])]), StoreInputError);
        await assert.rejects(
          store.write('t', 'b1', [
            { labels: [{ name: 'a', value: '1' }, { name: 'a', value: '2' }], timestampsMs: [T0], values: [1] },
          ]),
          StoreInputError,
        );
        await assert.rejects(store.write('', 'b1', []), StoreInputError);
        await assert.rejects(store.write('t', '', []), StoreInputError);
        await assert.rejects(store.select('', [], ...ALL), StoreInputError);
        assert.deepEqual(await store.select('t', [], ...ALL), []);
        // The corrected batch under the same id is stored: the rejected one left no trace.
        assert.deepEqual(await store.write('t', 'b1', [series({ __name__: 'm' }, [[T0, 1]])]), {
          samplesWritten: 1,
          duplicate: false,
        });
      }));

    it('answers selectColumns exactly as select, in typed arrays', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [
          series({ __name__: 'm', host: 'b' }, [[T0 + 2, 2], [T0, -0], [T0 + 1, NaN]]),
          series({ __name__: 'm', host: 'a' }, [[T0, 1], [T0 + 5, Infinity]]),
        ]);
        // A late sample sharing a timestamp: write order must survive in both reads.
        await store.write('t', 'b2', [series({ __name__: 'm', host: 'a' }, [[T0 + 5, 7], [T0 + 3, 3]])]);
        for (const [from, to] of [ALL, [T0 + 1, T0 + 4]] as const) {
          const plain = await store.select('t', [eq('__name__', 'm')], from, to);
          const cols = await store.selectColumns('t', [eq('__name__', 'm')], from, to);
          assert.deepEqual(
            cols.map((s) => {
              assert.ok(s.timestampsMs instanceof Float64Array && s.values instanceof Float64Array);
              return { labels: s.labels, timestampsMs: Array.from(s.timestampsMs), values: Array.from(s.values) };
            }),
            plain,
          );
        }
        await assert.rejects(store.selectColumns('t', [], ...ALL, { maxSamples: 3 }), StoreLimitError);
        // Another tenant with the very same label set (so the same series id) stays apart,
        // whether or not the ids are shared.
        const own = await store.selectColumns('t', [eq('host', 'b')], ...ALL);
        await store.write('other', 'b1', [series({ __name__: 'm', host: 'b' }, [[T0, 42]]), series({ __name__: 'solo' }, [[T0, 1]])]);
        assert.deepEqual(await store.selectColumns('t', [eq('host', 'b')], ...ALL), own);
        assert.deepEqual(Array.from((await store.selectColumns('other', [eq('host', 'b')], ...ALL))[0]?.values ?? []), [42]);
        assert.deepEqual(await store.selectColumns('t', [eq('__name__', 'solo')], ...ALL), []);
      }));

    it('lists series without their samples: sorted, in range, tenant-scoped, series limit only', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [
          series({ __name__: 'up', job: 'node', host: 'b' }, [[T0, 1], [T0 + 1, 1], [T0 + 2, 1]]),
          series({ __name__: 'up', job: 'api', host: 'a' }, [[T0, 1]]),
          series({ __name__: 'up', job: 'api', host: 'late' }, [[T0 + 10_000, 1]]),
          series({ __name__: 'cpu', job: 'db' }, [[T0, 1]]),
        ]);
        await store.write('other', 'b1', [series({ __name__: 'up', job: 'api', host: 'secret' }, [[T0, 1]])]);
        const up = [eq('__name__', 'up')];
        assert.deepEqual(await store.series('t', up, ...ALL), [
          labels({ __name__: 'up', job: 'api', host: 'a' }),
          labels({ __name__: 'up', job: 'node', host: 'b' }),
          labels({ __name__: 'up', job: 'api', host: 'late' }),
        ]);
        // Only series with a sample in the (inclusive) range; matchers as in select.
        assert.deepEqual(await store.series('t', up, T0 + 1, T0 + 9_999), [labels({ __name__: 'up', job: 'node', host: 'b' })]);
        assert.deepEqual(await store.series('t', [re('job', 'a.*')], T0 + 10_000, T0 + 10_000), [labels({ __name__: 'up', job: 'api', host: 'late' })]);
        assert.deepEqual(await store.series('t', up, T0 + 10_001, Infinity), []);
        assert.deepEqual(await store.series('t', up, T0 + 5, T0), []);
        assert.deepEqual(await store.series('nobody', up, ...ALL), []);
        // The same answer select gives, with the samples left out.
        assert.deepEqual(
          await store.series('t', [], ...ALL),
          (await store.select('t', [], ...ALL)).map((s) => s.labels),
        );
        // The series limit applies (an answer exactly at it is allowed); no sample limit.
        assert.equal((await store.series('t', up, ...ALL, { maxSeries: 3, maxSamples: 0 })).length, 3);
        await assert.rejects(store.series('t', up, ...ALL, { maxSeries: 2 }), StoreLimitError);
        await assert.rejects(store.series('t', [re('host', '(')], ...ALL), StoreInputError);
        await assert.rejects(store.series('', up, ...ALL), StoreInputError);
      }));

    it('lists label names and values, sorted and distinct', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [
          series({ __name__: 'up', job: 'node', zone: 'eu' }, [[T0, 1]]),
          series({ __name__: 'up', job: 'api', instance: 'i1' }, [[T0, 1]]),
          series({ __name__: 'up', job: 'api', instance: 'i2' }, [[T0 + 10, 1]]),
          series({ __name__: 'cpu', job: 'db', mode: 'idle' }, [[T0, 1]]),
        ]);
        await store.write('other', 'b1', [series({ __name__: 'up', secret: 's', job: 'other' }, [[T0, 1]])]);
        assert.deepEqual(await store.labelNames('t', [], ...ALL), ['__name__', 'instance', 'job', 'mode', 'zone']);
        assert.deepEqual(await store.labelNames('t', [eq('__name__', 'up')], ...ALL), [
          '__name__',
          'instance',
          'job',
          'zone',
        ]);
        assert.deepEqual(await store.labelNames('t', [eq('job', 'api')], T0, T0), ['__name__', 'instance', 'job']);
        assert.deepEqual(await store.labelValues('t', 'job', [], ...ALL), ['api', 'db', 'node']);
        assert.deepEqual(await store.labelValues('t', '__name__', [], ...ALL), ['cpu', 'up']);
        assert.deepEqual(await store.labelValues('t', 'instance', [eq('__name__', 'up')], T0, T0), ['i1']);
        assert.deepEqual(await store.labelValues('t', 'job', [re('zone', 'e.')], ...ALL), ['node']);
        assert.deepEqual(await store.labelValues('t', 'nonexistent', [], ...ALL), []);
        assert.deepEqual(await store.labelValues('t', 'secret', [], ...ALL), []);
      }));

    it('throws StoreLimitError naming the limit once a limit is crossed', () =>
      withStore(async (store) => {
        await store.write('t', 'b1', [
          series({ __name__: 'm', host: 'a' }, [[T0, 1], [T0 + 1, 1]]),
          series({ __name__: 'm', host: 'b' }, [[T0, 1], [T0 + 1, 1]]),
          series({ __name__: 'm', host: 'c' }, [[T0, 1], [T0 + 1, 1]]),
        ]);
        const m = [eq('__name__', 'm')];
        // Exactly at the limit is allowed.
        assert.equal((await store.select('t', m, ...ALL, { maxSeries: 3, maxSamples: 6 })).length, 3);
        await assert.rejects(store.select('t', m, ...ALL, { maxSeries: 2 }), (err: unknown) => {
          assert.ok(err instanceof StoreLimitError);
          assert.equal(err.limit, 'maxSeries');
          assert.equal(err.value, 2);
          assert.match(err.message, /maxSeries=2/);
          return true;
        });
        await assert.rejects(store.select('t', m, ...ALL, { maxSamples: 5 }), (err: unknown) => {
          assert.ok(err instanceof StoreLimitError);
          assert.equal(err.limit, 'maxSamples');
          assert.equal(err.value, 5);
          assert.match(err.message, /maxSamples=5/);
          return true;
        });
        // Limits count what is returned: a narrower range fits.
        assert.equal(sampleCount(await store.select('t', m, T0, T0, { maxSamples: 3 })), 3);
        await assert.rejects(store.select('t', m, ...ALL, { maxSeries: -1 }), StoreInputError);
      }));

    it('round-trips NaN, ±Inf, -0 and extreme values and timestamps', () =>
      withStore(async (store) => {
        const values = [NaN, Infinity, -Infinity, -0, -1.5, Number.MAX_VALUE, Number.MIN_VALUE, 1e-300];
        const times = [-86_400_000, 0, 1, T0, T0 + 1, T0 + 2, 8_640_000_000_000_000, Number.MAX_SAFE_INTEGER];
        await store.write('t', 'b1', [{ labels: labels({ __name__: 'odd' }), timestampsMs: times, values }]);
        const [got] = await store.select('t', [eq('__name__', 'odd')], ...ALL);
        assert.deepEqual(got.timestampsMs, times);
        assert.deepEqual(got.values, values);
      }));

    it('writes and reads 2,000 series of 5 samples in one batch', () =>
      withStore(async (store) => {
        const batch: SeriesSamples[] = [];
        for (let i = 0; i < 2000; i++) {
          const host = `host-${String(i).padStart(4, '0')}`;
          batch.push(series({ __name__: 'many', host }, [0, 1, 2, 3, 4].map((k) => [T0 + k * 15_000, i + k] as const)));
        }
        // Written in reverse so the answer's order comes from the store, not from the input.
        const result = await store.write('t', 'big', [...batch].reverse());
        assert.deepEqual(result, { samplesWritten: 10_000, duplicate: false });
        const got = await store.select('t', [eq('__name__', 'many')], ...ALL);
        assert.equal(got.length, 2000);
        assert.deepEqual(got, batch);
        assert.equal((await store.labelValues('t', 'host', [], ...ALL)).length, 2000);
      }));

    it('writeColumns stores rows exactly as write stores series, exactly once', async (t) => {
      const probe = await open();
      const offered = probe.writeColumns !== undefined;
      await probe.close();
      if (!offered) return t.skip('adapter has no writeColumns');
      await withStore(async (store) => {
        const frozen = (obj: Record<string, string>) => Object.freeze(labels(obj).map((l) => Object.freeze(l)));
        const a = frozen({ __name__: 'cpu', host: 'a' });
        const b = frozen({ __name__: 'cpu', host: 'b' });
        // Unfrozen and out of order: canonicalised like any label set given to `write`.
        const c = [{ name: 'host', value: 'c' }, { name: '__name__', value: 'cpu' }, { name: 'empty', value: '' }];
        const rows = (...r: [readonly Label[], number, number][]) => ({
          rowCount: r.length,
          labels: [...r.map((x) => x[0]), a],
          // One row more than rowCount: what lies past it must be ignored.
          timestampsMs: Float64Array.from([...r.map((x) => x[1]), T0 + 999]),
          values: Float64Array.from([...r.map((x) => x[2]), 999]),
        });
        const batch1 = rows([a, T0, 1], [b, T0, 2], [c, T0, 3], [a, T0 + 1000, 4]);
        const batch2 = rows([b, T0 + 2000, -0], [a, T0 + 1000, NaN], [c, T0 - 60_000, 5]);
        assert.deepEqual(await store.writeColumns!('t', 'b1', batch1), { samplesWritten: 4, duplicate: false });
        assert.deepEqual(await store.writeColumns!('t', 'b2', batch2), { samplesWritten: 3, duplicate: false });
        assert.deepEqual(await store.writeColumns!('t', 'b2', batch1), { samplesWritten: 0, duplicate: true });
        // The same rows through `write`, one series per row, in another tenant.
        for (const [id, batch] of [['b1', batch1], ['b2', batch2]] as const) {
          const asSeries = Array.from({ length: batch.rowCount }, (_, i) => ({ labels: batch.labels[i]!, timestampsMs: [batch.timestampsMs[i]!], values: [batch.values[i]!] }));
          await store.write('ref', id, asSeries);
        }
        const got = await store.select('t', [], ...ALL);
        assert.deepEqual(got, await store.select('ref', [], ...ALL));
        assert.deepEqual(hosts(got), ['a', 'b', 'c']);
        assert.equal(sampleCount(got), 7);
        assert.deepEqual(got[0]!.values, [1, 4, NaN]);
        assert.deepEqual(got[2]!.labels, labels({ __name__: 'cpu', host: 'c' }));
        assert.deepEqual(await store.select('other', [], ...ALL), []);
        // Malformed rows are refused and the batch id stays unrecorded.
        const bad = (patch: Partial<ReturnType<typeof rows>>) => ({ ...rows([a, T0, 1]), ...patch });
        await assert.rejects(store.writeColumns!('t', 'b3', bad({ timestampsMs: Float64Array.from([T0 + 0.5]) })), StoreInputError);
        await assert.rejects(store.writeColumns!('t', 'b3', bad({ labels: [[]] })), StoreInputError);
        await assert.rejects(store.writeColumns!('t', 'b3', bad({ rowCount: 3 })), StoreInputError);
        await assert.rejects(store.writeColumns!('', 'b3', rows([a, T0, 1])), StoreInputError);
        assert.deepEqual(await store.writeColumns!('t', 'b3', rows([a, T0 + 3000, 6])), { samplesWritten: 1, duplicate: false });
        assert.deepEqual(await store.writeColumns!('t', 'b4', rows()), { samplesWritten: 0, duplicate: false });
        assert.equal(sampleCount(await store.select('t', [], ...ALL)), 8);
      });
    });

    it('closes idempotently and refuses calls afterwards', async () => {
      const store = await open();
      await store.write('t', 'b1', [series({ __name__: 'm' }, [[T0, 1]])]);
      const pending = store.write('t', 'b2', [series({ __name__: 'm' }, [[T0 + 1, 1]])]);
      await Promise.all([store.close(), store.close()]);
      // A write accepted before close completes rather than being dropped.
      assert.deepEqual(await pending, { samplesWritten: 1, duplicate: false });
      await store.close();
      await assert.rejects(store.write('t', 'b3', []), StoreClosedError);
      await assert.rejects(store.select('t', [], ...ALL), StoreClosedError);
      await assert.rejects(store.labelNames('t', [], ...ALL), StoreClosedError);
      await assert.rejects(store.labelValues('t', 'x', [], ...ALL), StoreClosedError);
      await assert.rejects(store.series('t', [], ...ALL), StoreClosedError);
      await assert.rejects(store.selectColumns('t', [], ...ALL), StoreClosedError);
    });
  });
}
