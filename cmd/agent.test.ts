import assert from 'node:assert/strict';
import { cpus } from 'node:os';
import { test } from 'node:test';
import { MetricType } from '../libs/contracts/telemesh/common/v1/common_pb.js';
import { isValidLabelName, isValidMetricName } from '../libs/model/index.js';
import { collectHostMetrics, parseLabelsFlag } from './agent.js';
import { UsageError } from './client.js';

test('collects this host’s CPU, memory, disk, network and load with valid names', async () => {
  const samples = await collectHostMetrics();
  const names = new Set(samples.map((s) => s.name));
  for (const n of ['node_cpu_seconds_total', 'node_load1', 'node_memory_MemTotal_bytes', 'node_memory_MemAvailable_bytes', 'node_filesystem_size_bytes', 'node_network_receive_bytes_total']) {
    assert.ok(names.has(n), `missing ${n}`);
  }
  for (const s of samples) {
    assert.ok(isValidMetricName(s.name), s.name);
    for (const l of Object.keys(s.labels)) assert.ok(isValidLabelName(l), l);
    assert.ok(Number.isFinite(s.value) && s.value >= 0, `${s.name} = ${s.value}`);
  }
  const cpu = samples.filter((s) => s.name === 'node_cpu_seconds_total');
  assert.equal(new Set(cpu.map((s) => s.labels.cpu)).size, cpus().length);
  assert.ok(cpu.every((s) => s.type === MetricType.COUNTER));
  const total = samples.find((s) => s.name === 'node_memory_MemTotal_bytes')!;
  const avail = samples.find((s) => s.name === 'node_memory_MemAvailable_bytes')!;
  assert.ok(total.value > 0 && avail.value <= total.value && total.type === MetricType.GAUGE);
});

test('--labels parses k=v pairs and names the bad part', () => {
  assert.deepEqual(parseLabelsFlag('rack=r1, zone = eu-1'), { rack: 'r1', zone: 'eu-1' });
  assert.deepEqual(parseLabelsFlag(undefined), {});
  assert.throws(() => parseLabelsFlag('rack'), (e: unknown) => e instanceof UsageError && /"rack"/.test(e.message));
  assert.throws(() => parseLabelsFlag('1x=y'), UsageError);
  assert.throws(() => parseLabelsFlag('__name__=y'), UsageError);
});
