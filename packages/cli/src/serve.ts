import { createServer, type Server } from 'node:http';
import Koa from 'koa';
import { pino } from 'pino';
import { createRegistry, type Registry } from '@berthjs/core';
import { berth } from '@berthjs/koa';
import { serveAuth } from './auth.js';
import type { ServeConfig } from './config.js';
import { scheduleCollections } from './gc.js';
import { openStores, registryOptions } from './stores.js';

export interface RunningServer {
  server: Server;
  registry: Registry;
  url: string;
  close(): Promise<void>;
}

/** A standalone registry: Koa, fs blobs (or S3) and the embedded database (or Postgres). */
export async function serve(config: ServeConfig): Promise<RunningServer> {
  const log = pino({ level: config.logLevel, base: undefined });
  const { blobs, metadata } = await openStores(config);
  let url = ''; // known once listening; the default token realm points at it
  const auth = await serveAuth(config, () => `${url}/token`);
  const registry = createRegistry({
    ...registryOptions(config),
    ...auth.hooks,
    blobs,
    metadata,
    delete: config.deletes,
    maxManifestBytes: config.maxManifestBytes,
    bodyIdleTimeoutMs: config.bodyIdleTimeoutMs,
    bodyMinBytesPerSecond: config.bodyMinBytesPerSecond,
    maxConcurrentUploads: config.maxConcurrentUploads,
    readCacheMaxBytes: config.readCacheBytes,
    manifestMemoryBytes: config.manifestMemoryBytes,
    redirectBlobs: config.s3?.redirect,
  });
  registry.events.on('request.failed', ({ error, method, url }) => log.error({ err: error, method, url }, 'request failed'));

  const app = new Koa();
  app.use(async (ctx, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      // One line per request, written when the handler is done (streams may still be flowing).
      log.info({ method: ctx.method, url: ctx.url, status: ctx.status, ms: Math.round(performance.now() - started) });
    }
  });
  if (auth.tokens) app.use(berth(auth.tokens));
  app.use(berth(registry));
  app.use(async (ctx) => {
    if (ctx.path === '/health') ctx.body = { ok: true };
  });
  // Errors from Koa itself (e.g. a client that went away mid-download) are logged, not printed.
  app.on('error', (error) => log.debug({ err: error }, 'koa error'));

  // Node checks its header timeout only every connectionsCheckingInterval (30 s by default).
  const server = createServer({ connectionsCheckingInterval: Math.min(5000, config.headerTimeoutMs / 2) }, app.callback());
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = config.headerTimeoutMs;
  // No bound on a whole request (a 5 GiB upload takes its time); a body that stalls is ended by
  // the registry's body idle timeout instead, and the headers must arrive within headersTimeout.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  url = `http://${config.host}:${port}`;
  const sweeper = setInterval(
    () => {
      registry.sweepUploads().then(
        (n) => n > 0 && log.info({ swept: n }, 'freed what idle or abandoned uploads left'),
        (error) => log.error({ err: error }, 'upload sweep failed'),
      );
    },
    10 * 60 * 1000,
  );
  sweeper.unref();
  const collections = scheduleCollections(registry, config.gc, log);
  const authMode = config.token ? 'token' : config.htpasswd ? 'basic' : 'none';
  log.info(
    { url, dataDir: config.dataDir, metadata: metadata.name, blobs: blobs.name, bucket: config.s3?.bucket, auth: authMode },
    'berth is serving',
  );
  return {
    server,
    registry,
    url,
    async close() {
      clearInterval(sweeper);
      collections.stop();
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await registry.close();
    },
  };
}
