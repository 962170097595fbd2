import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Koa from 'koa';
import {
  createRegistry,
  writeResponse,
  type BerthHandler,
  type NodeWriteOptions,
  type Registry,
  type RegistryOptions,
} from '@berthjs/core';
import { berth as berthExpress } from '@berthjs/express';
import { berth as berthKoa } from '@berthjs/koa';
import type { StoreSet } from './stores.js';

export type AdapterName = 'koa' | 'express';
export type ExtraOptions = Omit<RegistryOptions, 'blobs' | 'metadata'>;

export interface RunningRegistry {
  url: string;
  registry: Registry;
  /** Stop the server and close its stores, keeping the data. */
  stop(): Promise<void>;
}

/** Mount Berth in a host app of the given framework, next to a host route of its own. */
export function hostApp(adapter: AdapterName, registry: BerthHandler, { quiet = false } = {}) {
  if (adapter === 'koa') {
    const app = new Koa();
    // Koa prints every error it sees (a client that hung up, a download cut by its store) unless told not to.
    app.silent = quiet;
    app.use(berthKoa(registry));
    app.use(async (ctx) => {
      if (ctx.path === '/health') ctx.body = { ok: true };
    });
    return app.callback();
  }
  const app = express();
  app.use(berthExpress(registry));
  app.get('/health', (_req, res) => {
    res.json({ ok: true });
  });
  return app;
}

/** What examples/node-http does: ask `handle`, then `writeResponse` (404 when not Berth's). */
export function nodeHandler(handler: BerthHandler, options: NodeWriteOptions = {}): Parameters<typeof createServer>[1] {
  return async (req, res) => {
    const response = await handler.handle({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: req.headers,
      body: req,
    });
    if (!response) {
      res.writeHead(404).end();
      return;
    }
    await writeResponse(res, response, options).catch(() => undefined);
  };
}

export async function startRegistry(adapter: AdapterName, stores: StoreSet, extra: ExtraOptions = {}, port = 0): Promise<RunningRegistry> {
  const registry = createRegistry({ ...(await stores.open()), ...extra });
  const server: Server = createServer(hostApp(adapter, registry));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}`,
    registry,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await registry.close();
    },
  };
}
