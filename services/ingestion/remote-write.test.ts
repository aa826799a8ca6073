import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { pino } from 'pino';
import { compress } from 'snappy';
import { WriteRequestSchema } from '../../libs/contracts/prometheus/remote_pb.js';
import { SeriesSchema } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { InvalidArgumentError, LimitExceededError, UnavailableError } from '../../libs/runtime/errors.js';
import { PayloadTooLargeError } from '../../libs/runtime/http.js';
import { sendError } from './http.js';
import { OverloadedError } from './pipeline.js';
import { decodeRemoteWrite, snappyUncompressedLength, transcodeWriteRequest } from './remote-write.js';

describe('remote_write decoding', () => {
  const wr = create(WriteRequestSchema, {
    timeseries: [{ labels: [{ name: '__name__', value: 'up' }, { name: 'job', value: 'x' }], samples: [{ value: 1, timestamp: 5n }, { value: NaN, timestamp: 6n }] }],
  });

  it('decodes snappy protobuf into series, NaN kept', async () => {
    const body = await compress(Buffer.from(toBinary(WriteRequestSchema, wr)));
    const [bytes] = await decodeRemoteWrite(body, 1 << 20);
    const s = fromBinary(SeriesSchema, bytes!);
    assert.deepEqual(s!.labels.map((l) => `${l.name}=${l.value}`), ['__name__=up', 'job=x']);
    assert.deepEqual(s!.timestampsMs, [5n, 6n]);
    assert.ok(Number.isNaN(s!.values[1]));
  });

  it('gives for every timeseries the Series the generated decoder would (defaults, negative and large timestamps, exemplars, unknown fields)', () => {
    const req = create(WriteRequestSchema, {
      timeseries: [
        {
          labels: [{ name: '__name__', value: 'a' }, { name: 'k', value: 'ünï😀' }],
          samples: [{ value: 0, timestamp: 0n }, { value: -0, timestamp: -5n }, { value: Infinity, timestamp: 2n ** 62n }, { value: 1.5, timestamp: 1_700_000_000_123n }],
          exemplars: [{ labels: [{ name: 'trace_id', value: 'x' }], value: 3, timestamp: 4n }],
        },
        { labels: [{ name: '__name__', value: 'no_samples' }] },
        { samples: [{ value: 2, timestamp: 9n }] },
      ],
      metadata: [{ metricFamilyName: 'a', help: 'h' }],
    });
    // An unknown field inside a sample and inside a series, as a newer sender might add.
    const extra = new BinaryWriter().raw(toBinary(WriteRequestSchema, req));
    const odd = new BinaryWriter().tag(2, 2).bytes(new BinaryWriter().tag(2, 0).int64(7n).tag(9, 0).int32(1).tag(1, 1).double(0.5).finish()).tag(15, 2).string('x');
    extra.tag(1, 2).bytes(new BinaryWriter().tag(1, 2).bytes(new BinaryWriter().tag(1, 2).string('__name__').tag(2, 2).string('b').finish()).raw(odd.finish()).finish());
    // A native histogram (TimeSeries field 4), as Prometheus sends with them enabled.
    extra.tag(1, 2).bytes(new BinaryWriter().tag(1, 2).bytes(new BinaryWriter().tag(1, 2).string('__name__').tag(2, 2).string('h').finish()).tag(4, 2).bytes(new BinaryWriter().tag(1, 0).uint64(3).finish()).finish());
    const raw = extra.finish();
    const skipped = { exemplars: 0, histograms: 0 };
    const got = transcodeWriteRequest(raw, skipped).map((b) => fromBinary(SeriesSchema, b));
    assert.deepEqual(skipped, { exemplars: 1, histograms: 1 }, 'what is not stored is counted');
    const want = fromBinary(WriteRequestSchema, raw).timeseries.map((t) =>
      create(SeriesSchema, { labels: t.labels.map((l) => ({ name: l.name, value: l.value })), timestampsMs: t.samples.map((x) => x.timestamp), values: t.samples.map((x) => x.value) }),
    );
    assert.equal(got.length, 5);
    assert.deepEqual(got, want);
    assert.ok(Object.is(got[0]!.values[1], -0));
    assert.deepEqual(got[3]!.timestampsMs, [7n]);
    assert.throws(() => transcodeWriteRequest(raw.subarray(0, raw.length - 2)));
  });

  it('refuses a body that would decompress beyond the limit before decompressing it, and garbage as malformed', async () => {
    const big = await compress(Buffer.alloc(100_000));
    assert.equal(snappyUncompressedLength(big), 100_000);
    await assert.rejects(decodeRemoteWrite(big, 50_000), (e) => e instanceof PayloadTooLargeError && /ingestion\.maxRequestBytes = 50000/.test(e.message));
    await assert.rejects(decodeRemoteWrite(Buffer.from([0x05, 1, 2]), 1 << 20), (e) => e instanceof InvalidArgumentError && !(e instanceof PayloadTooLargeError));
    await assert.rejects(decodeRemoteWrite(await compress(Buffer.from([0xff, 0xff, 0xff])), 1 << 20), /not a prometheus\.WriteRequest/);
  });
});

describe('receiver status codes', () => {
  it('maps errors the way remote_write and OTLP clients expect', async () => {
    const cases: Array<[unknown, number, string | null]> = [
      [new InvalidArgumentError('bad'), 400, null],
      [new PayloadTooLargeError('big'), 413, null],
      [new LimitExceededError('slow down', 2500), 429, '3'],
      [new OverloadedError('busy', 1000), 429, '1'],
      [new UnavailableError('bus down', 1000), 503, '1'],
      [new Error('bug'), 500, null],
    ];
    let current: unknown;
    const server = http.createServer((_req, res) => sendError(res, current, pino({ level: 'silent' })));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      for (const [err, status, retryAfter] of cases) {
        current = err;
        const res = await fetch(url);
        assert.equal(res.status, status, String(err));
        assert.equal(res.headers.get('retry-after'), retryAfter, String(err));
        if (status === 500) assert.equal(await res.text(), 'internal error\n', 'the cause is logged, never sent');
        else await res.text();
      }
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
