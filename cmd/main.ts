/**
 * Entry point of the `telemesh` binary: the only module that touches `process`.
 */
import { configKeys } from '../libs/runtime/config.js';
import { StartupError } from '../libs/runtime/errors.js';
import { flag, parseArgs } from './args.js';
import { push, query, token, UsageError, type ClientIo } from './client.js';
import { packageVersion, serve } from './serve.js';

const BOOLEAN_FLAGS = new Set(['config.verify', 'json', 'help', ...configKeys.filter((k) => k.kind === 'boolean').map((k) => k.path)]);

const HELP = `telemesh — telemetry and health monitoring

Usage:
  telemesh serve [--target=all|ingestion|heartbeat|aggregation|alerting|notification]
                 [--config.file=telemesh.yaml] [--config.verify] [--<key>=<value>…]
  telemesh push  [--url=http://127.0.0.1:7400] [--token=T] ['name{label="v"} value [ts_ms]'…]
                 (no lines given: reads them from standard input)
  telemesh query <selector> [--start=-1h] [--end=now] [--json] [--url=…] [--token=T]
  telemesh token [--tenant=dev] [--roles=agent,reader,editor,admin] [--subject=cli] [--ttl=86400]
  telemesh agent --id=<agent id> [--interval=10] [--env=…] [--labels=k=v,…] [--url=…] [--token=T]
                 (the reference agent: this host's metrics and heartbeats; --help for more)
  telemesh agents [--state=alive,suspect,dead,left] [--selector='{env="prod"}'] [--json]
  telemesh version | help

Clients read TELEMESH_URL and TELEMESH_TOKEN when --url / --token are not given;
--protocol=grpc talks gRPC to the HTTP/2 port instead of Connect over HTTP/1.1.

Configuration keys (YAML file key, environment variable, flag --<key>):
${configKeys.map((k) => `  ${k.path.padEnd(34)} ${k.env.padEnd(42)} default ${JSON.stringify(k.defaultValue)}`).join('\n')}
`;

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, BOOLEAN_FLAGS);
  const out = (line: string) => void process.stdout.write(line + '\n');
  const io: ClientIo = { env: process.env, out, stdin: readStdin };
  // `telemesh agent --help` has its own usage; every other command shares this one.
  if (args.command !== 'agent' && flag(args, 'help') !== undefined) {
    out(HELP);
    return 0;
  }
  switch (args.command) {
    case 'serve':
      return serve(args, {
        env: process.env,
        out,
        onSignal(handler) {
          let signals = 0;
          const on = (sig: NodeJS.Signals) => {
            // A second signal while draining means "now": leave without waiting.
            if (++signals > 1) process.exit(130);
            handler(sig);
          };
          process.on('SIGINT', on);
          process.on('SIGTERM', on);
        },
      });
    case 'push':
      return push(args, io);
    case 'agents':
      return (await import('./agents.js')).agents(args, io);
    case 'agent':
      return (await import('./agent.js')).agent(args, { ...io, onSignal: (h) => void process.once('SIGINT', h).once('SIGTERM', h) });
    case 'query':
      return query(args, io);
    case 'token':
      return token(args, io);
    case 'version':
      out(packageVersion());
      return 0;
    case '':
    case 'help':
      out(HELP);
      return args.command === '' ? 2 : 0;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(args.command)}; run \`telemesh help\``);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof StartupError) {
    process.stderr.write(`telemesh: ${err.message}${err.setting ? ` — set ${err.setting}` : ''}\n`);
    process.exitCode = 1;
  } else if (err instanceof UsageError) {
    process.stderr.write(`telemesh: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`telemesh: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
