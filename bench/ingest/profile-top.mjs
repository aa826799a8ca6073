// Summarises a .cpuprofile: self time per function (top N) and per package/file group.
// Usage: node bench/ingest/profile-top.mjs <file.cpuprofile> [N]
import { readFileSync } from 'node:fs';

const [file, n = '25'] = process.argv.slice(2);
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((node) => [node.id, node]));
const self = new Map();
const dt = p.timeDeltas;
for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (dt[i] ?? 0));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const fn = new Map();
const group = new Map();
for (const [id, us] of self) {
  const cf = byId.get(id).callFrame;
  const url = cf.url.replace(/^file:\/\//, '').replace(/.*node_modules\//, 'nm:');
  const key = `${cf.functionName || '(anon)'} ${url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
  fn.set(key, (fn.get(key) ?? 0) + us);
  const g = url.startsWith('nm:') ? url.split('/').slice(0, url.startsWith('nm:@') ? 2 : 1).join('/') : url === '' ? cf.functionName || '(native)' : url.split('/').slice(-2).join('/');
  group.set(g, (group.get(g) ?? 0) + us);
}
const pct = (us) => ((100 * us) / total).toFixed(1).padStart(5) + '%';
console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled`);
console.log('-- by function (self)');
for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) console.log(pct(us), k);
console.log('-- by file/package (self)');
for (const [k, us] of [...group].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) console.log(pct(us), k);

// Inclusive time of the project's own functions (libs/, services/, cmd/): where the hot
// paths spend their time including what they call.
const parent = new Map();
for (const node of p.nodes) for (const c of node.children ?? []) parent.set(c, node.id);
const incl = new Map();
for (const [id, us] of self) {
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const cf = byId.get(cur).callFrame;
    if (!/\/(libs|services|cmd)\//.test(cf.url) || /\/contracts\//.test(cf.url)) continue;
    const key = `${cf.functionName || '(anon)'} ${cf.url.replace(/.*\/(libs|services|cmd)\//, '$1/')}:${cf.lineNumber + 1}`;
    if (seen.has(key)) continue;
    seen.add(key);
    incl.set(key, (incl.get(key) ?? 0) + us);
  }
}
console.log('-- project functions (inclusive)');
for (const [k, us] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) console.log(pct(us), k);
