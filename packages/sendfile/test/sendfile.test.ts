// sendFile over real TCP connections: exact bytes, slow and vanishing clients, short files, and
// which responses zeroCopySocket accepts.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request, type ServerResponse } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { sendFile, sendfileAvailable, zeroCopySocket } from '../src/index.js';

const MiB = 1024 * 1024;

async function fileWith(t: TestContext, content: Buffer): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-sendfile-'));
  const path = join(dir, 'file');
  await writeFile(path, content);
  const fd = openSync(path, 'r');
  t.after(async () => {
    closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  });
  return fd;
}

/** A connected pair: `server` is the accepted side, `client` the connecting one. */
async function socketPair(t: TestContext): Promise<{ server: Socket; client: Socket }> {
  const listener = createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const accepted = once(listener, 'connection') as Promise<[Socket]>;
  const client = connect((listener.address() as AddressInfo).port, '127.0.0.1');
  const [server] = await accepted;
  await once(client, 'connect');
  // Resets are part of some tests; the http server has its own handlers for them.
  for (const socket of [server, client]) socket.on('error', () => undefined);
  t.after(() => {
    client.destroy();
    server.destroy();
    listener.close();
  });
  return { server, client };
}

function collect(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve, reject) => {
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

test('the addon is built on Linux (everything below would otherwise test nothing)', () => {
  assert.equal(sendfileAvailable, process.platform === 'linux');
});

describe('sendFile', { skip: !sendfileAvailable && 'no sendfile(2) here' }, () => {
  test('sends exactly the range asked for, and the bytes bypass Node streams', async (t) => {
    const content = randomBytes(8 * MiB);
    const fd = await fileWith(t, content);
    const { server, client } = await socketPair(t);
    const received = collect(client);
    await sendFile(server, fd, 1000, 5 * MiB);
    server.end();
    assert.deepEqual(await received, content.subarray(1000, 1000 + 5 * MiB));
    assert.equal(server.bytesWritten, 0);
  });

  test('waits for a client that stops reading, without blocking the event loop', async (t) => {
    const content = randomBytes(48 * MiB);
    const fd = await fileWith(t, content);
    const { server, client } = await socketPair(t);
    client.pause();
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    t.after(() => clearInterval(ticker));
    const sent = sendFile(server, fd, 0, content.length);
    // Far more than any socket buffer: the transfer must be parked on the full socket.
    await new Promise((r) => setTimeout(r, 300));
    const ticksWhileStalled = ticks;
    const received = collect(client);
    client.resume();
    await sent;
    server.end();
    assert.ok(ticksWhileStalled >= 20, `event loop ran ${ticksWhileStalled} times in 300 ms`);
    assert.ok((await received).equals(content));
  });

  test('onStart hands over the count of bytes gone out, which stops while the client does not read', async (t) => {
    const fd = await fileWith(t, randomBytes(48 * MiB));
    const { server, client } = await socketPair(t);
    client.pause();
    let sent = () => -1;
    const transfer = sendFile(server, fd, 0, 48 * MiB, { onStart: (progress) => (sent = progress) });
    transfer.catch(() => undefined);
    // The socket buffers fill, then nothing moves.
    let before = -1;
    for (let i = 0; i < 50 && sent() !== before; i++) {
      before = sent();
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(before > 0 && before < 48 * MiB, `sent ${before}`);
    assert.equal(sent(), before, 'no progress while the client reads nothing');
    // What a watchdog does with a stalled transfer: the socket goes, and so does the transfer.
    server.destroy();
    await assert.rejects(transfer, (err: NodeJS.ErrnoException & { sent: number }) => {
      assert.equal(err.code, 'ECANCELED');
      assert.equal(err.sent, before);
      return true;
    });
    assert.equal(sent(), before, 'the count stays readable after the transfer ended');
  });

  test('the count of a slow client that keeps reading keeps moving, and ends at the length', async (t) => {
    const content = randomBytes(8 * MiB);
    const fd = await fileWith(t, content);
    const { server, client } = await socketPair(t);
    const chunks: Buffer[] = [];
    client.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      client.pause();
      setTimeout(() => client.resume(), 20);
    });
    const ended = once(client, 'end');
    let sent = () => 0;
    const seen: number[] = [];
    const transfer = sendFile(server, fd, 0, content.length, { onStart: (progress) => (sent = progress) });
    const sampler = setInterval(() => seen.push(sent()), 100);
    await transfer;
    clearInterval(sampler);
    server.end();
    await ended;
    assert.ok(Buffer.concat(chunks).equals(content));
    // The sender wakes each time a third of the socket's buffer is free again: steps, not a ramp.
    assert.ok(new Set(seen).size >= 2, `the count moved: ${seen.join(' ')}`);
    assert.ok(
      seen.every((n, i) => i === 0 || n >= seen[i - 1]),
      `the count never goes back: ${seen.join(' ')}`,
    );
    assert.equal(sent(), content.length);
  });

  test('the caller may close its descriptor as soon as the transfer started', async (t) => {
    const content = randomBytes(4 * MiB);
    const dir = await mkdtemp(join(tmpdir(), 'berth-sendfile-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'file'), content);
    const fd = openSync(join(dir, 'file'), 'r');
    const { server, client } = await socketPair(t);
    const received = collect(client);
    const sent = sendFile(server, fd, 0, content.length);
    closeSync(fd);
    const reused = openSync(join(dir, 'file'), 'r'); // likely reuses the number; must not matter
    t.after(() => closeSync(reused));
    await sent;
    server.end();
    assert.ok((await received).equals(content));
  });

  test('a client that goes away fails the transfer instead of hanging it', async (t) => {
    const fd = await fileWith(t, randomBytes(64 * MiB));
    const { server, client } = await socketPair(t);
    client.once('data', () => client.destroy());
    await assert.rejects(sendFile(server, fd, 0, 64 * MiB), (err: NodeJS.ErrnoException) => {
      assert.ok(['EPIPE', 'ECONNRESET', 'ECANCELED'].includes(err.code ?? ''), String(err.code));
      return true;
    });
  });

  test('destroying the socket cancels a parked transfer and really closes the connection', async (t) => {
    const fd = await fileWith(t, randomBytes(64 * MiB));
    const { server, client } = await socketPair(t);
    client.pause();
    const sent = sendFile(server, fd, 0, 64 * MiB);
    await new Promise((r) => setTimeout(r, 100));
    server.destroy();
    await assert.rejects(sent, { code: 'ECANCELED' });
    // Only our duplicate of the descriptor could keep the connection open now.
    client.resume();
    const closed = once(client, 'close');
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('connection stayed open')), 5000))]);
  });

  test('a descriptor sendfile cannot read from fails with EINVAL before any byte went out', async (t) => {
    const { server, client } = await socketPair(t);
    client.resume();
    // A directory cannot splice its pages into a socket, like files on filesystems without
    // sendfile support (for which the fs store streams the body instead).
    const dir = openSync(tmpdir(), 'r');
    t.after(() => closeSync(dir));
    await assert.rejects(sendFile(server, dir, 0, 10), { code: 'EINVAL', sent: 0 });
  });

  test('a worker thread terminated mid-transfer shuts down cleanly and closes the connection', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-sendfile-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'file');
    await writeFile(path, randomBytes(64 * MiB));
    const worker = new Worker(new URL('./fixtures/parked-transfer.mjs', import.meta.url), { workerData: { path, length: 64 * MiB } });
    const [port] = (await once(worker, 'message')) as [number];
    const client = connect(port, '127.0.0.1');
    client.on('error', () => undefined);
    client.pause();
    await once(worker, 'message'); // parked on the full socket
    // Node aborts the whole process if a worker's loop closes with a handle open.
    await worker.terminate();
    client.resume();
    await Promise.race([
      once(client, 'close'),
      new Promise((_, reject) => setTimeout(() => reject(new Error('connection stayed open')), 5000)),
    ]);
  });

  test('a file shorter than the range fails with ERR_FILE_TOO_SHORT after what it had', async (t) => {
    const content = randomBytes(MiB);
    const fd = await fileWith(t, content);
    const { server, client } = await socketPair(t);
    const received = collect(client);
    await assert.rejects(sendFile(server, fd, 0, 2 * MiB), { code: 'ERR_FILE_TOO_SHORT' });
    server.end();
    assert.ok((await received).equals(content));
  });
});

describe('zeroCopySocket', { skip: !sendfileAvailable && 'no sendfile(2) here' }, () => {
  /** Runs `inspect` on the response to one request with `method`, then answers it. */
  async function withResponse(t: TestContext, method: string, inspect: (res: ServerResponse) => void): Promise<void> {
    const server = createHttpServer((_req, res) => {
      inspect(res);
      res.end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    await new Promise<void>((resolve, reject) => {
      const req = request({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', method }, (res) => {
        res.resume();
        res.once('end', resolve);
      });
      req.once('error', reject);
      req.end();
    });
  }

  test('takes a fresh GET response with the exact Content-Length', async (t) => {
    await withResponse(t, 'GET', (res) => {
      res.setHeader('content-length', '10');
      assert.ok(zeroCopySocket(res, 10));
      assert.equal(zeroCopySocket(res, 11), undefined, 'another length');
      res.removeHeader('content-length');
      assert.equal(zeroCopySocket(res, 10), undefined, 'no length: chunked framing');
    });
  });

  test('refuses HEAD, responses whose head is out, and things that are not responses', async (t) => {
    await withResponse(t, 'HEAD', (res) => {
      res.setHeader('content-length', '10');
      assert.equal(zeroCopySocket(res, 10), undefined);
    });
    await withResponse(t, 'GET', (res) => {
      res.setHeader('content-length', '0');
      res.flushHeaders();
      assert.equal(zeroCopySocket(res, 0), undefined);
    });
    assert.equal(zeroCopySocket({ socket: {} }, 10), undefined);
  });
});
