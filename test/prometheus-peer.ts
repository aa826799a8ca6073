/**
 * Debian's Prometheus as a real peer for tests and benchmarks: started on a free loopback
 * port with temporary storage, no scraping and the remote_write receiver on, and fed with
 * remote_write (snappy-compressed protobuf, encoded here with protobuf-es' wire writer so
 * the peer does not depend on our own contract for it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import snappy from 'snappy';
import { freePort } from '../libs/bus/testing.js';

/** One series of samples, labels as an object (with `__name__`). */
export interface PeerSeries {
  readonly labels: Readonly<Record<string, string>>;
  readonly samples: ReadonlyArray<readonly [timestampMs: number, value: number]>;
}

/** A running Prometheus. */
export interface PrometheusPeer {
  readonly url: string;
  /** Everything it printed. */
  output(): string;
  /** Sends one remote_write request; rejects unless Prometheus answers 2xx. */
  remoteWrite(series: readonly PeerSeries[]): Promise<void>;
  stop(): Promise<void>;
}

/** Whether Debian's `prometheus` binary is on the PATH. */
export async function havePrometheus(): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn('prometheus', ['--version'], { stdio: 'ignore' });
    p.once('error', () => resolve(false));
    p.once('exit', (code) => resolve(code === 0));
  });
}

/** Encodes a `prometheus.WriteRequest` (field numbers from Prometheus' remote.proto/types.proto). */
export function encodeWriteRequest(series: readonly PeerSeries[]): Uint8Array {
  const w = new BinaryWriter();
  for (const s of series) {
    w.tag(1, WireType.LengthDelimited).fork();
    // Prometheus expects labels sorted by name.
    for (const [name, value] of Object.entries(s.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(name).tag(2, WireType.LengthDelimited).string(value).join();
    }
    for (const [t, v] of s.samples) {
      w.tag(2, WireType.LengthDelimited).fork().tag(1, WireType.Bit64).double(v).tag(2, WireType.Varint).int64(t).join();
    }
    w.join();
  }
  return w.finish();
}

/** Starts Prometheus on 127.0.0.1 with temporary storage; `stop()` kills it and removes the data. */
export async function startPrometheus(extraArgs: readonly string[] = []): Promise<PrometheusPeer> {
  const dir = await mkdtemp(join(tmpdir(), 'telemesh-prom-'));
  const port = await freePort();
  const configFile = join(dir, 'prometheus.yml');
  // No scrape jobs: the only data is what the test writes.
  await writeFile(configFile, 'global:\n  evaluation_interval: 1h\nscrape_configs: []\n');
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--web.enable-remote-write-receiver',
      '--log.level=warn',
      ...extraArgs,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited with ${child.exitCode}:\n${out}`);
    }
    try {
      if ((await fetch(`${url}/-/ready`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready within 30 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    output: () => out,
    async remoteWrite(series) {
      const body = await snappy.compress(Buffer.from(encodeWriteRequest(series)));
      const res = await fetch(`${url}/api/v1/write`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-protobuf',
          'content-encoding': 'snappy',
          'x-prometheus-remote-write-version': '0.1.0',
        },
        body,
      });
      if (res.status >= 300) throw new Error(`remote_write: ${res.status} ${await res.text()}`);
    },
    stop,
  };
}

/**
 * Splits series into time slices of `sliceMs` across all series, in time order: Prometheus'
 * head only accepts samples newer than about an hour before the newest it holds, so a long
 * history must arrive roughly in time order, not series by series.
 */
export function timeSlices(series: readonly PeerSeries[], sliceMs: number): PeerSeries[][] {
  let min = Infinity;
  let max = -Infinity;
  for (const s of series) {
    if (s.samples.length === 0) continue;
    min = Math.min(min, s.samples[0]![0]);
    max = Math.max(max, s.samples[s.samples.length - 1]![0]);
  }
  const next = series.map(() => 0);
  const out: PeerSeries[][] = [];
  for (let from = min; from <= max; from += sliceMs) {
    const to = from + sliceMs;
    const slice: PeerSeries[] = [];
    for (const [i, s] of series.entries()) {
      const start = next[i]!;
      let end = start;
      while (end < s.samples.length && s.samples[end]![0] < to) end++;
      next[i] = end;
      if (end > start) slice.push({ labels: s.labels, samples: s.samples.slice(start, end) });
    }
    if (slice.length > 0) out.push(slice);
  }
  return out;
}
