/**
 * Development auth: with `auth.devTokens` and no key configured, an HS256 secret is made
 * once and kept under the data directory (so tokens printed yesterday still work today),
 * and an agent and an admin token are minted for the banner.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { dataPath, describeSetting, type Config } from '../libs/runtime/config.js';
import { StartupError } from '../libs/runtime/errors.js';
import { mintToken } from '../libs/runtime/auth/index.js';

/** File that holds the generated development secret. */
export function devSecretPath(config: Config): string {
  return dataPath(config, 'dev-hs256-secret');
}

/**
 * Returns the config with a verification key: the configured one, or in dev mode the
 * development secret (created when missing). Without either, start-up stops naming the
 * settings.
 */
export function resolveAuth(config: Config): Config {
  const a = config.auth;
  if (a.hs256Secret || a.jwksFile || a.jwksUrl) return config;
  if (!a.devTokens) {
    throw new StartupError(
      'no key to verify bearer tokens is configured',
      `${describeSetting('auth.hs256Secret')}, auth.jwksFile or auth.jwksUrl; or auth.devTokens=true for local development`,
    );
  }
  const file = devSecretPath(config);
  let secret: string;
  try {
    secret = readFileSync(file, 'utf8').trim();
  } catch {
    secret = randomBytes(32).toString('base64url');
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, secret + '\n', { mode: 0o600 });
  }
  return { ...config, auth: { ...a, hs256Secret: secret } };
}

/** The two dev tokens printed at start: an agent token and an admin token for tenant `dev`. */
export async function mintDevTokens(config: Config): Promise<{ agent: string; admin: string }> {
  const secret = config.auth.hs256Secret;
  const opts = { tenant: 'dev', ttlSec: 30 * 24 * 3600, issuer: config.auth.issuer || undefined, audience: config.auth.audience || undefined };
  return {
    agent: await mintToken(secret, { ...opts, subject: 'dev-agent', roles: ['agent'] }),
    admin: await mintToken(secret, { ...opts, subject: 'dev-admin', roles: ['admin'] }),
  };
}
