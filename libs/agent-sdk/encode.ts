/**
 * Series encoded by the SDK as soon as they are added (`telemesh.common.v1.Series` wire
 * format), so a batch is a list of byte strings from then on: nothing is encoded twice on
 * a replay, and no message objects or BigInts are made per sample.
 *
 * Why: building a `Series` message per series, copying it, and letting the transport
 * encode every label string again for every batch was most of the SDK's CPU per sample.
 * Agents send the same label sets batch after batch, so the encoding of a label set is
 * remembered by the identity of its array (see {@link SeriesEncoder.labelFields}).
 */
import { varintSize, writeVarint } from '../model/index.js';

/** A label as callers give it (a generated `Label` or its init shape). */
export interface LabelInput {
  readonly name?: string;
  readonly value?: string;
}

/** A series as {@link SeriesEncoder} reads it; timestamps may be numbers or bigints (Unix ms). */
export interface SeriesInput {
  readonly labels?: readonly LabelInput[];
  readonly timestampsMs?: readonly (number | bigint)[];
  readonly values?: readonly number[];
  readonly type?: number;
}

const utf8 = new TextEncoder();
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Encodes series for the wire. Label encodings are remembered per label array, which is
 * why the SDK takes ownership of the arrays it is given: see {@link labelFields}.
 */
export class SeriesEncoder {
  // Weak: a label set the caller stops using is forgotten with its array.
  readonly #labels = new WeakMap<readonly LabelInput[], Uint8Array>();

  /**
   * The labels as Series field-1 entries. The array is frozen, and its labels with it, on
   * first sight: its encoding is remembered by identity, so it must never change
   * afterwards (a caller that tries gets a TypeError in strict mode instead of silently
   * sending stale labels). A different label set needs a different array.
   */
  labelFields(labels: readonly LabelInput[]): Uint8Array {
    const known = this.#labels.get(labels);
    if (known !== undefined) return known;
    const parts: Uint8Array[] = [];
    let size = 0;
    for (const l of labels) {
      Object.freeze(l);
      const name = utf8.encode(l.name ?? '');
      const value = utf8.encode(l.value ?? '');
      const inner = (name.length > 0 ? 1 + varintSize(name.length) + name.length : 0) + (value.length > 0 ? 1 + varintSize(value.length) + value.length : 0);
      const out = new Uint8Array(1 + varintSize(inner) + inner);
      let w = 0;
      out[w++] = 0x0a;
      w = writeVarint(out, w, inner);
      if (name.length > 0) {
        out[w++] = 0x0a;
        w = writeVarint(out, w, name.length);
        out.set(name, w);
        w += name.length;
      }
      if (value.length > 0) {
        out[w++] = 0x12;
        w = writeVarint(out, w, value.length);
        out.set(value, w);
      }
      parts.push(out);
      size += out.length;
    }
    const fields = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      fields.set(p, at);
      at += p.length;
    }
    Object.freeze(labels);
    this.#labels.set(labels, fields);
    return fields;
  }

  /**
   * Encodes `series` into one buffer, returning a view per series (one allocation for the
   * lot). Timestamps and values are read now and not kept. A series whose timestamps and
   * values do not pair up is encoded as given: ingestion rejects that series alone.
   */
  encodeAll(series: readonly SeriesInput[]): Uint8Array[] {
    const n = series.length;
    const labelFields: Uint8Array[] = new Array(n);
    const tsBytes = new Int32Array(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const s = series[i]!;
      const ts = s.timestampsMs ?? EMPTY;
      const vn = s.values?.length ?? 0;
      const lf = (labelFields[i] = this.labelFields(s.labels ?? EMPTY));
      let tb = 0;
      for (let j = 0; j < ts.length; j++) tb += int64Size(ts[j]!);
      tsBytes[i] = tb;
      total += lf.length + (tb > 0 ? 1 + varintSize(tb) + tb : 0) + (vn > 0 ? 1 + varintSize(8 * vn) + 8 * vn : 0) + (s.type !== undefined && s.type > 0 ? 1 + varintSize(s.type) : 0);
    }
    const buf = new Uint8Array(total);
    const out: Uint8Array[] = new Array(n);
    let w = 0;
    for (let i = 0; i < n; i++) {
      const s = series[i]!;
      const from = w;
      buf.set(labelFields[i]!, w);
      w += labelFields[i]!.length;
      const ts = s.timestampsMs ?? EMPTY;
      if (ts.length > 0) {
        buf[w++] = 0x12;
        w = writeVarint(buf, w, tsBytes[i]!);
        for (let j = 0; j < ts.length; j++) w = writeInt64(buf, w, ts[j]!);
      }
      const values = s.values ?? EMPTY_VALUES;
      if (values.length > 0) {
        buf[w++] = 0x1a;
        w = writeVarint(buf, w, 8 * values.length);
        for (let j = 0; j < values.length; j++) {
          f64[0] = values[j]!;
          if (littleEndian) for (let b = 0; b < 8; b++) buf[w + b] = f64Bytes[b]!;
          else for (let b = 0; b < 8; b++) buf[w + b] = f64Bytes[7 - b]!;
          w += 8;
        }
      }
      if (s.type !== undefined && s.type > 0) {
        buf[w++] = 0x20;
        w = writeVarint(buf, w, s.type);
      }
      out[i] = buf.subarray(from, w);
    }
    return out;
  }
}

const EMPTY: readonly never[] = Object.freeze([]);
const EMPTY_VALUES: readonly number[] = EMPTY;


/** `t` as a number when it is a whole number in [0, 2^53), else -1 (then BigInt is needed). */
function plain(t: number | bigint): number {
  const n = typeof t === 'number' ? t : Number(t);
  return Number.isInteger(n) && n >= 0 && n <= Number.MAX_SAFE_INTEGER ? n : -1;
}

/** Bytes of `t` as an int64 varint; millisecond timestamps need no BigInt. */
function int64Size(t: number | bigint): number {
  const n = plain(t);
  return n >= 0 ? varintSize(n) : bigVarintSize(BigInt.asUintN(64, BigInt(t)));
}

function writeInt64(buf: Uint8Array, at: number, t: number | bigint): number {
  const n = plain(t);
  if (n >= 0) return writeVarint(buf, at, n);
  // Negative (ten bytes, two's complement) or beyond 2^53: rare, so BigInt is fine here.
  // BigInt() of a fractional number throws RangeError, as encoding a message would.
  let u = BigInt.asUintN(64, BigInt(t));
  while (u >= 0x80n) {
    buf[at++] = Number(u & 0x7fn) | 0x80;
    u >>= 7n;
  }
  buf[at++] = Number(u);
  return at;
}

function bigVarintSize(u: bigint): number {
  let size = 1;
  while (u >= 0x80n) {
    u >>= 7n;
    size++;
  }
  return size;
}
