/**
 * `telemesh.common.v1.Series` read and written in its wire encoding, without generated
 * messages: the one protobuf reader ingestion (which keeps series encoded from request to
 * bus) and aggregation (which decodes batches straight into the store's model) share.
 *
 * Why: decoding a 10 000-series batch through the generated schema builds a message, a
 * label array and label messages per series and a BigInt per timestamp; at ingest rates
 * that garbage was most of both services' CPU. Here a series is scanned into numbers,
 * and a label set is recognised by its encoded bytes (see {@link EncodedLabelTable}), so
 * the work per label set is done once per distinct set, not once per series.
 */
import { clone, createFileRegistry, type DescFile, type DescMessage, type DescService, type Registry } from '@bufbuild/protobuf';
import { FieldDescriptorProto_Type, FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { file_telemesh_events_v1_events, SampleBatchSchema } from '../contracts/telemesh/events/v1/events_pb.js';
import { file_telemesh_ingest_v1_ingest_service, IngestService } from '../contracts/telemesh/ingest/v1/ingest_service_pb.js';

/** Bytes that are not a valid encoded message (or hold text that is not UTF-8). */
export class MalformedSeriesError extends Error {
  override readonly name = 'MalformedSeriesError';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Scratch for reading little-endian doubles without a DataView per buffer. */
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A protobuf wire reader over `buf[pos, end)`, numbers only (no BigInt); reusable through
 * {@link reset}. Every read checks the bound and throws {@link MalformedSeriesError}.
 */
export class WireReader {
  pos = 0;
  end = 0;
  buf: Uint8Array = new Uint8Array(0);

  reset(buf: Uint8Array, start: number, end: number): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    return this;
  }

  /** Throws unless `end` lies within the part being read. */
  check(end: number): void {
    if (end > this.end) throw new MalformedSeriesError('field runs past the end of the message');
  }

  /** An unsigned varint up to 2^53 (lengths, tags). */
  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new MalformedSeriesError('truncated varint');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new MalformedSeriesError('varint longer than 10 bytes');
  }

  /**
   * An int64 varint as a number, as `Number(bigint)` would give it. Millisecond timestamps
   * take at most 7 bytes and are read with plain arithmetic; longer ones (negative or past
   * 2^49) take the exact BigInt route.
   */
  int64(): number {
    const start = this.pos;
    const n = this.varint();
    if (this.pos - start <= 7) return n;
    let big = 0n;
    for (let i = this.pos - 1; i >= start; i--) big = (big << 7n) | BigInt(this.buf[i]! & 0x7f);
    return Number(BigInt.asIntN(64, big));
  }

  double(): number {
    this.check(this.pos + 8);
    const b = this.buf;
    const p = this.pos;
    if (littleEndian) for (let i = 0; i < 8; i++) f64Bytes[i] = b[p + i]!;
    else for (let i = 0; i < 8; i++) f64Bytes[7 - i] = b[p + i]!;
    this.pos = p + 8;
    return f64[0]!;
  }

  /** A length-delimited UTF-8 string; invalid UTF-8 is malformed. */
  string(): string {
    const len = this.varint();
    const end = this.pos + len;
    this.check(end);
    let s: string;
    try {
      s = utf8.decode(this.buf.subarray(this.pos, end));
    } catch (err) {
      throw new MalformedSeriesError('text is not valid UTF-8', { cause: err });
    }
    this.pos = end;
    return s;
  }

  skip(n: number): void {
    this.check(this.pos + n);
    this.pos += n;
  }

  /** Skips the value of a field of wire type `wt` (groups are not supported). */
  skipField(wt: number): void {
    switch (wt) {
      case 0:
        this.varint();
        return;
      case 1:
        this.skip(8);
        return;
      case 2:
        this.skip(this.varint());
        return;
      case 5:
        this.skip(4);
        return;
      default:
        throw new MalformedSeriesError(`unsupported wire type ${wt}`);
    }
  }
}

/**
 * Scans one encoded `Series` without allocating per sample. After {@link scan}: where its
 * labels are, its timestamps (as numbers, in `ts[0..tsCount)`), its values when asked for
 * (`values[0..valueCount)`), how many values it has and its metric type. The arrays are
 * reused by the next scan: copy what must outlive it.
 */
export class SeriesScanner {
  labelsStart = 0;
  labelsEnd = 0;
  /** Label fields are interleaved with other fields (no encoder we know does this). */
  scattered = false;
  readonly ts: number[] = [];
  tsCount = 0;
  readonly values: number[] = [];
  valueCount = 0;
  type = 0;
  readonly #r = new WireReader();

  /** Scans `buf`; with `withValues` the values are read too, else only counted. */
  scan(buf: Uint8Array, withValues = false): void {
    const r = this.#r.reset(buf, 0, buf.length);
    this.labelsStart = -1;
    this.labelsEnd = -1;
    this.scattered = false;
    this.tsCount = 0;
    this.valueCount = 0;
    this.type = 0;
    while (r.pos < r.end) {
      const at = r.pos;
      const tag = r.varint();
      const no = Math.floor(tag / 8);
      const wt = tag & 7;
      if (no === 1 && wt === 2) {
        r.skip(r.varint());
        // Encoders write repeated fields together; a split label list is still read right.
        if (this.labelsStart < 0) this.labelsStart = at;
        else if (this.labelsEnd !== at) this.scattered = true;
        this.labelsEnd = r.pos;
      } else if (no === 2 && wt === 2) {
        const len = r.varint();
        const end = r.pos + len;
        r.check(end);
        while (r.pos < end) this.#pushTs(r.int64());
        if (r.pos !== end) throw new MalformedSeriesError('packed timestamps overrun');
      } else if (no === 2 && wt === 0) {
        this.#pushTs(r.int64());
      } else if (no === 3 && wt === 2) {
        const len = r.varint();
        if (len % 8 !== 0) throw new MalformedSeriesError('packed values of a length not a multiple of 8');
        if (withValues) {
          const end = r.pos + len;
          r.check(end);
          while (r.pos < end) this.#pushValue(r.double());
        } else {
          r.skip(len);
          this.valueCount += len / 8;
        }
      } else if (no === 3 && wt === 1) {
        if (withValues) this.#pushValue(r.double());
        else {
          r.skip(8);
          this.valueCount++;
        }
      } else if (no === 4 && wt === 0) {
        this.type = r.varint() | 0;
      } else {
        r.skipField(wt);
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

  #pushValue(v: number): void {
    if (this.valueCount < this.values.length) this.values[this.valueCount] = v;
    else this.values.push(v);
    this.valueCount++;
  }
}

/**
 * The labels encoded among `buf[start, end)` (the field-1 entries of a Series; other
 * fields are skipped), each built by `make`. Throws {@link MalformedSeriesError} on bad
 * bytes or text that is not UTF-8.
 */
export function readLabels<L>(buf: Uint8Array, start: number, end: number, make: (name: string, value: string) => L): L[] {
  const r = new WireReader().reset(buf, start, end);
  const out: L[] = [];
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag !== 0x0a) {
      r.skipField(tag & 7);
      continue;
    }
    const llen = r.varint();
    const lend = r.pos + llen;
    r.check(lend);
    const outer = r.end;
    r.end = lend;
    let name = '';
    let value = '';
    while (r.pos < lend) {
      const t = r.varint();
      if (t === 0x0a) name = r.string();
      else if (t === 0x12) value = r.string();
      else r.skipField(t & 7);
    }
    r.end = outer;
    out.push(make(name, value));
  }
  return out;
}

interface TableEntry<T> {
  /** Where the encoded labels are in the table's slab. */
  readonly at: number;
  readonly len: number;
  readonly value: T;
  /** Another label set with the same hash. */
  readonly next: TableEntry<T> | undefined;
  /** The entry looked up right after this one last time: the likely next one. */
  follow: TableEntry<T> | undefined;
}

/**
 * What a service derived from an encoded label set, found again by the bytes: a hash of
 * them, confirmed byte for byte, so a series seen before costs a hash and a compare and
 * no key string. Bounded: past `max` entries the table starts over (each set then costs
 * one full derivation again). Keeps a copy of the bytes, never a view of a request: all
 * copies in one slab, since a small array per entry (each with its own backing store)
 * made lookups miss the cache and loaded the garbage collector.
 */
export class EncodedLabelTable<T> {
  readonly #map = new Map<number, TableEntry<T>>();
  readonly #max: number;
  #count = 0;
  #slab = new Uint8Array(1 << 16);
  #slabView = new DataView(this.#slab.buffer);
  #used = 0;
  // A view of the memory the last lookup read: series of one request share it, so this is
  // one DataView per request rather than per series. DataView reads four bytes in one
  // load; assembling them from single bytes made hashing and comparing twice as slow
  // (measured 67 against 36 ns for a 97-byte label set).
  #memory: ArrayBufferLike | undefined;
  #memoryView: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));
  // The entry the last lookup found (or added). Agents send their series in the same
  // order batch after batch, so the entry found after this one last time is tried first,
  // confirmed byte for byte like any other: a series in its usual place then costs a
  // compare, without hashing it or probing the map.
  #last: TableEntry<T> | undefined;

  constructor(max: number) {
    this.#max = max;
  }

  /** Entries held now. */
  get size(): number {
    return this.#count;
  }

  /** A DataView of `buf`'s memory; `buf[i]` is at `buf.byteOffset + i` in it. */
  #view(buf: Uint8Array): DataView {
    if (buf.buffer !== this.#memory) {
      this.#memory = buf.buffer;
      this.#memoryView = new DataView(buf.buffer);
    }
    return this.#memoryView;
  }

  /** The value remembered for the labels `buf[start, end)`, if any. */
  find(buf: Uint8Array, start: number, end: number): T | undefined {
    const view = this.#view(buf);
    const from = buf.byteOffset + start;
    const len = end - start;
    const guess = this.#last?.follow;
    if (guess !== undefined && this.#same(guess, view, from, len)) {
      this.#last = guess;
      return guess.value;
    }
    for (let e = this.#map.get(hashView(view, from, from + len)); e !== undefined; e = e.next) {
      if (this.#same(e, view, from, len)) {
        if (this.#last !== undefined) this.#last.follow = e;
        this.#last = e;
        return e.value;
      }
    }
    return undefined;
  }

  /** Whether entry `e` holds the `len` bytes at `from` of `view`. */
  #same(e: TableEntry<T>, view: DataView<ArrayBufferLike>, from: number, len: number): boolean {
    if (e.len !== len) return false;
    const slab = this.#slabView;
    const at = e.at;
    // Four bytes a step, as in `hash`: the bytes almost always match in full.
    let k = 0;
    for (; k + 4 <= len; k += 4) if (slab.getInt32(at + k, true) !== view.getInt32(from + k, true)) return false;
    for (; k < len; k++) if (slab.getUint8(at + k) !== view.getUint8(from + k)) return false;
    return true;
  }

  /**
   * Remembers `value` for the labels `buf[start, end)` (after a {@link find} miss: a hit
   * is the common case, so a miss hashes twice rather than every call allocating).
   */
  add(buf: Uint8Array, start: number, end: number, value: T): T {
    const from = buf.byteOffset + start;
    const h = hashView(this.#view(buf), from, from + (end - start));
    if (this.#count >= this.#max) {
      // Every old entry becomes unreachable (`#last` was the only way in from outside the
      // map), so none is compared against slab bytes reused below.
      this.#map.clear();
      this.#last = undefined;
      this.#count = 0;
      this.#used = 0;
    }
    const len = end - start;
    if (this.#used + len > this.#slab.length) {
      const grown = new Uint8Array(Math.max(this.#slab.length * 2, this.#used + len));
      grown.set(this.#slab.subarray(0, this.#used));
      this.#slab = grown;
      this.#slabView = new DataView(grown.buffer);
    }
    this.#slab.set(buf.subarray(start, end), this.#used);
    const e: TableEntry<T> = { at: this.#used, len, value, next: this.#map.get(h), follow: undefined };
    this.#map.set(h, e);
    if (this.#last !== undefined) this.#last.follow = e;
    this.#last = e;
    this.#used += len;
    this.#count++;
    return value;
  }
}

/**
 * An FNV-1a-style hash of bytes `[start, end)` of `view`, four bytes (little-endian) per
 * step: byte-at-a-time FNV is a chain of dependent multiplies and cost about six times as
 * much on 60-byte label sets, the most frequent work of both services. Cut to 30 bits so
 * the Map key is a small integer. Collisions only cost a byte comparison (entries are
 * chained).
 */
function hashView(view: DataView, start: number, end: number): number {
  let h = 0x811c9dc5 ^ (end - start);
  let i = start;
  for (; i + 4 <= end; i += 4) h = Math.imul(h ^ view.getInt32(i, true), 0x01000193);
  for (; i < end; i++) h = Math.imul(h ^ view.getUint8(i), 0x01000193);
  h ^= h >>> 15;
  return Math.imul(h, 0x2c1b3c6d) >>> 2;
}

/** Bytes of `n` (a whole number below 2^53) as a varint. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Writes `n` (a whole number below 2^53) as a varint at `buf[at]`; returns the position after it. */
export function writeVarint(buf: Uint8Array, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

/** Files `file` imports, transitively, by name (what a registry built from a copy needs). */
function dependenciesOf(file: DescFile): Map<string, DescFile> {
  const out = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    for (const d of f.dependencies) {
      if (out.has(d.proto.name)) continue;
      out.set(d.proto.name, d);
      visit(d);
    }
  };
  visit(file);
  return out;
}

/**
 * A registry holding `file` with the `series` field of the named messages read as raw
 * bytes. The wire format is the same (a length-delimited field), so such a view reads and
 * writes exactly what the generated schema does, leaving each series encoded.
 */
export function withEncodedSeries(file: DescFile, messages: readonly string[]): Registry {
  const copy = clone(FileDescriptorProtoSchema, file.proto);
  for (const name of messages) {
    const field = copy.messageType.find((m) => m.name === name)?.field.find((f) => f.name === 'series');
    if (field === undefined) throw new Error(`${copy.package}.${name} has no field series`);
    field.type = FieldDescriptorProto_Type.BYTES;
    field.typeName = '';
  }
  const deps = dependenciesOf(file);
  return createFileRegistry(copy, (name) => deps.get(name));
}

/** `telemesh.events.v1.SampleBatch` whose series are read and written as bytes. */
export const SampleBatchFrameSchema: DescMessage = withEncodedSeries(file_telemesh_events_v1_events, ['SampleBatch']).getMessage(SampleBatchSchema.typeName)!;

/** What {@link SampleBatchFrameSchema} encodes and decodes. */
export interface SampleBatchFrame {
  readonly tenant: string;
  readonly batchId: string;
  /** Each series encoded as `telemesh.common.v1.Series`. */
  readonly series: Uint8Array[];
  readonly receivedAtMs: bigint;
  readonly startTimesMs: bigint[];
}

/**
 * `telemesh.ingest.v1.IngestService` whose Write and Stream requests carry their series
 * encoded: what ingestion serves to binary clients (it forwards series as received) and
 * what the agent SDK calls (it encodes each series once, when it is added). JSON clients
 * send series as objects, where this view would expect base64: their calls are served
 * through the generated descriptor (see the ingestion module and
 * `RpcServer.registerService`).
 */
export const EncodedIngestService: DescService = withEncodedSeries(file_telemesh_ingest_v1_ingest_service, ['WriteRequest', 'StreamRequest']).getService(IngestService.typeName)!;
