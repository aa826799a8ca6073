/**
 * `telemesh serve`: load the configuration, start tracing, run the target's modules, and
 * shut down cleanly on SIGINT/SIGTERM (not ready → drain → close → flush traces, exit 0).
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createTokenVerifier } from '../libs/runtime/auth/index.js';
import { loadConfig, redactConfig, type Config } from '../libs/runtime/config.js';
import { StartupError } from '../libs/runtime/errors.js';
import { HealthRegistry } from '../libs/runtime/health.js';
import { createLogger } from '../libs/runtime/logger.js';
import { createRegistry } from '../libs/runtime/metrics.js';
import { ModuleManager } from '../libs/runtime/modules.js';
import { startTracing } from '../libs/runtime/tracing.js';
import { flag, type ParsedArgs } from './args.js';
import { mintDevTokens, resolveAuth } from './dev-auth.js';
import { moduleTable, TARGETS, type Modules } from './modules.js';

/** What `serve` needs from the process (only `main` touches `process`). */
export interface ServeIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly out: (line: string) => void;
  /** Registers the shutdown handler for SIGINT/SIGTERM. */
  readonly onSignal: (handler: (signal: string) => void) => void;
}

/** Flags of `serve` that are not configuration keys. */
const SERVE_FLAGS = new Set(['target', 'config.file', 'config.verify']);

/** The configuration as `serve` and the client commands read it. */
export function configFromArgs(args: ParsedArgs, env: ServeIo['env'], own: ReadonlySet<string> = SERVE_FLAGS): Config {
  return loadConfig({
    file: flag(args, 'config.file') ?? env.TELEMESH_CONFIG_FILE,
    env,
    // Every flag that is not the command's own is a configuration key (`--replica=b`,
    // `--server.httpPort=7500`); an unknown one stops start-up naming it.
    flags: args.flags.filter(([k]) => !own.has(k)),
  });
}

/** Runs `telemesh serve`; resolves with the exit code once the process should end. */
export async function serve(args: ParsedArgs, io: ServeIo): Promise<number> {
  const target = flag(args, 'target') ?? 'all';
  if (!(TARGETS as readonly string[]).includes(target)) {
    throw new StartupError(`unknown target ${JSON.stringify(target)}; valid targets: ${TARGETS.join(', ')}`, '--target');
  }
  let config = configFromArgs(args, io.env);
  if (flag(args, 'config.verify') !== undefined) {
    io.out('configuration is valid:');
    io.out(JSON.stringify(redactConfig(config), null, 2));
    return 0;
  }
  config = resolveAuth({ ...config, replica: config.replica || hostname() });
  const version = packageVersion();
  const tracing = startTracing({ serviceName: `telemesh-${target}`, serviceVersion: version, env: io.env });
  const logger = createLogger({ service: `telemesh-${target}`, level: config.log.level });
  const registry = createRegistry();
  const health = new HealthRegistry();
  const verifier = createTokenVerifier({
    hs256Secret: config.auth.hs256Secret || undefined,
    jwksFile: config.auth.jwksFile || undefined,
    jwksUrl: config.auth.jwksUrl || undefined,
    issuer: config.auth.issuer || undefined,
    audience: config.auth.audience || undefined,
  });
  const manager: ModuleManager<Modules> = new ModuleManager(
    moduleTable({ config, logger, registry, health, verifier, manager: () => manager }),
    logger,
  );

  let exitCode = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let shuttingDown = false;
  const shutdown = async (reason: string, code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    exitCode = code;
    logger.info({ reason }, 'shutting down');
    health.setAllNotServing();
    await manager.stop();
    logger.info('stopped');
    await tracing.shutdown();
    resolveDone();
  };
  io.onSignal((signal) => void shutdown(signal, 0));
  manager.onFailure((err) => {
    io.out(`telemesh: ${err.message}`);
    void shutdown(`module ${err.module} failed`, 1);
  });

  try {
    await manager.start([target]);
  } catch (err) {
    await tracing.shutdown();
    throw err;
  }
  if (shuttingDown) {
    await done;
    return exitCode;
  }
  await printBanner(io, config, target, manager);
  await done;
  return exitCode;
}

async function printBanner(io: ServeIo, config: Config, target: string, manager: ModuleManager<Modules>): Promise<void> {
  const urls = manager.value('server')!.urls;
  const http = urls.http.replace('//0.0.0.0:', '//127.0.0.1:');
  const grpc = urls.grpc.replace('//0.0.0.0:', '//127.0.0.1:');
  io.out('');
  io.out(`Telemesh is running (target: ${target}).`);
  io.out(`  HTTP/1.1  ${http}   Connect JSON, gRPC-Web, /metrics, /livez, /readyz`);
  io.out(`  HTTP/2    ${grpc}   gRPC, Connect, gRPC-Web`);
  io.out(`  NATS      ${manager.value('nats')}${config.nats.url ? '' : ' (embedded)'}`);
  if (target === 'all' || target === 'aggregation') io.out(`  Store     ${config.store.backend}`);
  if (config.auth.devTokens) {
    const tokens = await mintDevTokens(config);
    io.out('');
    io.out('Development tokens (tenant "dev"):');
    io.out(`  agent:  ${tokens.agent}`);
    io.out(`  admin:  ${tokens.admin}`);
    io.out('');
    io.out('Try:');
    io.out(`  export TELEMESH_TOKEN=${tokens.admin}`);
    io.out(`  npx telemesh push 'demo_temperature_celsius{room="lab"} 21.5'`);
    io.out(`  npx telemesh query 'demo_temperature_celsius' --start=-5m`);
    io.out(`  curl -s -H "authorization: Bearer $TELEMESH_TOKEN" -H 'content-type: application/json' \\`);
    io.out(`    -d '{"selector":"demo_temperature_celsius"}' ${http}/telemesh.query.v1.QueryService/Select`);
  }
  io.out('');
  io.out('Ctrl-C stops it.');
}

/** The package version, for traces and `telemesh version`. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
