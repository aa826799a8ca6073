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
import { clone, create, createFileRegistry, fromBinary, toBinary, type DescMessage, type DescService } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { FieldDescriptorProto_Type, FileDescriptorProtoSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { file_telemesh_common_v1_common, LabelSchema, SeriesSchema, type Label, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { file_telemesh_events_v1_events, SampleBatchSchema } from '../../libs/contracts/telemesh/events/v1/events_pb.js';
import { file_telemesh_ingest_v1_ingest } from '../../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import { file_telemesh_ingest_v1_ingest_service, IngestService, type StreamRequest, type WriteRequest } from '../../libs/contracts/telemesh/ingest/v1/ingest_service_pb.js';

/** A contract file with the `series` field of the named messages read as raw bytes. */
function withEncodedSeries(file: FileDescriptorProto, messages: readonly string[]): FileDescriptorProto {
  const copy = clone(FileDescriptorProtoSchema, file);
  for (const name of messages) {
    const field = copy.messageType.find((m) => m.name === name)?.field.find((f) => f.name === 'series');
    if (field === undefined) throw new Error(`${copy.package}.${name} has no field series`);
    field.type = FieldDescriptorProto_Type.BYTES;
    field.typeName = '';
  }
  return copy;
}

const DEPENDENCIES = new Map([file_telemesh_common_v1_common, file_telemesh_ingest_v1_ingest].map((f) => [f.proto.name, f]));

const streamEncoded: DescService = createFileRegistry(withEncodedSeries(file_telemesh_ingest_v1_ingest_service.proto, ['StreamRequest']), (name) =>
  DEPENDENCIES.get(name),
).getService(IngestService.typeName)!;

/**
 * `telemesh.ingest.v1.IngestService` whose Stream requests carry their series encoded.
 * Write keeps the generated descriptor: unary writes are also sent as Connect JSON, where
 * a `bytes` view would expect base64 instead of series objects; the high-rate agents'
 * path is Stream over gRPC.
 */
export const EncodedIngestService: DescService = {
  ...streamEncoded,
  methods: streamEncoded.methods.map((m) => (m.localName === 'write' ? IngestService.method.write : m)),
  method: { ...streamEncoded.method, write: IngestService.method.write },
};

/** `telemesh.events.v1.SampleBatch` whose series are written as given bytes. */
export const SampleBatchFrameSchema: DescMessage = createFileRegistry(withEncodedSeries(file_telemesh_events_v1_events.proto, ['SampleBatch']), (name) =>
  DEPENDENCIES.get(name),
).getMessage(SampleBatchSchema.typeName)!;

/** A request of {@link EncodedIngestService}: the generated shape, series still encoded. */
export type Encoded<R extends WriteRequest | StreamRequest> = Omit<R, 'series'> & { series: Uint8Array[] };

/** What {@link SampleBatchFrameSchema} encodes. */
export interface SampleBatchFrame {
  readonly tenant: string;
  readonly batchId: string;
  readonly series: Uint8Array[];
  readonly receivedAtMs: bigint;
  readonly startTimesMs: bigint[];
}

/** Bytes that are not a valid `Series` (or hold text that is not UTF-8). */
export class MalformedSeriesError extends Error {
  override readonly name = 'MalformedSeriesError';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Scans one encoded `Series` without allocating per sample. After {@link scan}: where its
 * labels are, its timestamps (as numbers, in `ts[0..tsCount)`), how many values it has and
 * its metric type. One scanner is reused for every series (ingestion is synchronous here).
 */
export class SeriesScanner {
  labelsStart = 0;
  labelsEnd = 0;
  /** Label fields are interleaved with other fields (no encoder we know does this). */
  scattered = false;
  ts: number[] = [];
  tsCount = 0;
  valueCount = 0;
  type = 0;
  #buf: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #end = 0;

  scan(buf: Uint8Array): void {
    this.#buf = buf;
    this.#pos = 0;
    this.#end = buf.length;
    this.labelsStart = -1;
    this.labelsEnd = -1;
    this.scattered = false;
    this.tsCount = 0;
    this.valueCount = 0;
    this.type = 0;
    while (this.#pos < this.#end) {
      const at = this.#pos;
      const tag = this.#varint();
      const no = Math.floor(tag / 8);
      const wt = tag & 7;
      if (no === 1 && wt === 2) {
        this.#skip(this.#varint());
        if (this.labelsStart < 0) this.labelsStart = at;
        else if (this.labelsEnd !== at) this.scattered = true;
        this.labelsEnd = this.#pos;
      } else if (no === 2 && wt === 2) {
        const end = this.#limit(this.#varint());
        while (this.#pos < end) this.#pushTs(this.#int64());
        if (this.#pos !== end) throw new MalformedSeriesError('packed timestamps overrun');
      } else if (no === 2 && wt === 0) {
        this.#pushTs(this.#int64());
      } else if (no === 3 && wt === 2) {
        const len = this.#varint();
        if (len % 8 !== 0) throw new MalformedSeriesError('packed values of a length not a multiple of 8');
        this.#skip(len);
        this.valueCount += len / 8;
      } else if (no === 3 && wt === 1) {
        this.#skip(8);
        this.valueCount++;
      } else if (no === 4 && wt === 0) {
        this.type = this.#varint() | 0;
      } else {
        this.#skipField(wt);
      }
    }
    if (this.labelsStart < 0) {
      this.labelsStart = 0;
      this.labelsEnd = 0;
    }
  }

  #pushTs(t: number): void {
    if (this.tsCount < this.ts.length) this.ts[this.tsCount] = t;
    else this.ts.push(t);
    this.tsCount++;
  }

  #limit(len: number): number {
    const end = this.#pos + len;
    if (end > this.#end) throw new MalformedSeriesError('field runs past the end of the series');
    return end;
  }

  #skip(n: number): void {
    this.#pos = this.#limit(n);
  }

  #varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.#pos >= this.#end) throw new MalformedSeriesError('truncated varint');
      const b = this.#buf[this.#pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new MalformedSeriesError('varint longer than 10 bytes');
  }

  /** An int64 as `Number(bigint)` gives it; timestamps (≤ 7 bytes) skip BigInt. */
  #int64(): number {
    const start = this.#pos;
    const n = this.#varint();
    if (this.#pos - start <= 7) return n;
    let big = 0n;
    for (let i = this.#pos - 1; i >= start; i--) big = (big << 7n) | BigInt(this.#buf[i]! & 0x7f);
    return Number(BigInt.asIntN(64, big));
  }

  #skipField(wt: number): void {
    if (wt === 0) this.#varint();
    else if (wt === 1) this.#skip(8);
    else if (wt === 2) this.#skip(this.#varint());
    else if (wt === 5) this.#skip(4);
    else throw new MalformedSeriesError(`unsupported wire type ${wt}`);
  }
}

/** The labels encoded in `buf[start, end)` (field-1 entries of a Series). Throws on bad UTF-8. */
export function readLabels(buf: Uint8Array, start: number, end: number): Label[] {
  const out: Label[] = [];
  let pos = start;
  const varint = () => {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw new MalformedSeriesError('truncated varint');
      const b = buf[pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new MalformedSeriesError('varint longer than 10 bytes');
  };
  const text = (len: number) => {
    if (pos + len > end) throw new MalformedSeriesError('label runs past its end');
    try {
      return utf8.decode(buf.subarray(pos, (pos += len)));
    } catch (err) {
      throw new MalformedSeriesError('label text is not valid UTF-8', { cause: err });
    }
  };
  while (pos < end) {
    if (varint() !== 0x0a) throw new MalformedSeriesError('unexpected field among labels');
    const llen = varint();
    const lend = pos + llen;
    if (lend > end) throw new MalformedSeriesError('label runs past the series');
    let name = '';
    let value = '';
    while (pos < lend) {
      const tag = varint();
      if (tag === 0x0a) name = text(varint());
      else if (tag === 0x12) value = text(varint());
      else {
        // An unknown field inside a label: skip it as protobuf does.
        const wt = tag & 7;
        if (wt === 0) varint();
        else if (wt === 1) pos += 8;
        else if (wt === 2) pos += varint();
        else if (wt === 5) pos += 4;
        else throw new MalformedSeriesError(`unsupported wire type ${wt}`);
      }
    }
    if (pos !== lend) throw new MalformedSeriesError('label overruns its length');
    out.push(create(LabelSchema, { name, value }));
  }
  return out;
}

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
