// The Node writer (writeResponse / writeBody): a file-range body goes out with sendfile(2) on a
// plain-HTTP response, so its bytes never pass through Node's sockets; a response that something
// re-encodes, TLS, HEAD, or a body already read from, streams; so does everything with sendfile off.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { createServer, get, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { execFileSync } from 'node:child_process';
import { createServer as createHttpsServer } from 'node:https';
import { Agent, request } from 'undici';
import { sendfileAvailable } from '@berthjs/sendfile';
import { writeBody, writeResponse, type FileRange, type FileRangeBody, type NodeWriteOptions } from '../src/index.js';

const MiB = 1024 * 1024;

/** The smallest file-range body the port allows: reads through the threadpool, hands out its span while untouched. */
class FileBody extends Readable implements FileRangeBody {
  #position: number;
  #taken = false;
  constructor(
    private readonly handle: FileHandle,
    private readonly start: number,
    private readonly length: number,
  ) {
    super({ highWaterMark: MiB });
    this.#position = start;
  }
  readonly fileRange: FileRange = {
    take: () => {
      if (this.readableFlowing !== null || this.readableLength > 0 || this.destroyed) return undefined;
      this.#taken = true;
      return { fd: this.handle.fd, start: this.start, length: this.length };
    },
    sent: () => {
      this.push(null);
      this.resume();
    },
    release: () => {
      this.#taken = false;
    },
  };
  override _read(): void {
    assert.equal(this.#taken, false, 'read while taken');
    const length = Math.min(MiB, this.start + this.length - this.#position);
    if (length <= 0) return void this.push(null);
    this.handle.read(Buffer.alloc(length), 0, length, this.#position).then(
      ({ bytesRead, buffer }) => {
        this.#position += bytesRead;
        this.push(buffer.subarray(0, bytesRead));
      },
      (error: Error) => this.destroy(error),
    );
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.handle.close().then(() => callback(error), callback);
  }
}

type Handler = (body: FileBody, res: ServerResponse, req: IncomingMessage) => void;

/** The span's length, leaving the body untouched. */
function lengthOf(body: FileBody): string {
  const span = body.fileRange.take();
  body.fileRange.release();
  return String(span?.length);
}

const plain: (options?: NodeWriteOptions) => Handler = (options) => (body, res) =>
  void writeResponse(res, { status: 200, headers: { 'Content-Length': lengthOf(body) }, body }, options).catch(() => undefined);

/** Declares the length, then writes with writeBody: for handlers that hook the response first. */
function declared(res: ServerResponse, body: FileBody, options?: NodeWriteOptions): Promise<void> {
  res.setHeader('content-length', lengthOf(body));
  return writeBody(res, body, options);
}

/**
 * A server answering GET /?start=&end= with that range of `content` through `handler`; returns
 * its URL and the bytes its sockets wrote through Node (sendfile's bytes do not count there).
 */
async function serve(t: TestContext, content: Buffer | string, handler: Handler, tls?: { key: string; cert: string }) {
  let path = content as string;
  if (typeof content !== 'string') {
    const dir = await mkdtemp(join(tmpdir(), 'berth-writer-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    path = join(dir, 'blob');
    await writeFile(path, content);
  }
  const sockets = new Set<Socket>();
  let closedBytes = 0;
  const listener = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const handle = await open(path, 'r');
    const size = (await handle.stat()).size;
    const start = Number(url.searchParams.get('start') ?? 0);
    const end = url.searchParams.has('end') ? Number(url.searchParams.get('end')) : size - 1;
    handler(new FileBody(handle, start, end - start + 1), res, req);
  };
  const server = tls ? createHttpsServer(tls, listener) : createServer(listener);
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => (closedBytes += socket.bytesWritten));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const agent = new Agent({ connections: 1, connect: { rejectUnauthorized: false } });
  t.after(async () => {
    await agent.close();
    server.closeAllConnections();
    server.close();
  });
  const base = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    get: async (query = '', method = 'GET') => {
      const res = await request(`${base}/?${query}`, { dispatcher: agent, method });
      return Buffer.from(await res.body.arrayBuffer());
    },
    base,
    bytesThroughNode: () => closedBytes + [...sockets].reduce((n, s) => n + (s.destroyed ? 0 : s.bytesWritten), 0),
  };
}

describe('writeResponse into a node:http response', { skip: !sendfileAvailable && 'no sendfile(2) here' }, () => {
  test('exact bytes by sendfile, and the connection serves the next request', async (t) => {
    const content = randomBytes(24 * MiB + 123);
    const server = await serve(t, content, plain());
    assert.ok((await server.get()).equals(content));
    assert.ok((await server.get('start=5&end=3000000')).equals(content.subarray(5, 3000001)));
    assert.ok((await server.get()).equals(content), 'third request on the same keep-alive connection');
    // Three heads went through Node; none of the ~48 MiB of bodies did.
    assert.ok(server.bytesThroughNode() < 4096, `${server.bytesThroughNode()} bytes through Node`);
  });

  test('with sendfile off, or without a Content-Length, the bytes stream through Node', async (t) => {
    const content = randomBytes(4 * MiB);
    const off = await serve(t, content, plain({ sendfile: false }));
    assert.ok((await off.get()).equals(content));
    assert.ok(off.bytesThroughNode() > content.length);
    const chunked = await serve(t, content, (body, res) => void writeBody(res, body));
    assert.ok((await chunked.get()).equals(content));
    assert.ok(chunked.bytesThroughNode() > content.length);
  });

  test('a hook that rewrites the head as it goes out gets the body through write()', async (t) => {
    const content = randomBytes(2 * MiB);
    const server = await serve(t, content, (body, res) => {
      // What on-headers based middleware does: change the head (here: drop Content-Length) as it goes out.
      const { writeHead } = res;
      res.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse['writeHead']>) {
        this.removeHeader('content-length');
        return writeHead.apply(this, args);
      } as ServerResponse['writeHead'];
      void declared(res, body);
    });
    assert.ok((await server.get()).equals(content));
    assert.ok(server.bytesThroughNode() > content.length);
  });

  test("a middleware that replaced the response's write (compression) sees every byte", async (t) => {
    const content = randomBytes(2 * MiB);
    let written = 0;
    const server = await serve(t, content, (body, res) => {
      const { write } = res;
      res.write = function (this: ServerResponse, chunk: Buffer, ...rest: unknown[]) {
        written += chunk.length;
        return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
      } as ServerResponse['write'];
      void declared(res, body);
    });
    assert.ok((await server.get()).equals(content));
    assert.equal(written, content.length);
  });

  test('a body that already started reading streams the rest through Node', async (t) => {
    const content = randomBytes(4 * MiB);
    const server = await serve(t, content, (body, res) => {
      const length = lengthOf(body);
      body.once('readable', () => void writeResponse(res, { status: 200, headers: { 'Content-Length': length }, body }));
    });
    assert.ok((await server.get()).equals(content));
    assert.ok(server.bytesThroughNode() > content.length);
  });

  test('TLS: the body streams, encrypted by Node', async (t) => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const key = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const dir = await mkdtemp(join(tmpdir(), 'berth-writer-tls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'key.pem'), key);
    const cert = execFileSync('openssl', ['req', '-x509', '-key', join(dir, 'key.pem'), '-subj', '/CN=127.0.0.1', '-days', '1'], {
      encoding: 'utf8',
    });
    assert.ok(new X509Certificate(cert));
    const content = randomBytes(4 * MiB + 1);
    const server = await serve(t, content, plain(), { key, cert });
    assert.ok((await server.get()).equals(content));
    assert.ok(server.bytesThroughNode() > content.length);
  });

  test('HEAD: only the head goes out, and the body is closed', async (t) => {
    let closed: Promise<unknown> | undefined;
    const server = await serve(t, randomBytes(MiB), (body, res) => {
      closed = once(body, 'close');
      void plain()(body, res, res.req);
    });
    assert.equal((await server.get('', 'HEAD')).length, 0);
    await closed;
  });

  test('where sendfile cannot read the file (EINVAL), the body is read the ordinary way', async (t) => {
    // A directory stands in for a filesystem without sendfile support: sendfile refuses it
    // (EINVAL) before sending anything, and the ordinary read then fails with EISDIR.
    const dir = await mkdtemp(join(tmpdir(), 'berth-writer-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    let failed: Promise<unknown> | undefined;
    const server = await serve(t, dir, (body, res) => {
      failed = writeResponse(res, { status: 200, headers: { 'Content-Length': lengthOf(body) }, body });
      // Handled from the start: it may reject before the test awaits it.
      failed.catch(() => undefined);
    });
    get(server.base, (res) => res.resume()).on('error', () => undefined);
    while (!failed) await new Promise((r) => setTimeout(r, 10));
    await assert.rejects(failed, { code: 'EISDIR' });
  });

  test('a client that disconnects mid-body ends the body without an error', async (t) => {
    let served: ((body: FileBody) => void) | undefined;
    const streamed = new Promise<FileBody>((resolve) => (served = resolve));
    const server = await serve(t, randomBytes(64 * MiB), (body, res, req) => {
      plain()(body, res, req);
      served?.(body);
    });
    const req = get(server.base, (res) => res.once('data', () => req.destroy()));
    req.on('error', () => undefined);
    const body = await streamed;
    if (!body.destroyed) await once(body, 'close');
    assert.equal(body.errored, null);
  });
});
