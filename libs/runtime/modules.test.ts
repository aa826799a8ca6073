import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { StartupError } from './errors.js';
import { ModuleManager, type ModuleFailedError, type ModuleTable } from './modules.js';

interface M {
  a: string;
  b: number;
  c: void;
  top: void;
}

function table(log: string[], failing?: keyof M): ModuleTable<M> {
  const mod = <K extends keyof M>(name: K, value: M[K]) => ({
    async start() {
      if (failing === name) throw new Error(`${name} broke`);
      log.push(`start ${name}`);
      return { value, stop: async () => void log.push(`stop ${name}`) };
    },
  });
  return {
    a: { deps: [], ...mod('a', 'A') },
    b: { deps: ['a'], ...mod('b', 2) },
    c: {
      deps: ['a', 'b'],
      async start(ctx) {
        log.push(`start c with ${ctx.get('a')}${ctx.get('b')}`);
        return { value: undefined, stop: async () => void log.push('stop c') };
      },
    },
    top: { deps: ['c'], start: async () => ({ value: undefined }) },
  };
}

const logger = pino({ level: 'silent' });

describe('ModuleManager', () => {
  it('starts dependencies first, stops in reverse, and reports readiness', async () => {
    const log: string[] = [];
    const m = new ModuleManager(table(log), logger);
    assert.deepEqual(m.resolve(['top']), ['a', 'b', 'c', 'top']);
    assert.deepEqual(m.resolve(['b']), ['a', 'b']);
    assert.equal(m.ready(), false);
    await m.start(['top']);
    assert.equal(m.ready(), true);
    assert.equal(m.value('a'), 'A');
    await m.stop();
    await m.stop(); // idempotent
    assert.deepEqual(log, ['start a', 'start b', 'start c with A2', 'stop c', 'stop b', 'stop a']);
    assert.equal(m.states().get('c'), 'stopped');
    assert.equal(m.ready(), false);
  });

  it('stops what started when a module fails to start, naming it', async () => {
    const log: string[] = [];
    const m = new ModuleManager(table(log, 'b'), logger);
    await assert.rejects(m.start(['top']), (err: unknown) => err instanceof StartupError && /module b failed to start: b broke/.test(err.message));
    assert.deepEqual(log, ['start a', 'stop a']);
    assert.equal(m.states().get('b'), 'failed');
  });

  it('rejects unknown targets listing the valid ones', () => {
    const m = new ModuleManager(table([]), logger);
    assert.throws(() => m.resolve(['nope']), /unknown target "nope"; valid targets: a, b, c, top/);
  });

  it('reports a running module failure once, with the module name', async () => {
    let fail: ((e: unknown) => void) | undefined;
    const t: ModuleTable<{ x: void }> = {
      x: {
        deps: [],
        async start(ctx) {
          fail = ctx.fail;
          return { value: undefined };
        },
      },
    };
    const m = new ModuleManager(t, logger);
    const failures: ModuleFailedError[] = [];
    m.onFailure((e) => failures.push(e));
    await m.start(['x']);
    fail!(new Error('connection lost'));
    fail!(new Error('again'));
    assert.equal(failures.length, 1);
    assert.equal(failures[0]!.module, 'x');
    assert.match(failures[0]!.message, /module x failed: connection lost/);
    assert.equal(m.ready(), false);
  });
});
