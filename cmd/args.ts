/**
 * Command-line parsing: `telemesh <command> [--key=value | --key value | --flag] [args…]`.
 * Dotted keys (`--server.httpPort=7500`) are configuration flags; the rest belong to the
 * command.
 */

/** A parsed command line. */
export interface ParsedArgs {
  readonly command: string;
  /** Flags in order, as given (`--a=b` → ['a','b']; `--flag` → ['flag','']). */
  readonly flags: Array<[string, string]>;
  readonly positionals: string[];
}

/**
 * Parses argv (without node and script). `booleanFlags` never take the next word as value.
 */
export function parseArgs(argv: readonly string[], booleanFlags: ReadonlySet<string>): ParsedArgs {
  const flags: Array<[string, string]> = [];
  const positionals: string[] = [];
  let command = '';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      if (eq > 0) {
        flags.push([a.slice(2, eq), a.slice(eq + 1)]);
      } else {
        const name = a.slice(2);
        const next = argv[i + 1];
        if (!booleanFlags.has(name) && next !== undefined && !next.startsWith('--')) {
          flags.push([name, next]);
          i++;
        } else {
          flags.push([name, '']);
        }
      }
    } else if (command === '') {
      command = a;
    } else {
      positionals.push(a);
    }
  }
  return { command, flags, positionals };
}

/** The last value of a flag, or undefined. */
export function flag(args: ParsedArgs, name: string): string | undefined {
  let v: string | undefined;
  for (const [k, val] of args.flags) if (k === name) v = val;
  return v;
}
