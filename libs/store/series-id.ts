/**
 * The stable 64-bit identity of a series, persisted in every adapter's storage. Changing
 * this function orphans every stored series, so its definition is pinned by a test.
 *
 * Definition: for each label of the canonical label set, in order, the UTF-8 bytes of the
 * name, one 0xFF byte, the UTF-8 bytes of the value, one 0xFF byte; SHA-256 over the whole;
 * the first 8 bytes of the digest read as an unsigned big-endian integer.
 *
 * Why this hash: 0xFF never occurs in UTF-8, so the byte string is unambiguous (the same
 * separator Prometheus uses). SHA-256 is native in Node, so it measured as fast here as a
 * pure-JS FNV-1a 64 (about 2–4 µs for a five-label set), while its output is uniformly
 * distributed: an accidental collision needs on the order of 2^32 series in one tenant.
 */
import { createHash } from 'node:crypto';
import type { Labels } from '../model/index.js';

const SEPARATOR = 0xff;
const encoder = new TextEncoder();
// One growable scratch buffer: ids are computed synchronously, so reuse is safe and saves
// an allocation per series on the write path.
let scratch = new Uint8Array(1024);

function ensureRoom(used: number, needed: number): void {
  if (scratch.length - used >= needed) return;
  const next = new Uint8Array(Math.max(scratch.length * 2, used + needed));
  next.set(scratch.subarray(0, used));
  scratch = next;
}

function put(used: number, text: string): number {
  // encodeInto writes at most 3 bytes per UTF-16 code unit; +1 for the separator.
  ensureRoom(used, text.length * 3 + 1);
  const { written } = encoder.encodeInto(text, scratch.subarray(used));
  scratch[used + written] = SEPARATOR;
  return used + written + 1;
}

/**
 * The series id of a canonical label set (see the module comment for the exact definition).
 * The caller canonicalises first: a different order gives a different id.
 */
export function seriesId(labels: Labels): bigint {
  let used = 0;
  for (const l of labels) {
    used = put(used, l.name);
    used = put(used, l.value);
  }
  const digest = createHash('sha256').update(scratch.subarray(0, used)).digest();
  return digest.readBigUInt64BE(0);
}
