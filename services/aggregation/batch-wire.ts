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
import { EncodedLabelTable, readLabels, SeriesScanner, type Label, type Labels, type SeriesSamples } from '../../libs/model/index.js';

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

  /** Decodes one encoded `telemesh.common.v1.Series`. */
  decode(buf: Uint8Array): SeriesSamples {
    const sc = this.#scanner;
    sc.scan(buf, true);
    const { labelsStart: start, labelsEnd: end } = sc;
    const labels =
      start === end
        ? EMPTY
        : sc.scattered
          ? Object.freeze(readLabels(buf, 0, buf.length, frozenLabel))
          : (this.#interned.find(buf, start, end) ?? this.#interned.add(buf, start, end, Object.freeze(readLabels(buf, start, end, frozenLabel))));
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
