/**
 * The compact encoding of one series' samples over a time span ("sealed chunk"), used by the
 * DuckDB store for samples older than a couple of hours.
 *
 * Why not leave it to DuckDB's column compression: measured on counters, noisy gauges and
 * histogram buckets, the row-per-sample table takes about 9.5 bytes per sample (8 sorted),
 * because ALP and bit-packing see absolute values and absolute timestamps. Encoding
 * differences instead — timestamps off a scrape grid or their deltas (a fixed interval with
 * millisecond jitter needs 2–3 bits) and deltas of decimal-scaled values (a counter's
 * increments, a gauge's steps) — packed in mixed radix per chunk, takes about 1.1.
 *
 * Layout (version 3): version byte, sample count (varint), then the timestamps and the
 * values, each as a mode byte followed by its data:
 * - timestamps: first timestamp (zig-zag varint), then whichever of three forms packs
 *   smallest: offsets from a regular grid (mode 3: the grid step, then each later
 *   timestamp's distance from `first + i·step`), further deltas (mode 1) or delta-of-deltas
 *   (mode 2), the latter two after the first delta. Each is packed in mixed radix
 *   (`Writer.radixPacked`: minimum and range, then runs of digits in base range).
 *   Mode 0: float64s.
 * - values: deltas (mode 1) or delta-of-deltas (mode 2) of `round(v·10^k)` after a
 *   decimal exponent byte `k` and the first scaled value, used only when every value
 *   round-trips exactly through that scaling; otherwise (NaN, ±Inf, -0, values with more
 *   than 6 decimals) each value's bits XOR the previous one's (mode 3, `encodeXor`), or
 *   float64s (mode 0) when that is not smaller.
 * Decoding is exact in every mode. Older versions stay readable: version 1 zig-zagged the
 * time delta-of-deltas and value deltas and packed them at a whole bit width; version 2
 * packed their distances from the minimum at a whole bit width, with no grid mode.
 * Measured on the store benchmark's mix of counters, gauges and histogram buckets: 1.49
 * (v1), 1.30 (v2), 1.09 (v3) bytes per sample; the grid took 15 s ± 2 ms timestamps from
 * 3 bits to 2, mixed radix a counter's increments of 0–99 from 7 to 6.7 and the grid
 * offsets to 1.6.
 */

const VERSION = 3;
/** Column modes: float64s; deltas (version 2: frame of reference); delta-of-deltas (ditto). */
const MODE_FLOAT = 0;
const MODE_DELTA = 1;
const MODE_DOD = 2;
/** Timestamps only (version 3): offsets from a regular grid. */
const MODE_GRID = 3;
/** Values only (version 3): each value's bits XOR the previous one's (see `encodeXor`). */
const MODE_XOR = 3;
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
  const version = r.byte();
  // Version 1 chunks stay readable: files sealed before version 2 are never rewritten.
  if (!(version >= 1 && version <= VERSION)) throw new RangeError('unknown chunk version');
  const n = r.varint();
  const timestampsMs = decodeTimes(r, n, version);
  const values = decodeValues(r, n, version);
  return { timestampsMs, values };
}

function encodeTimes(w: Writer, ts: readonly number[]): void {
  const n = ts.length;
  let ok = n === 0 || Math.abs(ts[0]) < LIMIT;
  const deltas: number[] = [];
  for (let i = 1; ok && i < n; i++) {
    const d = ts[i] - ts[i - 1];
    if (!(Math.abs(d) < LIMIT / 4)) ok = false;
    deltas.push(d);
  }
  if (!ok) {
    w.byte(MODE_FLOAT);
    for (const t of ts) w.float64(t);
    return;
  }
  const dods = differences(deltas);
  const grid = gridOffsets(ts);
  // Whichever packs into the fewest bits: offsets from a regular grid (agents scrape on a
  // ticker, so a 15 s interval with 0–2 ms of jitter is 2 bits of offset), deltas (a
  // steady interval whose phase wanders: one bit less than their differences), or
  // delta-of-deltas (the interval itself changes).
  const bits = [packedBits(deltas.slice(1)), packedBits(dods), grid === undefined ? Infinity : packedBits(grid)];
  const mode = bits[2] < Math.min(bits[0], bits[1]) ? MODE_GRID : bits[0] <= bits[1] ? MODE_DELTA : MODE_DOD;
  w.byte(mode);
  if (n === 0) return;
  w.varint(zigzag(ts[0]));
  if (n === 1) return;
  if (mode === MODE_GRID) {
    w.varint(zigzag(gridStep(ts)));
    w.radixPacked(grid!);
    return;
  }
  w.varint(zigzag(deltas[0]));
  w.radixPacked(mode === MODE_DELTA ? deltas.slice(1) : dods);
}

/** The grid's step: the mean interval, rounded to a whole millisecond. */
function gridStep(ts: readonly number[]): number {
  return Math.round((ts[ts.length - 1] - ts[0]) / (ts.length - 1));
}

/** `ts[i] − (ts[0] + i·step)` for i ≥ 1, or undefined when some offset is not small and exact. */
function gridOffsets(ts: readonly number[]): number[] | undefined {
  if (ts.length < 2) return undefined;
  const step = gridStep(ts);
  const out: number[] = [];
  for (let i = 1; i < ts.length; i++) {
    const r = ts[i] - ts[0] - i * step;
    if (!(Number.isSafeInteger(i * step) && Math.abs(r) < LIMIT / 4)) return undefined;
    out.push(r);
  }
  return out;
}

/** Bits `radixPacked` spends on the values, near enough to choose between forms. */
function packedBits(xs: readonly number[]): number {
  return xs.length * Math.log2(spread(xs) + 1);
}

function decodeTimes(r: Reader, n: number, version: number): number[] {
  const mode = r.byte();
  const out: number[] = [];
  if (mode === MODE_FLOAT) {
    for (let i = 0; i < n; i++) out.push(r.float64());
    return out;
  }
  if (mode !== MODE_DELTA && mode !== MODE_DOD && !(mode === MODE_GRID && version >= 3)) {
    throw new RangeError(`unknown timestamp mode ${mode}`);
  }
  if (n === 0) return out;
  out.push(unzigzag(r.varint()));
  if (n === 1) return out;
  let delta = unzigzag(r.varint());
  if (mode === MODE_GRID) {
    const offsets = unpack(r, n - 1, version);
    for (let i = 1; i < n; i++) out.push(out[0] + i * delta + offsets[i - 1]);
    return out;
  }
  out.push(out[0] + delta);
  if (version === 1) {
    // Version 1: delta-of-deltas, zig-zagged and packed.
    for (const z of r.packed(n - 2)) {
      delta += unzigzag(z);
      out.push(out[out.length - 1] + delta);
    }
    return out;
  }
  const rest = unpack(r, n - 2, version);
  for (const x of rest) {
    if (mode === MODE_DELTA) delta = x;
    else delta += x;
    out.push(out[out.length - 1] + delta);
  }
  return out;
}

/** Packed integers as the chunk's version wrote them: mixed radix from version 3. */
function unpack(r: Reader, count: number, version: number): number[] {
  return version >= 3 ? r.radixPacked(count) : r.offsetPacked(count);
}

/** Successive differences. */
function differences(xs: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < xs.length; i++) out.push(xs[i] - xs[i - 1]);
  return out;
}

/** max − min (0 when empty): what frame-of-reference packing spends bits on. */
function spread(xs: readonly number[]): number {
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of xs) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return xs.length === 0 ? 0 : hi - lo;
}

/**
 * The smallest decimal exponent (0–6) at which every value is an exact scaled integer of
 * magnitude below 2^49, or undefined (NaN, ±Inf, −0, more decimals). Shared with the rollup
 * window format, whose value columns are scaled the same way.
 */
export function decimalExponent(vs: readonly number[]): number | undefined {
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
    // Not decimals: XOR with the previous value's bits when that is smaller (a value that
    // repeats costs one bit, one that changes slowly its changed bits), else float64s.
    const xor = encodeXor(vs);
    if (xor.length < 8 * vs.length) {
      w.byte(MODE_XOR);
      w.varint(xor.length);
      w.bytes(xor);
      return;
    }
    w.byte(MODE_FLOAT);
    for (const v of vs) w.float64(v);
    return;
  }
  const scale = 10 ** k;
  const scaled = vs.map((v) => Math.round(v * scale));
  const deltas = differences(scaled);
  const dods = differences(deltas);
  // A counter at a steady rate has near-constant deltas (delta-of-deltas win); random
  // increments or a noisy gauge have deltas in a band (deltas win by a bit).
  const byDelta = spread(deltas) <= spread(dods);
  w.byte(byDelta ? MODE_DELTA : MODE_DOD);
  w.byte(k);
  if (vs.length === 0) return;
  w.varint(zigzag(scaled[0]));
  if (byDelta) {
    w.radixPacked(deltas);
    return;
  }
  if (vs.length === 1) return;
  w.varint(zigzag(deltas[0]));
  w.radixPacked(dods);
}

function decodeValues(r: Reader, n: number, version: number): number[] {
  const mode = r.byte();
  const out: number[] = [];
  if (mode === MODE_FLOAT) {
    for (let i = 0; i < n; i++) out.push(r.float64());
    return out;
  }
  if (mode === MODE_XOR && version >= 3) return decodeXor(r.bytes(r.varint()), n);
  if (mode !== MODE_DELTA && mode !== MODE_DOD) throw new RangeError(`unknown value mode ${mode}`);
  const scale = 10 ** r.byte();
  if (n === 0) return out;
  let s = unzigzag(r.varint());
  out.push(s / scale);
  if (version === 1) {
    // Version 1: deltas, zig-zagged and packed.
    for (const z of r.packed(n - 1)) {
      s += unzigzag(z);
      out.push(s / scale);
    }
    return out;
  }
  if (mode === MODE_DELTA) {
    for (const d of unpack(r, n - 1, version)) {
      s += d;
      out.push(s / scale);
    }
    return out;
  }
  if (n === 1) return out;
  let delta = unzigzag(r.varint());
  s += delta;
  out.push(s / scale);
  for (const dd of unpack(r, n - 2, version)) {
    delta += dd;
    s += delta;
    out.push(s / scale);
  }
  return out;
}

/**
 * Float values that are not short decimals, as Gorilla encodes them (Pelkonen et al.,
 * "Gorilla: a fast, scalable, in-memory time series database", VLDB 2015): the first
 * value's 64 bits, then per value the XOR of its bits with the previous value's: `0` when
 * equal; `10` and the meaningful bits when they fit the previous leading/trailing-zero
 * window; `11`, leading zeros (5 bits, at most 31), meaningful length − 1 (6 bits) and the
 * meaningful bits otherwise. Bit-exact, NaN payloads and −0 included.
 */
export function encodeXor(vs: readonly number[]): Uint8Array {
  const bits = new BitWriter();
  const view = new DataView(new ArrayBuffer(8));
  let prevHi = 0;
  let prevLo = 0;
  let lead = -1;
  let trail = 0;
  for (let i = 0; i < vs.length; i++) {
    view.setFloat64(0, vs[i]);
    const hi = view.getUint32(0);
    const lo = view.getUint32(4);
    if (i === 0) {
      bits.write(hi, 32);
      bits.write(lo, 32);
    } else {
      const xh = (hi ^ prevHi) >>> 0;
      const xl = (lo ^ prevLo) >>> 0;
      if (xh === 0 && xl === 0) {
        bits.write(0, 1);
      } else {
        const l = Math.min(31, xh !== 0 ? Math.clz32(xh) : 32 + Math.clz32(xl));
        const t = xl !== 0 ? ctz(xl) : 32 + ctz(xh);
        if (lead >= 0 && l >= lead && t >= trail) {
          bits.write(0b10, 2);
        } else {
          lead = l;
          trail = t;
          bits.write(0b11, 2);
          bits.write(lead, 5);
          bits.write(64 - lead - trail - 1, 6);
        }
        writeShifted(bits, xh, xl, trail, 64 - lead - trail);
      }
    }
    prevHi = hi;
    prevLo = lo;
  }
  return bits.finish();
}

/** Inverse of {@link encodeXor}: `n` values. */
export function decodeXor(bytes: Uint8Array, n: number): number[] {
  const bits = new BitReader(bytes);
  const out: number[] = [];
  if (n === 0) return out;
  let hi = bits.read(32);
  let lo = bits.read(32);
  let lead = 0;
  let trail = 0;
  for (let i = 0; ; i++) {
    WORDS[HI] = hi;
    WORDS[LO] = lo;
    out.push(FLOAT[0]);
    if (i === n - 1) return out;
    if (bits.read(1) === 0) continue;
    if (bits.read(1) === 1) {
      lead = bits.read(5);
      trail = 64 - lead - (bits.read(6) + 1);
      if (trail < 0) throw new RangeError('malformed XOR value');
    }
    const m = 64 - lead - trail;
    const sh = m > 32 ? bits.read(m - 32) : 0;
    const sl = bits.read(Math.min(m, 32));
    // (sh:sl) << trail, XOR-ed into the previous value.
    if (trail >= 32) {
      hi = (hi ^ (sl << (trail - 32))) >>> 0;
    } else if (trail === 0) {
      hi = (hi ^ sh) >>> 0;
      lo = (lo ^ sl) >>> 0;
    } else {
      hi = (hi ^ ((sh << trail) | (sl >>> (32 - trail)))) >>> 0;
      lo = (lo ^ (sl << trail)) >>> 0;
    }
  }
}

/** One float64 seen as two 32-bit words, the high one at index HI in either byte order. */
const FLOAT = new Float64Array(1);
const WORDS = new Uint32Array(FLOAT.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
const LO = 1 - HI;

/** Writes the `m` bits of (xh:xl) >> t. */
function writeShifted(bits: BitWriter, xh: number, xl: number, t: number, m: number): void {
  let sh: number;
  let sl: number;
  if (t >= 32) {
    sh = 0;
    sl = xh >>> (t - 32);
  } else if (t === 0) {
    sh = xh;
    sl = xl;
  } else {
    sh = xh >>> t;
    sl = ((xl >>> t) | (xh << (32 - t))) >>> 0;
  }
  if (m > 32) {
    bits.write(sh, m - 32);
    bits.write(sl, 32);
  } else {
    bits.write(sl, m);
  }
}

/** Trailing zero bits of a non-zero 32-bit value. */
function ctz(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Most significant bit first; `write` takes up to 32 bits of an unsigned value. */
class BitWriter {
  private readonly out: number[] = [];
  private acc = 0;
  private used = 0;

  write(value: number, n: number): void {
    for (let left = n; left > 0; ) {
      const take = Math.min(left, 8 - this.used);
      const part = Math.floor(value / 2 ** (left - take)) % 2 ** take;
      this.acc = (this.acc << take) | part;
      this.used += take;
      left -= take;
      if (this.used === 8) {
        this.out.push(this.acc);
        this.acc = 0;
        this.used = 0;
      }
    }
  }

  finish(): Uint8Array {
    if (this.used > 0) this.out.push(this.acc << (8 - this.used));
    return Uint8Array.from(this.out);
  }
}

class BitReader {
  private bit = 0;

  constructor(private readonly buf: Uint8Array) {}

  /** Reads `n` ≤ 32 bits as an unsigned number. */
  read(n: number): number {
    if (n > 24) return this.read(n - 16) * 65_536 + this.read(16);
    if (n === 0) return 0;
    const end = this.bit + n;
    if (end > this.buf.length * 8) throw new RangeError('truncated chunk');
    // The four bytes from the current one hold all n ≤ 24 bits past its offset (≤ 7).
    const at = this.bit >> 3;
    const b = this.buf;
    const word = ((b[at] << 24) | ((b[at + 1] ?? 0) << 16) | ((b[at + 2] ?? 0) << 8) | (b[at + 3] ?? 0)) >>> 0;
    const v = ((word << (this.bit & 7)) >>> 0) >>> (32 - n);
    this.bit = end;
    return v;
  }
}

export function zigzag(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

export function unzigzag(n: number): number {
  return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
}

/** How many base-`radix` digits {@link Writer.radixPacked} puts in one packed number (< 2^48). */
function radixRun(radix: number): number {
  let k = 1;
  let product = radix;
  while (product * radix <= 2 ** 48) {
    product *= radix;
    k++;
  }
  return k;
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

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
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

  /**
   * Signed integers as their minimum and range (varints), then in mixed radix: each run of
   * `k` distances from the minimum is one number `Σ dᵢ·Rⁱ` (R = range, `k` as many as fit
   * in 48 bits), bit-packed. A band of R values then costs log₂R bits per value instead of
   * the next whole bit: 0–99 takes 6.7 bits rather than 7, 0–4 takes 2.35 rather than 3,
   * a timestamp's 0–2 ms of jitter 1.6 rather than 2.
   */
  radixPacked(values: readonly number[]): void {
    let min = Infinity;
    let max = -Infinity;
    for (const v of values) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    if (values.length === 0) min = max = 0;
    this.varint(zigzag(min));
    this.varint(max - min);
    const radix = max - min + 1;
    if (radix === 1) return;
    const k = radixRun(radix);
    const groups: number[] = [];
    for (let i = 0; i < values.length; i += k) {
      let g = 0;
      for (let j = Math.min(i + k, values.length) - 1; j >= i; j--) g = g * radix + (values[j] - min);
      groups.push(g);
    }
    this.packed(groups);
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

  bytes(n: number): Uint8Array {
    if (this.pos + n > this.buf.length) throw new RangeError('truncated chunk');
    this.pos += n;
    return this.buf.subarray(this.pos - n, this.pos);
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

  /** Inverse of {@link Writer.radixPacked}. */
  radixPacked(count: number): number[] {
    const min = unzigzag(this.varint());
    const radix = this.varint() + 1;
    const out = new Array<number>(count);
    if (radix === 1) return out.fill(min);
    const k = radixRun(radix);
    const groups = this.packed(Math.ceil(count / k));
    let at = 0;
    for (let g of groups) {
      for (let j = 0; j < k && at < count; j++) {
        // Not `g % radix`: V8 computes a float remainder by calling fmod, which is
        // slower than a division (measured on 480 values of 0–99: 51 against 31 ns per value).
        const q = Math.floor(g / radix);
        out[at++] = min + (g - q * radix);
        g = q;
      }
    }
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
