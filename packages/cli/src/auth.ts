import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { basicAuth, createTokenEndpoint, loadHtpasswd, tokenAuth } from '@berthjs/auth';
import type { AuthHooks, AuthorizeRequest, BerthHandler } from '@berthjs/core';
import type { ServeConfig } from './config.js';

/** The registry's auth hooks for `berth serve`, and the token endpoint when token auth is on. */
export interface ServeAuth {
  hooks: AuthHooks;
  tokens?: BerthHandler;
}

/**
 * Auth from the config: none without `--htpasswd`; else Basic against the file, or Bearer tokens
 * from a `/token` endpoint that checks the same file. The policy is deliberately flat: every user
 * in the file may do everything; anonymous callers may pull only with `--anonymous-pull`.
 */
export async function serveAuth(config: ServeConfig, defaultRealm: () => string): Promise<ServeAuth> {
  if (!config.htpasswd) return { hooks: {} };
  const users = await loadHtpasswd(config.htpasswd);
  const basic = basicAuth({ verifyPassword: (user, password) => users.verify(user, password) });
  const authorize = ({ principal, action }: AuthorizeRequest) => principal !== undefined || (config.anonymousPull && action === 'pull');
  const anonymous = config.anonymousPull ? 'authorize' : 'none';
  const { token } = config;
  if (!token) return { hooks: { ...basic, authorize, anonymous } };

  const signingKey = await readOrCreateKey(token.keyFile ?? join(config.dataDir, 'token-key.pem'));
  const previous = await Promise.all(token.verifyKeyFiles.map((file) => readFile(file, 'utf8')));
  const tokens = createTokenEndpoint({
    signingKey: { key: signingKey },
    service: token.service,
    issuer: token.service,
    authenticate: basic.authenticate,
    authorize,
    anonymous: config.anonymousPull,
    expiresInSeconds: token.ttlSeconds,
  });
  const verifier = tokenAuth({
    realm: token.realm ?? defaultRealm,
    service: token.service,
    issuer: token.service,
    keys: [{ key: signingKey }, ...previous.map((key) => ({ key }))],
    maxLifetimeSeconds: token.ttlSeconds,
  });
  return { hooks: { ...verifier, anonymous }, tokens };
}

/**
 * The signing key's PEM; created (EC P-256, mode 0600) when missing, so processes sharing a data
 * directory share the key. Written aside, then hard-linked into place: the link is atomic and
 * fails if another process got there first, so nobody reads a half-written key.
 */
async function readOrCreateKey(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  await mkdir(dirname(file), { recursive: true });
  const aside = `${file}.${process.pid}.${randomUUID()}`;
  await writeFile(aside, pem, { flag: 'wx', mode: 0o600 });
  try {
    await link(aside, file);
    return pem;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return readFile(file, 'utf8');
    throw error;
  } finally {
    await unlink(aside);
  }
}
