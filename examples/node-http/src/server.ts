import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { basicAuth, createTokenEndpoint, tokenAuth, type BasicPrincipal } from '@berthjs/auth';
import { createRegistry, writeResponse, type BerthHandler, type Registry } from '@berthjs/core';
import { createSqlMetadataStore } from '@berthjs/metadata-sql';
import { FsBlobStore } from '@berthjs/storage-fs';
import { createConsole } from './console.js';

/** The service's own users: a build bot that pushes `ci/*` and a reader of everything. */
const USERS: Record<string, { password: string; push: boolean }> = {
  'build-bot': { password: 'bot-secret', push: true },
  auditor: { password: 'audit-secret', push: false },
};

/**
 * A plain node:http service: its own console page (`/`), `/health` and `/status`, plus Berth and its token
 * endpoint, each asked in turn (`handle` resolves to undefined for paths it does not own).
 */
export async function createService(dataDir: string, publicUrl: () => string): Promise<{ server: Server; registry: Registry }> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const checkPassword = (user: string, password: string) => Object.hasOwn(USERS, user) && USERS[user].password === password;
  const metadata = await createSqlMetadataStore({ filename: join(dataDir, 'registry.sqlite') });
  const tokens = createTokenEndpoint({
    signingKey: { key: privateKey },
    service: 'node-http-registry',
    issuer: 'node-http-registry',
    authenticate: basicAuth({ verifyPassword: checkPassword }).authenticate,
    authorize: ({ principal, action, repository }) => {
      const user = principal === undefined ? undefined : USERS[(principal as BasicPrincipal).username];
      return !!user && (action === 'pull' || (user.push && action === 'push' && repository.startsWith('ci/')));
    },
    anonymous: false,
  });
  const registry = createRegistry({
    blobs: new FsBlobStore({ root: join(dataDir, 'blobs') }),
    metadata,
    ...tokenAuth({
      realm: () => `${publicUrl()}/token`,
      service: 'node-http-registry',
      issuer: 'node-http-registry',
      keys: [{ key: privateKey }],
    }),
  });
  let pushes = 0;
  registry.events.on('manifest.pushed', () => pushes++);
  const handlers: BerthHandler[] = [tokens, registry];
  const site = createConsole(metadata, checkPassword, () => pushes);

  const server = createServer({ connectionsCheckingInterval: 5_000 }, async (req, res) => {
    try {
      for (const handler of handlers) {
        const request = {
          method: req.method ?? 'GET',
          url: req.url ?? '/',
          headers: req.headers,
          body: req,
          remoteAddress: req.socket.remoteAddress,
        };
        const response = await handler.handle(request);
        if (response) return await writeResponse(res, response).catch(() => undefined); // a client that left mid-download
      }
      if (await site(req, res)) return;
      if (req.url === '/health') return json(res, 200, { ok: true });
      if (req.url === '/status') return json(res, 200, { pushes, uptimeSeconds: Math.round(process.uptime()) });
      json(res, 404, { error: 'not found' });
    } catch {
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
      else res.destroy();
    }
  });
  // Long blob uploads must not hit Node's whole-request timeout: Berth ends bodies that stall
  // (bodyIdleTimeoutMs); headers must arrive within 30 s (checked every 5 s, see createServer).
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  return { server, registry };
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(value));
}
