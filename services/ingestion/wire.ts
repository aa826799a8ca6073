/**
 * Series kept in their wire encoding from request to bus.
 *
 * Why: decoding a 10 000-series request into generated messages (a message, a label array
 * and label messages per series, a BigInt per timestamp), validating those objects and
 * encoding them again for JetStream made protobuf work and its garbage more than half of
 * ingestion's CPU. Instead IngestService is served through a view of its contract whose
 * `series` fields are `bytes` (the same wire format: length-delimited fields), each series
 * is scanned without building objects, its label set is judged once per distinct encoding
 * (see pipeline.ts), and a series that needs no change is published as the very bytes the
 * agent sent, inside a SampleBatch written through the same kind of view.
 */
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { SeriesSchema, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import type { StreamRequest, WriteRequest } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';

/** A request of `EncodedIngestService` (libs/model): the generated shape, series still encoded. */
export type Encoded<R extends WriteRequest | StreamRequest> = Omit<R, 'series'> & { series: Uint8Array[] };

/** Labels encoded as the field-1 entries of a Series, ready to be spliced into one. */
export function encodeLabelFields(labels: ReadonlyArray<{ readonly name: string; readonly value: string }>): Uint8Array {
  const w = new BinaryWriter();
  for (const l of labels) w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(l.name).tag(2, WireType.LengthDelimited).string(l.value).join();
  return w.finish();
}

/** The values of an encoded Series (only needed when some of its samples are dropped). */
export function readValues(buf: Uint8Array): number[] {
  return fromBinary(SeriesSchema, buf).values;
}

/** Encodes a Series from its pre-encoded labels and the samples to keep. */
export function encodeSeries(labelFields: Uint8Array, ts: readonly number[], values: readonly number[], type: number): Uint8Array {
  const w = new BinaryWriter();
  w.raw(labelFields);
  if (ts.length > 0) {
    w.tag(2, WireType.LengthDelimited).fork();
    for (const t of ts) w.int64(t);
    w.join();
    w.tag(3, WireType.LengthDelimited).fork();
    for (const v of values) w.double(v);
    w.join();
  }
  if (type !== 0) w.tag(4, WireType.Varint).int32(type);
  return w.finish();
}

/** A generated Series, encoded (protocols that build series as messages: OTLP, remote_write, histograms). */
export function encodeSeriesMessage(s: Series): Uint8Array {
  return toBinary(SeriesSchema, s);
}

/** An encoded Series decoded into a message (the rare paths: splitting an oversized series). */
export function decodeSeriesMessage(buf: Uint8Array): Series {
  return fromBinary(SeriesSchema, buf);
}
