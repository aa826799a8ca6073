import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { compress } from 'snappy';
import { WriteRequestSchema } from '../../libs/contracts/prometheus/remote_pb.js';
import { InvalidArgumentError, LimitExceededError, UnavailableError } from '../../libs/runtime/errors.js';
import { PayloadTooLargeError } from '../../libs/runtime/http.js';
import { sendError } from './http.js';
import { OverloadedError } from './pipeline.js';
import { decodeRemoteWrite, snappyUncompressedLength } from './remote-write.js';

describe('remote_write decoding', () => {
  const wr = create(WriteRequestSchema, {
    timeseries: [{ labels: [{ name: '__name__', value: 'up' }, { name: 'job', value: 'x' }], samples: [{ value: 1, timestamp: 5n }, { value: NaN, timestamp: 6n }] }],
  });

  it('decodes snappy protobuf into series, NaN kept', async () => {
    const body = await compress(Buffer.from(toBinary(WriteRequestSchema, wr)));
    const [s] = await decodeRemoteWrite(body, 1 << 20);
    assert.deepEqual(s!.labels.map((l) => `${l.name}=${l.value}`), ['__name__=up', 'job=x']);
    assert.deepEqual(s!.timestampsMs, [5n, 6n]);
    assert.ok(Number.isNaN(s!.values[1]));
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
