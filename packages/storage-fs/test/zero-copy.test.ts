// Blob downloads with sendfile(2): a BlobReadStream piped into a Node http response sends the
// file without passing the bytes through Node, whether it is piped or handed to pipeline (as Koa 3 and
// the Express adapter do); other responses stream as before.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createServer, get, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Agent, request } from 'undici';
import { sendfileAvailable } from '@berthjs/sendfile';
import { BlobReadStream } from '../src/blob-read-stream.js';

const MiB = 1024 * 1024;

type Handler = (stream: BlobReadStream, res: ServerResponse, req: IncomingMessage) => void;

/**
 * A server answering GET /?start=&end= with that range of `content` through `handler`; returns
 * its URL and the bytes its sockets wrote through Node (sendfile's bytes do not count there).
 */
async function serve(t: TestContext, content: Buffer, zeroCopy: boolean, handler: Handler) {
  const dir = await mkdtemp(join(tmpdir(), 'berth-zero-copy-'));
  const path = join(dir, 'blob');
  await writeFile(path, content);
  const sockets = new Set<Socket>();
  let closedBytes = 0;
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const start = Number(url.searchParams.get('start') ?? 0);
    const end = url.searchParams.has('end') ? Number(url.searchParams.get('end')) : Infinity;
    const stream = new BlobReadStream(await open(path, 'r'), start, end, { chunkSize: MiB, zeroCopy });
    res.statusCode = 200;
    if (url.searchParams.get('length') !== 'none')
      res.setHeader('content-length', String((end === Infinity ? content.length - 1 : end) - start + 1));
    handler(stream, res, req);
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => (closedBytes += socket.bytesWritten));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const agent = new Agent({ connections: 1 });
  t.after(async () => {
    await agent.close();
    server.closeAllConnections();
    server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    get: async (query = '') => {
      const res = await request(`${base}/?${query}`, { dispatcher: agent });
      return Buffer.from(await res.body.arrayBuffer());
    },
    base,
    bytesThroughNode: () => closedBytes + [...sockets].reduce((n, s) => n + (s.destroyed ? 0 : s.bytesWritten), 0),
  };
}

const koaStyle: Handler = (stream, res) => void stream.pipe(res);
const expressStyle: Handler = (stream, res) => void pipeline(stream, res).catch(() => undefined);

describe('BlobReadStream into an http response', { skip: !sendfileAvailable && 'no sendfile(2) here' }, () => {
  for (const [name, handler] of [
    ['pipe', koaStyle],
    ['pipeline (Koa 3, Express)', expressStyle],
  ] as const) {
    test(`${name}: exact bytes by sendfile, and the connection serves the next request`, async (t) => {
      const content = randomBytes(24 * MiB + 123);
      const server = await serve(t, content, true, handler);
      assert.ok((await server.get()).equals(content));
      assert.ok((await server.get('start=5&end=3000000')).equals(content.subarray(5, 3000001)));
      assert.ok((await server.get()).equals(content), 'third request on the same keep-alive connection');
      // Three heads went through Node; none of the ~48 MiB of bodies did.
      assert.ok(server.bytesThroughNode() < 4096, `${server.bytesThroughNode()} bytes through Node`);
    });
  }

  test('with zeroCopy off, or without a Content-Length, the bytes stream through Node', async (t) => {
    const content = randomBytes(4 * MiB);
    const off = await serve(t, content, false, koaStyle);
    assert.ok((await off.get()).equals(content));
    assert.ok(off.bytesThroughNode() > content.length);
    const chunked = await serve(t, content, true, koaStyle);
    assert.ok((await chunked.get('length=none')).equals(content));
    assert.ok(chunked.bytesThroughNode() > content.length);
  });

  test('a hook that rewrites the head (compression) gets the body through its own write()', async (t) => {
    const content = randomBytes(2 * MiB);
    let written = 0;
    const server = await serve(t, content, true, (stream, res) => {
      // What compression middleware does: drop Content-Length as the head goes out, and see
      // (here: count) every body byte in write().
      const { writeHead, write } = res;
      res.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse['writeHead']>) {
        this.removeHeader('content-length');
        return writeHead.apply(this, args);
      } as ServerResponse['writeHead'];
      res.write = function (this: ServerResponse, chunk: Buffer, ...rest: unknown[]) {
        written += chunk.length;
        return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
      } as ServerResponse['write'];
      stream.pipe(res);
    });
    assert.ok((await server.get()).equals(content));
    assert.equal(written, content.length);
  });

  test('a stream that already started reading streams the rest through Node', async (t) => {
    const content = randomBytes(4 * MiB);
    const server = await serve(t, content, true, (stream, res) => {
      stream.once('readable', () => stream.pipe(res));
    });
    assert.ok((await server.get()).equals(content));
    assert.ok(server.bytesThroughNode() > content.length);
  });

  test('where sendfile cannot read the file, the body is read the ordinary way', async (t) => {
    // A directory stands in for a filesystem without sendfile support: sendfile refuses it
    // (EINVAL) before sending anything, and the ordinary read then fails with EISDIR.
    const dir = await mkdtemp(join(tmpdir(), 'berth-zero-copy-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const handle = await open(dir, 'r');
    const { size } = await handle.stat();
    const stream = new BlobReadStream(handle, 0, Infinity, { chunkSize: MiB, zeroCopy: true });
    const server = createServer((_req, res) => {
      res.setHeader('content-length', String(size));
      stream.pipe(res);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => {
      server.closeAllConnections();
      server.close();
    });
    const failed = once(stream, 'error');
    get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, (res) => res.resume()).on('error', () => undefined);
    const [error] = (await failed) as [NodeJS.ErrnoException];
    assert.equal(error.code, 'EISDIR');
  });

  test('a client that disconnects mid-body ends the stream without an error', async (t) => {
    let served: ((stream: BlobReadStream) => void) | undefined;
    const streamed = new Promise<BlobReadStream>((resolve) => (served = resolve));
    const server = await serve(t, randomBytes(64 * MiB), true, (stream, res) => {
      stream.pipe(res);
      served?.(stream);
    });
    const req = get(server.base, (res) => res.once('data', () => req.destroy()));
    req.on('error', () => undefined);
    const stream = await streamed;
    if (!stream.destroyed) await once(stream, 'close');
    assert.equal(stream.errored, null);
  });
});
