/**
 * Sample batches decoded straight into the store's model.
 *
 * Why: decoding a 10 000-series batch through the generated schema builds a message, a
 * label array and label messages per series and a BigInt per timestamp, only for the
 * consumer to copy all of it into the store's model; at ingest rates that garbage was a
 * quarter of aggregation's CPU. Batches are read through `SampleBatchFrameSchema` (series
 * left encoded) and each series is scanned into numbers. Label sets repeat from batch to
 * batch, so they are interned by their encoded bytes: a series seen before costs one
 * lookup and yields the same frozen label array, which the store recognises (see
 * `prepareBatch`).
 */
import { EncodedLabelTable, MalformedSeriesError, readLabels, SeriesScanner, type Label, type Labels, type SeriesSamples } from '../../libs/model/index.js';
import type { SampleColumns } from '../../libs/store/index.js';

const EMPTY: Labels = Object.freeze([]);
const frozenLabel = (name: string, value: string): Label => Object.freeze({ name, value });

/**
 * Decodes series into the store's model, interning label sets. Synchronous and not
 * shared, so one instance serves a consumer. Throws `MalformedSeriesError` on bad bytes.
 */
export class SeriesDecoder {
  readonly #interned: EncodedLabelTable<Labels>;
  // One scanner for every series: decoding is synchronous, and one per series was
  // measurable garbage.
  readonly #scanner = new SeriesScanner();

  /** @param maxLabelSets bound on remembered label sets; past it the table starts over. */
  constructor(maxLabelSets = 250_000) {
    this.#interned = new EncodedLabelTable(maxLabelSets);
  }

  /** Label sets remembered now. */
  get size(): number {
    return this.#interned.size;
  }

  /** Decodes every series of a batch. */
  decodeAll(series: readonly Uint8Array[]): SeriesSamples[] {
    const out: SeriesSamples[] = new Array(series.length);
    for (let i = 0; i < series.length; i++) out[i] = this.decode(series[i]!);
    return out;
  }

  /**
   * Decodes every series of a batch into columns, one row per sample, for
   * `MetricStore.writeColumns`: no object per series, and each row's label set is the
   * interned frozen array, so the store resolves it by identity. Throws
   * `MalformedSeriesError` also for a series with more or fewer values than timestamps.
   */
  decodeColumns(series: readonly Uint8Array[]): SampleColumns {
    const sc = this.#scanner;
    // Batches mostly carry one sample per series: sized for that, grown when not.
    let cap = Math.max(series.length, 1);
    let labels: Labels[] = new Array(cap);
    let ts = new Float64Array(cap);
    let vs = new Float64Array(cap);
    let n = 0;
    for (let i = 0; i < series.length; i++) {
      const buf = series[i]!;
      sc.scan(buf, true);
      const k = sc.tsCount;
      if (sc.valueCount !== k) throw new MalformedSeriesError(`series ${i} has ${sc.valueCount} values for ${k} timestamps`);
      if (k === 0) continue;
      const set = this.#labelsOf(buf);
      if (n + k > cap) {
        cap = Math.max(cap * 2, n + k);
        const ts2 = new Float64Array(cap);
        const vs2 = new Float64Array(cap);
        ts2.set(ts.subarray(0, n));
        vs2.set(vs.subarray(0, n));
        ts = ts2;
        vs = vs2;
        labels = labels.slice(0, n);
      }
      for (let j = 0; j < k; j++) {
        labels[n] = set;
        ts[n] = sc.ts[j]!;
        vs[n] = sc.values[j]!;
        n++;
      }
    }
    return { rowCount: n, labels, timestampsMs: ts, values: vs };
  }

  /** The interned label set of the series just scanned from `buf`. */
  #labelsOf(buf: Uint8Array): Labels {
    const sc = this.#scanner;
    const { labelsStart: start, labelsEnd: end } = sc;
    return start === end
      ? EMPTY
      : sc.scattered
        ? Object.freeze(readLabels(buf, 0, buf.length, frozenLabel))
        : (this.#interned.find(buf, start, end) ?? this.#interned.add(buf, start, end, Object.freeze(readLabels(buf, start, end, frozenLabel))));
  }

  /** Decodes one encoded `telemesh.common.v1.Series`. */
  decode(buf: Uint8Array): SeriesSamples {
    const sc = this.#scanner;
    sc.scan(buf, true);
    const labels = this.#labelsOf(buf);
    // Copied by push, not slice: slicing the scanner's grown arrays measured about ten
    // times slower for the one or few samples a series carries.
    const timestampsMs: number[] = [];
    const values: number[] = [];
    for (let j = 0; j < sc.tsCount; j++) timestampsMs.push(sc.ts[j]!);
    for (let j = 0; j < sc.valueCount; j++) values.push(sc.values[j]!);
    // Frozen: the store may then keep these arrays instead of copying them.
    return { labels, timestampsMs: Object.freeze(timestampsMs), values: Object.freeze(values) };
  }
}
