import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { seriesId } from './series-id.js';

describe('seriesId', () => {
  it('is SHA-256 over name 0xFF value 0xFF, first 8 bytes big-endian', () => {
    const labels = [
      { name: '__name__', value: 'http_requests_total' },
      { name: 'path', value: '/api/ünïcode/😀' },
    ];
    const bytes = Buffer.concat(labels.flatMap((l) => [Buffer.from(l.name), Buffer.from([0xff]), Buffer.from(l.value), Buffer.from([0xff])]));
    const expected = createHash('sha256').update(bytes).digest().readBigUInt64BE(0);
    assert.equal(seriesId(labels), expected);
  });

  it('is pinned: stored ids must never change', () => {
    // Computed once when the definition was fixed; a change here orphans stored series.
    assert.equal(seriesId([{ name: '__name__', value: 'up' }, { name: 'job', value: 'node' }]), PINNED_UP_NODE);
    assert.equal(seriesId([]), PINNED_EMPTY);
  });

  it('separates name and value boundaries', () => {
    assert.notEqual(seriesId([{ name: 'ab', value: 'c' }]), seriesId([{ name: 'a', value: 'bc' }]));
    assert.notEqual(
      seriesId([{ name: 'a', value: 'b' }, { name: 'c', value: 'd' }]),
      seriesId([{ name: 'a', value: 'b\u00ffc' }]),
    );
  });

  it('handles label sets larger than its scratch buffer', () => {
    const long = 'x'.repeat(5000);
    const a = seriesId([{ name: 'a', value: long }]);
    assert.equal(seriesId([{ name: 'a', value: long }]), a);
    assert.notEqual(seriesId([{ name: 'a', value: long + 'y' }]), a);
  });
});

const PINNED_UP_NODE = 11013997445518960364n;
// SHA-256 of no bytes starts e3b0c44298fc1c14.
const PINNED_EMPTY = 0xe3b0c44298fc1c14n;
