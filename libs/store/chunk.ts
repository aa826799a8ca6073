/**
 * The compact encoding of one series' samples over a time span ("sealed chunk"), used by the
 * DuckDB store for samples older than a couple of hours.
 *
 * Why not leave it to DuckDB's column compression: measured on counters, noisy gauges and
 * histogram buckets, the row-per-sample table takes about 9.5 bytes per sample (8 sorted),
 * because ALP and bit-packing see absolute values and absolute timestamps. Encoding
 * differences instead — delta-of-delta timestamps (a fixed scrape interval with
 * millisecond jitter needs 2–3 bits) and deltas of decimal-scaled values (a counter's
 * increments, a gauge's steps) — packed at a fixed bit width per chunk, takes about 1.5.
 *
 * Layout: version byte, sample count (varint), then the timestamps and the values, each
 * as a mode byte followed by its data:
 * - timestamps, mode 1: first timestamp and first delta (zig-zag varints), then the
 *   delta-of-deltas zig-zagged and bit-packed at width `w` (one byte); mode 0: float64s.
 * - values, mode 1: decimal exponent `k` (byte), first scaled value (zig-zag varint), then
 *   the deltas of `round(v·10^k)` zig-zagged and bit-packed at width `w`; used only when
 *   every value round-trips exactly through that scaling (so NaN, ±Inf and -0 use mode 0);
 *   mode 0: float64s. Decoding is exact in every mode.
 */

const VERSION = 1;
/** Largest magnitude a scaled or delta-coded integer may have: zig-zag stays a safe integer. */
const LIMIT = 2 ** 50;

/** Encodes samples (in the order they should be read back) into a chunk. */
export function encodeChunk(timestampsMs: readonly number[], values: readonly number[]): Uint8Array {
  const w = new Writer();
  w.byte(VERSION);
  w.varint(timestampsMs.length);
  encodeTimes(w, timestampsMs);
  encodeValues(w, values);
  return w.finish();
}

/** Decodes a chunk written by {@link encodeChunk}. */
export function decodeChunk(bytes: Uint8Array): { timestampsMs: number[]; values: number[] } {
  const r = new Reader(bytes);
  if (r.byte() !== VERSION) throw new RangeError('unknown chunk version');
  const n = r.varint();
  const timestampsMs = decodeTimes(r, n);
  const values = decodeValues(r, n);
  return { timestampsMs, values };
}

function encodeTimes(w: Writer, ts: readonly number[]): void {
  const n = ts.length;
  const dods: number[] = [];
  let ok = n === 0 || Math.abs(ts[0]) < LIMIT;
  for (let i = 2; ok && i < n; i++) {
    const dod = ts[i] - 2 * ts[i - 1] + ts[i - 2];
    if (!(Math.abs(dod) < LIMIT)) ok = false;
    dods.push(zigzag(dod));
  }
  if (ok && n > 1 && !(Math.abs(ts[1] - ts[0]) < LIMIT)) ok = false;
  if (!ok) {
    w.byte(0);
    for (const t of ts) w.float64(t);
    return;
  }
  w.byte(1);
  if (n === 0) return;
  w.varint(zigzag(ts[0]));
  if (n === 1) return;
  w.varint(zigzag(ts[1] - ts[0]));
  w.packed(dods);
}

function decodeTimes(r: Reader, n: number): number[] {
  const mode = r.byte();
  const out: number[] = [];
  if (mode === 0) {
    for (let i = 0; i < n; i++) out.push(r.float64());
    return out;
  }
  if (mode !== 1) throw new RangeError(`unknown timestamp mode ${mode}`);
  if (n === 0) return out;
  out.push(unzigzag(r.varint()));
  if (n === 1) return out;
  let delta = unzigzag(r.varint());
  out.push(out[0] + delta);
  for (const z of r.packed(n - 2)) {
    delta += unzigzag(z);
    out.push(out[out.length - 1] + delta);
  }
  return out;
}

/** The smallest decimal exponent (0–6) at which every value is an exact scaled integer. */
function decimalExponent(vs: readonly number[]): number | undefined {
  outer: for (let k = 0; k <= 6; k++) {
    const scale = 10 ** k;
    for (const v of vs) {
      if (!Number.isFinite(v) || Object.is(v, -0)) return undefined;
      const s = Math.round(v * scale);
      if (!(Math.abs(s) < LIMIT / 2) || s / scale !== v) continue outer;
    }
    return k;
  }
  return undefined;
}

function encodeValues(w: Writer, vs: readonly number[]): void {
  const k = vs.length === 0 ? 0 : decimalExponent(vs);
  if (k === undefined) {
    w.byte(0);
    for (const v of vs) w.float64(v);
    return;
  }
  w.byte(1);
  w.byte(k);
  if (vs.length === 0) return;
  const scale = 10 ** k;
  let prev = Math.round(vs[0] * scale);
  w.varint(zigzag(prev));
  const deltas: number[] = [];
  for (let i = 1; i < vs.length; i++) {
    const s = Math.round(vs[i] * scale);
    deltas.push(zigzag(s - prev));
    prev = s;
  }
  w.packed(deltas);
}

function decodeValues(r: Reader, n: number): number[] {
  const mode = r.byte();
  const out: number[] = [];
  if (mode === 0) {
    for (let i = 0; i < n; i++) out.push(r.float64());
    return out;
  }
  if (mode !== 1) throw new RangeError(`unknown value mode ${mode}`);
  const scale = 10 ** r.byte();
  if (n === 0) return out;
  let s = unzigzag(r.varint());
  out.push(s / scale);
  for (const z of r.packed(n - 1)) {
    s += unzigzag(z);
    out.push(s / scale);
  }
  return out;
}

export function zigzag(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

export function unzigzag(n: number): number {
  return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
}

/** Growable byte buffer with the varint, float64 and bit-packing primitives the chunk formats share. */
export class Writer {
  private buf = new Uint8Array(256);
  private len = 0;

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.len++] = b;
  }

  varint(n: number): void {
    let v = n;
    while (v >= 0x80) {
      this.byte((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.byte(v);
  }

  float64(x: number): void {
    this.room(8);
    new DataView(this.buf.buffer, this.buf.byteOffset).setFloat64(this.len, x, true);
    this.len += 8;
  }

  /** Width byte, then every value in `width` bits, least significant bit first. */
  packed(values: readonly number[]): void {
    let max = 0;
    for (const v of values) if (v > max) max = v;
    let width = 0;
    while (2 ** width <= max) width++;
    this.byte(width);
    if (width === 0) return;
    const bytes = Math.ceil((values.length * width) / 8);
    this.room(bytes);
    const start = this.len;
    this.buf.fill(0, start, start + bytes);
    let bit = 0;
    for (const v of values) {
      let rest = v;
      // 24 bits at a time: integer bit operations are exact below 2^31.
      for (let done = 0; done < width; done += 24) {
        const take = Math.min(24, width - done);
        let part = rest % 2 ** take;
        rest = Math.floor(rest / 2 ** take);
        for (let b = 0; b < take; ) {
          const at = start + (bit >> 3);
          const off = bit & 7;
          const n = Math.min(8 - off, take - b);
          this.buf[at] |= (part & ((1 << n) - 1)) << off;
          part >>>= n;
          bit += n;
          b += n;
        }
      }
    }
    this.len = start + bytes;
  }

  /**
   * Signed integers as their minimum (zig-zag varint) and their distances from it, packed:
   * frame of reference, so values that all lie in a narrow band far from zero (a scrape
   * interval with jitter, a counter's increments) take only the band's width.
   */
  offsetPacked(values: readonly number[]): void {
    let min = Infinity;
    for (const v of values) if (v < min) min = v;
    if (values.length === 0) min = 0;
    this.varint(zigzag(min));
    this.packed(values.map((v) => v - min));
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Reads what {@link Writer} wrote; throws `RangeError` when the bytes end early. */
export class Reader {
  private pos = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  byte(): number {
    if (this.pos >= this.buf.length) throw new RangeError('truncated chunk');
    return this.buf[this.pos++];
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 0x80;
    }
  }

  float64(): number {
    if (this.pos + 8 > this.buf.length) throw new RangeError('truncated chunk');
    const x = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return x;
  }

  /** Inverse of {@link Writer.offsetPacked}. */
  offsetPacked(count: number): number[] {
    const min = unzigzag(this.varint());
    const out = this.packed(count);
    for (let i = 0; i < count; i++) out[i] += min;
    return out;
  }

  /** Whether every byte has been read. */
  get done(): boolean {
    return this.pos === this.buf.length;
  }

  packed(count: number): number[] {
    const width = this.byte();
    const out: number[] = [];
    if (width === 0) {
      for (let i = 0; i < count; i++) out.push(0);
      return out;
    }
    const start = this.pos;
    const bytes = Math.ceil((count * width) / 8);
    if (start + bytes > this.buf.length) throw new RangeError('truncated chunk');
    let bit = 0;
    for (let i = 0; i < count; i++) {
      let v = 0;
      for (let done = 0; done < width; done += 24) {
        const take = Math.min(24, width - done);
        let part = 0;
        for (let b = 0; b < take; ) {
          const at = start + (bit >> 3);
          const off = bit & 7;
          const n = Math.min(8 - off, take - b);
          part |= ((this.buf[at] >> off) & ((1 << n) - 1)) << b;
          bit += n;
          b += n;
        }
        v += part * 2 ** done;
      }
      out.push(v);
    }
    this.pos = start + bytes;
    return out;
  }
}
