/**
 * The module manager: a table of modules and their dependencies, a target picks which
 * to run, dependencies start first and stop last. Each module's lifecycle is
 * new → starting → running → stopping → stopped (or failed); readiness and health come
 * from these states. Wiring functions in the table hold no business logic.
 */
import type { Logger } from 'pino';
import { StartupError } from './errors.js';

/** Lifecycle state of a module. */
export type ModuleState = 'new' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

/** What a module's `start` returns: the value other modules may use, and how to stop it. */
export interface Started<T> {
  readonly value: T;
  /** Stops the module; called once, in reverse dependency order. */
  stop?(): Promise<void>;
}

/** Passed to a module's `start`: access to its dependencies and a way to report failure. */
export interface ModuleContext<M> {
  /** Name of the module being started. */
  readonly name: string;
  /** The value of a started dependency. */
  get<K extends keyof M & string>(name: K): M[K];
  /** Reports that the running module can no longer work; the process then stops non-zero. */
  fail(err: unknown): void;
}

/** One entry of the module table. */
export interface ModuleDef<M, K extends keyof M> {
  /** Modules this one needs started first. */
  readonly deps: readonly (keyof M & string)[];
  /** Starts the module (may fail: start-up then stops, naming the module). */
  start(ctx: ModuleContext<M>): Promise<Started<M[K]>>;
}

/** The module table: one definition per module name; `M` maps names to their values. */
export type ModuleTable<M> = { readonly [K in keyof M & string]: ModuleDef<M, K> };

/** Raised when a running module fails; carries the module's name. */
export class ModuleFailedError extends Error {
  constructor(
    readonly module: string,
    override readonly cause: unknown,
  ) {
    super(`module ${module} failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'ModuleFailedError';
  }
}

/** Runs the modules a target needs, in dependency order. */
export class ModuleManager<M> {
  readonly #table: ModuleTable<M>;
  readonly #logger: Logger;
  readonly #states = new Map<string, ModuleState>();
  readonly #values = new Map<string, unknown>();
  readonly #stops: Array<{ name: string; stop: () => Promise<void> }> = [];
  readonly #listeners = new Set<(name: string, state: ModuleState) => void>();
  readonly #failures = new Set<(err: ModuleFailedError) => void>();
  #stopping: Promise<void> | undefined;

  constructor(table: ModuleTable<M>, logger: Logger) {
    this.#table = table;
    this.#logger = logger;
  }

  /** Names of all modules in the table. */
  get names(): string[] {
    return Object.keys(this.#table).sort();
  }

  /**
   * The modules `targets` need, dependencies first. Throws {@link StartupError} for an
   * unknown target or a dependency cycle.
   */
  resolve(targets: readonly string[]): string[] {
    const order: string[] = [];
    const visiting = new Set<string>();
    const visit = (name: string, from?: string): void => {
      if (order.includes(name)) return;
      const def = (this.#table as Record<string, ModuleDef<M, keyof M> | undefined>)[name];
      if (!def) {
        throw new StartupError(
          from ? `module ${from} depends on unknown module ${name}` : `unknown target ${JSON.stringify(name)}; valid targets: ${this.names.join(', ')}`,
          '--target',
        );
      }
      if (visiting.has(name)) throw new StartupError(`module dependency cycle through ${name}`);
      visiting.add(name);
      for (const d of def.deps) visit(d, name);
      visiting.delete(name);
      order.push(name);
    };
    for (const t of targets) visit(t);
    return order;
  }

  /** The value of a started module, or undefined. */
  value<K extends keyof M & string>(name: K): M[K] | undefined {
    return this.#values.get(name) as M[K] | undefined;
  }

  /** Current state of every resolved module. */
  states(): ReadonlyMap<string, ModuleState> {
    return this.#states;
  }

  /** True when every resolved module is running. */
  ready(): boolean {
    if (this.#states.size === 0) return false;
    for (const s of this.#states.values()) if (s !== 'running') return false;
    return true;
  }

  /** Calls `fn` on every state change. */
  onStateChange(fn: (name: string, state: ModuleState) => void): void {
    this.#listeners.add(fn);
  }

  /** Calls `fn` when a running module reports a failure. */
  onFailure(fn: (err: ModuleFailedError) => void): void {
    this.#failures.add(fn);
  }

  #set(name: string, state: ModuleState): void {
    this.#states.set(name, state);
    this.#logger.debug({ module: name, state }, 'module state');
    for (const l of this.#listeners) l(name, state);
  }

  /**
   * Starts the modules for `targets` in dependency order. If one fails, those already
   * started are stopped and the error is rethrown with the module named.
   */
  async start(targets: readonly string[]): Promise<void> {
    const order = this.resolve(targets);
    for (const name of order) this.#set(name, 'new');
    for (const name of order) {
      if (this.#stopping) return;
      const def = (this.#table as Record<string, ModuleDef<M, keyof M>>)[name]!;
      this.#set(name, 'starting');
      const ctx: ModuleContext<M> = {
        name,
        get: (dep) => {
          if (!this.#values.has(dep)) throw new Error(`module ${name} asked for ${dep}, which is not one of its started dependencies`);
          return this.#values.get(dep) as M[typeof dep];
        },
        fail: (err) => this.#fail(name, err),
      };
      try {
        const started = await def.start(ctx);
        this.#values.set(name, started.value);
        if (started.stop) this.#stops.push({ name, stop: started.stop });
        this.#set(name, 'running');
      } catch (err) {
        this.#set(name, 'failed');
        await this.stop();
        if (err instanceof StartupError) throw err;
        throw new StartupError(`module ${name} failed to start: ${err instanceof Error ? err.message : String(err)}`, undefined, { cause: err });
      }
    }
  }

  #fail(name: string, err: unknown): void {
    if (this.#states.get(name) !== 'running') return;
    this.#set(name, 'failed');
    const failure = new ModuleFailedError(name, err);
    this.#logger.error({ module: name, err }, 'module failed');
    for (const f of this.#failures) f(failure);
  }

  /** Stops every started module in reverse order. Idempotent; errors are logged, not thrown. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      for (const { name, stop } of [...this.#stops].reverse()) {
        if (this.#states.get(name) === 'running') this.#set(name, 'stopping');
        try {
          await stop();
          if (this.#states.get(name) !== 'failed') this.#set(name, 'stopped');
        } catch (err) {
          this.#logger.error({ module: name, err }, 'module failed to stop cleanly');
          this.#set(name, 'failed');
        }
      }
      for (const [name, state] of this.#states) if (state === 'running' || state === 'new') this.#set(name, 'stopped');
    })();
    return this.#stopping;
  }
}
