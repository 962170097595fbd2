import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import Koa from 'koa';
import { pino, type Logger } from 'pino';
import { createRegistry, tokenBucket, type BerthHandler, type Registry } from '@berthjs/core';
import { Htpasswd } from '@berthjs/auth';
import { berth } from '@berthjs/koa';
import { berthMetrics } from '@berthjs/metrics';
import { serveAuth } from './auth.js';
import { scheduleCollections } from './gc.js';
import { openStores, registryOptions } from './stores.js';
import { ConfigError, type ServeConfig } from './config.js';
import { VERSION } from './version.js';

export interface RunningServer {
  server: Server;
  registry: Registry;
  url: string;
  /** `http://host:port/metrics` when `--metrics-port` is set. */
  metricsUrl?: string;
  /**
   * Graceful shutdown: stop accepting connections, let requests in flight finish for up to
   * `shutdownTimeoutMs`, cut the rest, close the stores. Resolves with how many were cut.
   */
  close(): Promise<{ cut: number }>;
}

/** Pino with ISO 8601 times and level names, one JSON object per line on stdout. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

/**
 * A standalone registry: Koa, fs blobs (or S3) and the embedded database (or Postgres), with
 * `/healthz`, `/readyz`, request logs, optional TLS and metrics. The listeners bind first and
 * every start-up check runs before a store is created, so a mistake changes nothing on disk.
 */
export async function serve(config: ServeConfig, log: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  await checkFiles(config);
  const tls = config.tls && (await loadTls(config.tls));
  let app: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const handler = (req: IncomingMessage, res: ServerResponse) => (app ? app(req, res) : starting(req, res));
  // Node checks its header timeout only every connectionsCheckingInterval (30 s by default).
  const serverOptions = { connectionsCheckingInterval: Math.min(5000, config.headerTimeoutMs / 2) };
  const server = tls ? createHttpsServer({ ...tls, ...serverOptions }, handler) : createHttpServer(serverOptions, handler);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = config.headerTimeoutMs;
  // No bound on a whole request (a 5 GiB upload takes its time); a body that stalls is ended by
  // the registry's body idle timeout instead, and the headers must arrive within headersTimeout.
  server.requestTimeout = 0;
  const port = await listen(server, config.port, config.host, '--port');
  const url = `${tls ? 'https' : 'http'}://${config.host}:${port}`;
  const closers: (() => Promise<void>)[] = [() => closeServer(server)];
  const stopAll = () => Promise.all(closers.map((close) => close().catch(() => undefined)));
  try {
    const stores = await openStores(config, log);
    closers.push(async () => {
      await Promise.all([stores.blobs.close?.(), stores.metadata.close()]);
    });
    const auth = await serveAuth(config, () => `${url}/token`);
    const registry = createRegistry({
      ...registryOptions(config),
      ...auth.hooks,
      ...stores,
      delete: config.deletes,
      maxManifestBytes: config.maxManifestBytes,
      bodyIdleTimeoutMs: config.bodyIdleTimeoutMs,
      bodyMinBytesPerSecond: config.bodyMinBytesPerSecond,
      sendIdleTimeoutMs: config.sendIdleTimeoutMs,
      maxConcurrentUploads: config.maxConcurrentUploads,
      readCacheMaxBytes: config.readCacheBytes,
      manifestMemoryBytes: config.manifestMemoryBytes,
      redirectBlobs: config.s3?.redirect,
      logger: log,
      trustProxy: config.trustProxy,
      rateLimit: config.rateLimit ? tokenBucket({ perSecond: config.rateLimit }) : undefined,
    });
    // From here on the registry closes the stores (after draining).
    closers[closers.length - 1] = async () => {
      await registry.close({ timeoutMs: 0 });
    };
    let shuttingDown = false;
    const probes = registry.observe(
      healthRoutes(registry, log, () => shuttingDown),
      'probe',
      { level: 'debug' },
    );

    const koa = new Koa();
    koa.use(async (ctx, next) => {
      await next();
      // Draining: let every connection go once its response is out, so clients reconnect elsewhere.
      if (shuttingDown) ctx.set('Connection', 'close');
    });
    koa.use(berth(probes));
    if (auth.tokens) koa.use(berth(registry.observe(auth.tokens, 'token')));
    koa.use(berth(registry, { sendfile: config.sendfile }));
    koa.use(berth(registry.observe(notFound, 'other')));
    // Errors from Koa itself (e.g. a client that went away mid-download) are logged, not printed.
    koa.on('error', (error) => log.debug({ err: error }, 'koa error'));

    let metricsUrl: string | undefined;
    if (config.metrics) {
      const metrics = berthMetrics(registry);
      const metricsServer = createHttpServer((req, res) => {
        metrics.handler.handle({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: req }).then(
          (response) => {
            if (!response) return res.writeHead(404, { 'Content-Type': 'text/plain' }).end('try /metrics\n');
            res.writeHead(response.status, response.headers).end(response.body);
          },
          (error) => {
            log.error({ err: error }, 'metrics failed');
            res.writeHead(500).end();
          },
        );
      });
      const metricsPort = await listen(metricsServer, config.metrics.port, config.metrics.host, '--metrics-port');
      metricsUrl = `http://${config.metrics.host}:${metricsPort}/metrics`;
      closers.push(() => closeServer(metricsServer));
    }

    const sweeper = setInterval(() => sweep(registry, log), 10 * 60 * 1000);
    sweeper.unref();
    const collections = scheduleCollections(registry, config.gc, log);
    app = koa.callback();
    const authMode = config.token ? 'token' : config.htpasswd ? 'basic' : 'none';
    log.info(
      {
        version: VERSION,
        url,
        metricsUrl,
        dataDir: config.dataDir,
        metadata: stores.metadata.name,
        blobs: stores.blobs.name,
        bucket: config.s3?.bucket,
        auth: authMode,
        tls: Boolean(tls),
      },
      'berth is serving',
    );
    let closing: Promise<{ cut: number }> | undefined;
    return {
      server,
      registry,
      url,
      metricsUrl,
      close() {
        closing ??= (async () => {
          shuttingDown = true;
          clearInterval(sweeper);
          collections.stop();
          server.close();
          // Connections between requests go now; busy ones once their response is out.
          const idle = setInterval(() => server.closeIdleConnections(), 100);
          server.closeIdleConnections();
          try {
            await registry.close({ timeoutMs: config.shutdownTimeoutMs });
            return { cut: registry.stats().closed?.cut ?? 0 };
          } finally {
            clearInterval(idle);
            server.closeAllConnections();
            await stopAll();
          }
        })();
        return closing;
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * Liveness and readiness for orchestrators: `/healthz` answers while the event loop does;
 * `/readyz` answers 200 while both stores pass their probe, else 503 naming the failing store
 * (the reason goes to the log, not to the public port), and 503 from the start of a shutdown.
 */
function healthRoutes(registry: Registry, log: Logger, shuttingDown: () => boolean): BerthHandler {
  let wasReady: boolean | undefined;
  const json = (status: number, value: unknown) => {
    const body = Buffer.from(`${JSON.stringify(value)}\n`);
    return {
      status,
      headers: { 'Content-Type': 'application/json', 'Content-Length': String(body.length), 'Cache-Control': 'no-store' },
      body,
    };
  };
  return {
    async handle(request) {
      const path = request.url.split('?')[0];
      if (path === '/healthz') return json(200, { status: 'ok' });
      if (path !== '/readyz') return undefined;
      if (shuttingDown()) return json(503, { status: 'shutting down' });
      const report = await registry.health();
      if (report.ok !== wasReady) {
        const failing = [report.blobs, report.metadata].filter((s) => !s.ok);
        if (report.ok) log.info({ blobs: report.blobs.store, metadata: report.metadata.store }, 'ready');
        else log.warn({ failing: failing.map(({ store, error }) => ({ store, error })) }, 'not ready');
        wasReady = report.ok;
      }
      const store = ({ store, ok }: { store: string; ok: boolean }) => ({ store, ok });
      return json(report.ok ? 200 : 503, {
        status: report.ok ? 'ready' : 'unavailable',
        ...(report.ok ? {} : { failing: [report.blobs, report.metadata].filter((s) => !s.ok).map((s) => s.store) }),
        blobs: store(report.blobs),
        metadata: store(report.metadata),
      });
    },
  };
}

/** Paths nobody serves: a JSON 404 (logged like any other request). */
const notFound: BerthHandler = {
  async handle() {
    const body = Buffer.from('{"errors":[{"code":"NOT_FOUND","message":"not found"}]}\n');
    return { status: 404, headers: { 'Content-Type': 'application/json', 'Content-Length': String(body.length) }, body };
  },
};

/** While the stores are being opened: alive, not ready. */
function starting(req: IncomingMessage, res: ServerResponse): void {
  const alive = req.url === '/healthz';
  res.writeHead(alive ? 200 : 503, { 'Content-Type': 'application/json', ...(alive ? {} : { 'Retry-After': '1' }) });
  res.end(alive ? '{"status":"ok"}\n' : '{"status":"starting"}\n');
  req.resume();
}

/** A file a setting names, or a ConfigError saying which and why not. */
async function readSetting(flag: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    throw new ConfigError(`${flag} ${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

/** The htpasswd file parses, and the token keys named explicitly can be read. */
async function checkFiles(config: ServeConfig): Promise<void> {
  if (config.htpasswd) {
    const text = await readSetting('--htpasswd', config.htpasswd);
    try {
      new Htpasswd(text.toString('utf8'));
    } catch (error) {
      throw new ConfigError(`--htpasswd ${config.htpasswd}: ${(error as Error).message}`);
    }
  }
  if (config.token?.keyFile) await readSetting('--token-key', config.token.keyFile);
  for (const file of config.token?.verifyKeyFiles ?? []) await readSetting('--token-verify-keys', file);
}

/** PEM certificate and key, checked to form a usable TLS context. */
async function loadTls(tls: NonNullable<ServeConfig['tls']>): Promise<{ cert: Buffer; key: Buffer }> {
  const cert = await readSetting('--tls-cert', tls.certFile);
  const key = await readSetting('--tls-key', tls.keyFile);
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError(`--tls-cert/--tls-key: not a usable PEM certificate and key: ${(error as Error).message}`);
  }
  return { cert, key };
}

async function listen(server: Server, port: number, host: string, flag: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError(`${flag} ${port} on ${host}: cannot listen: ${error.code ?? error.message}`);
  });
  const address = server.address();
  return typeof address === 'object' && address ? address.port : port;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

function sweep(registry: Registry, log: Logger): void {
  registry.sweepUploads().then(
    (n) => n > 0 && log.info({ swept: n }, 'freed what idle or abandoned uploads left'),
    (error) => log.error({ err: error }, 'upload sweep failed'),
  );
}
