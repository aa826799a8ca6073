/** The Kubernetes manifests render with kustomize and run each service from the one image. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ROOT } from './harness.js';

function kubectlPresent(): boolean {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface Workload {
  kind: string;
  metadata: { name: string };
  spec: { replicas: number; template: { spec: { containers: Array<{ args: string[]; env: Array<{ name: string; value?: string }>; readinessProbe: { httpGet: { path: string } } }> } } };
}

const skip = kubectlPresent() ? false : 'kubectl is not installed on this machine';

describe('k8s manifests', { skip }, () => {
  const render = (dir: string) =>
    parseAllDocuments(execFileSync('kubectl', ['kustomize', `${ROOT}/k8s/${dir}`], { encoding: 'utf8' })).map((d) => d.toJS() as Workload);

  it('base: one workload per service, each serving its own target with probes', () => {
    const docs = render('base');
    const workloads = docs.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet');
    const targets = workloads.map((w) => w.spec.template.spec.containers[0]!.args.find((a) => a.startsWith('--target='))).sort();
    assert.deepEqual(targets, ['--target=aggregation', '--target=alerting', '--target=heartbeat', '--target=ingestion', '--target=notification']);
    for (const w of workloads) assert.equal(w.spec.template.spec.containers[0]!.readinessProbe.httpGet.path, '/readyz');
    assert.equal(docs.filter((d) => d.kind === 'Service').length, 5);
  });

  it('production: MongoDB storage and scaled-out aggregation', () => {
    const agg = render('overlays/production').find((d) => d.metadata.name === 'telemesh-aggregation' && d.kind === 'StatefulSet')!;
    assert.equal(agg.spec.replicas, 3);
    assert.ok(agg.spec.template.spec.containers[0]!.env.some((e) => e.name === 'TELEMESH_STORE_BACKEND' && e.value === 'mongodb'));
  });
});
