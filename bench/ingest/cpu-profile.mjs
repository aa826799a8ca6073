// Preloaded into benchmarked telemesh processes (NODE_OPTIONS=--import, since --cpu-prof
// is not allowed there): records a V8 CPU profile from start to exit and writes it to
// $TELEMESH_BENCH_PROFILE. The in-thread inspector session answers synchronously, so the
// profile can be taken in the 'exit' handler.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const out = process.env.TELEMESH_BENCH_PROFILE;
if (out) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');
  process.on('exit', () => {
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(out, JSON.stringify(res.profile));
    });
  });
}
