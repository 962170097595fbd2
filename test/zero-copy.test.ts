// Blob GETs on fs storage, through each way a host mounts Berth (Koa, Express, `handle` with
// writeResponse on node:http), go out with sendfile(2): the body bytes never pass through the
// server's Node sockets, and what arrives is the blob. Where sendfile must not be used (a host
// that compresses, TLS, sendfile turned off) the same GETs stream, and arrive intact.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer, get as httpsGet } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import compression from 'compression';
import express from 'express';
import Koa from 'koa';
import koaCompress from 'koa-compress';
import { createRegistry, type NodeWriteOptions, type Registry } from '@berthjs/core';
import { berth as berthExpress } from '@berthjs/express';
import { berth as berthKoa } from '@berthjs/koa';
import { sendfileAvailable } from '@berthjs/sendfile';
import { hostApp, nodeHandler } from './support/servers.js';
import { embeddedStores } from './support/stores.js';
import { TestClient, randomBlob, sha256 } from './support/client.js';

const MiB = 1024 * 1024;
/** A body sent wrong can leave the client waiting for bytes that never come: fail instead. */
const each = { timeout: 120_000 };
type Listener = Parameters<typeof createServer>[1];
type Host = 'koa' | 'express' | 'node';

function app(host: Host, registry: Registry, options: NodeWriteOptions = {}): Listener {
  if (host === 'node') return nodeHandler(registry, options);
  if (host === 'koa' && options.sendfile === undefined) return hostApp('koa', registry);
  if (host === 'express' && options.sendfile === undefined) return hostApp('express', registry);
  if (host === 'koa') return new Koa().use(berthKoa(registry, options)).callback();
  return express().use(berthExpress(registry, options));
}

/** A registry on fs storage, `listener(registry)` serving it, and the bytes its sockets wrote through Node. */
async function start(t: TestContext, listener: (registry: Registry) => Listener, tls?: { key: string; cert: string }) {
  const stores = await embeddedStores();
  const registry = createRegistry(await stores.open());
  const servers: Server[] = [];
  const serve = async (server: Server) => {
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  };
  let bytesThroughNode = 0;
  const server = tls ? createHttpsServer(tls, listener(registry)) : createServer(listener(registry));
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) =>
    socket.once('close', () => (bytesThroughNode += socket.bytesWritten)),
  );
  const port = await serve(server);
  t.after(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    await registry.close();
    await stores.destroy();
  });
  // Pushes go to a plain server of their own: only the GETs count.
  const pusher = new TestClient(`http://127.0.0.1:${await serve(createServer(nodeHandler(registry)))}`);
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    push: (blob: Buffer) => pusher.pushBlob('zero/copy', blob),
    /** Bytes written through Node by connections closed so far. */
    sent: async () => {
      server.closeAllConnections();
      await new Promise((r) => setTimeout(r, 50));
      return bytesThroughNode;
    },
  };
}

/** Push a blob, GET it whole and a range of it; returns the blob's size and what Node's sockets wrote. */
async function pull(host: Awaited<ReturnType<typeof start>>, headers: Record<string, string> = {}) {
  const blob = randomBlob(16 * MiB + 7);
  const digest = await host.push(blob);
  const client = new TestClient(host.url);
  const decode = (res: Awaited<ReturnType<TestClient['req']>>) =>
    res.header('content-encoding') === 'gzip' ? gunzipSync(res.body) : res.body;
  const whole = await client.req(`/v2/zero/copy/blobs/${digest}`, { headers });
  assert.equal(whole.status, 200);
  assert.equal(sha256(decode(whole)), digest);
  const part = await client.req(`/v2/zero/copy/blobs/${digest}`, { headers: { ...headers, Range: 'bytes=100-1048675' } });
  assert.equal(part.status, 206);
  assert.ok(decode(part).equals(blob.subarray(100, 1048676)));
  return { size: blob.length, sentByNode: await host.sent(), encoding: whole.header('content-encoding') };
}

describe('blob downloads by sendfile', { skip: !sendfileAvailable && 'no sendfile(2) here' }, () => {
  for (const name of ['koa', 'express', 'node'] as Host[]) {
    it(`${name}: GET and ranged GET of a blob bypass Node's sockets`, each, async (t) => {
      const { sentByNode } = await pull(await start(t, (registry) => app(name, registry)));
      assert.ok(sentByNode < 8192, `${sentByNode} bytes of two blob responses went through Node`);
    });

    it(`${name}: with sendfile off, the same GETs stream through Node`, each, async (t) => {
      const { size, sentByNode } = await pull(await start(t, (registry) => app(name, registry, { sendfile: false })));
      assert.ok(sentByNode > size, `${sentByNode} bytes through Node`);
    });
  }

  it('koa behind koa-compress: the compressed body streams', each, async (t) => {
    const host = await start(t, (registry) =>
      new Koa()
        .use(koaCompress({ threshold: 0, filter: () => true }))
        .use(berthKoa(registry))
        .callback(),
    );
    const { encoding } = await pull(host, { 'Accept-Encoding': 'gzip' });
    assert.equal(encoding, 'gzip');
  });

  it('express behind compression: the compressed body streams', each, async (t) => {
    const host = await start(t, (registry) =>
      express()
        .use(compression({ threshold: 0, filter: () => true }))
        .use(berthExpress(registry)),
    );
    const { encoding } = await pull(host, { 'Accept-Encoding': 'gzip' });
    assert.equal(encoding, 'gzip');
  });

  it('koa over TLS: the body streams, encrypted by Node', each, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-zero-copy-tls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const key = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await writeFile(join(dir, 'key.pem'), key);
    const cert = execFileSync('openssl', ['req', '-x509', '-key', join(dir, 'key.pem'), '-subj', '/CN=127.0.0.1', '-days', '1'], {
      encoding: 'utf8',
    });
    const host = await start(t, (registry) => app('koa', registry), { key, cert });
    const blob = randomBlob(8 * MiB + 3);
    const digest = await host.push(blob);
    const body = await new Promise<Buffer>((resolve, reject) => {
      httpsGet(`${host.url}/v2/zero/copy/blobs/${digest}`, { rejectUnauthorized: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      }).on('error', reject);
    });
    assert.equal(sha256(body), digest);
    assert.ok((await host.sent()) > blob.length);
  });
});
