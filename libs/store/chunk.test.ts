import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeChunk, encodeChunk } from './chunk.js';

function roundTrip(ts: number[], vs: number[]): Uint8Array {
  const bytes = encodeChunk(ts, vs);
  const back = decodeChunk(bytes);
  assert.deepEqual(back.timestampsMs, ts);
  assert.deepEqual(back.values, vs);
  // deepEqual treats -0 and 0 alike: check the sign bit explicitly.
  back.values.forEach((v, i) => assert.ok(Object.is(v, vs[i]), `value ${i}: ${v} vs ${vs[i]}`));
  return bytes;
}

describe('sealed chunk encoding', () => {
  it('round-trips exactly, including NaN, ±Inf, -0, extreme timestamps and equal timestamps', () => {
    roundTrip([], []);
    roundTrip([5], [1.5]);
    roundTrip([-86_400_000, 0, 1, 1, Number.MAX_SAFE_INTEGER], [NaN, Infinity, -Infinity, -0, Number.MAX_VALUE]);
    roundTrip([1, 2, 3], [Number.MIN_VALUE, 1e-300, 0.1 + 0.2]);
    roundTrip([1000, 1000, 1000], [9, -0, 3]);
    roundTrip([0, 15_000, 30_001, 44_999], [1e15, -1e15, 2 ** 49, -(2 ** 49)]);
  });

  it('takes under 2 bytes per sample for realistic series', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const kinds = {
      counter: (v: number) => v + Math.floor(rand() * 100),
      gauge: (_v: number, i: number) => Math.round((50 + 10 * Math.sin(i / 100) + rand() * 2) * 100) / 100,
      histogram: (v: number) => v + Math.floor(rand() * 5),
    };
    for (const [name, next] of Object.entries(kinds)) {
      const ts: number[] = [];
      const vs: number[] = [];
      let v = 123_456;
      for (let i = 0; i < 480; i++) {
        ts.push(1_700_000_000_000 + i * 15_000 + Math.floor(rand() * 3));
        v = next(v, i);
        vs.push(v);
      }
      const bytes = roundTrip(ts, vs);
      assert.ok(bytes.length / 480 < 2, `${name}: ${(bytes.length / 480).toFixed(2)} bytes/sample`);
    }
  });

  it('rejects truncated input', () => {
    const bytes = encodeChunk([1, 2, 3], [1, 2, 3]);
    assert.throws(() => decodeChunk(bytes.subarray(0, bytes.length - 1)), RangeError);
    assert.throws(() => decodeChunk(Uint8Array.from([2])), RangeError);
  });
});
