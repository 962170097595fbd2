import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { watchSend } from '../src/send-idle.js';

const MiB = 1024 * 1024;

/** A server answering every GET with `size` bytes through `pipeline`, watched by watchSend; resolves each response's outcome. */
async function serve(t: { after(fn: () => unknown): void }, size: number, idleMs: number) {
  const outcomes: Promise<string>[] = [];
  const server = createServer((_req, res: ServerResponse) => {
    res.writeHead(200, { 'Content-Length': String(size) });
    const stop = watchSend(res, idleMs);
    const chunk = Buffer.alloc(64 * 1024, 7);
    const body = Readable.from(
      (function* () {
        for (let sent = 0; sent < size; sent += chunk.length) yield chunk;
      })(),
    );
    outcomes.push(
      pipeline(body, res)
        .then(
          () => 'sent',
          (error: NodeJS.ErrnoException) => error.code ?? error.message,
        )
        .finally(stop),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const socket = connect(port, '127.0.0.1');
  socket.write(`GET / HTTP/1.1\r\nHost: x\r\n\r\n`);
  return {
    socket,
    outcome: async () => {
      while (outcomes.length === 0) await new Promise((r) => setTimeout(r, 5));
      return outcomes[0];
    },
  };
}

test('a download the client stopped reading ends after the idle time, and its connection closes', { timeout: 10_000 }, async (t) => {
  const { socket, outcome } = await serve(t, 256 * MiB, 300);
  socket.pause();
  const started = Date.now();
  // pipeline reports the destroyed response as a premature close.
  assert.equal(await outcome(), 'ERR_STREAM_PREMATURE_CLOSE');
  const took = Date.now() - started;
  assert.ok(took >= 300 && took < 5000, `took ${took} ms`);
  const closed = new Promise((resolve) => socket.once('close', resolve));
  socket.resume();
  await closed;
});

test('a slow client that keeps reading is not cut', { timeout: 20_000 }, async (t) => {
  const { socket, outcome } = await serve(t, 8 * MiB, 400);
  let received = 0;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    socket.pause();
    setTimeout(() => socket.resume(), 10);
  });
  assert.equal(await outcome(), 'sent');
  while (received < 8 * MiB) await new Promise((r) => setTimeout(r, 20));
  socket.destroy();
});

test('0 watches nothing', () => {
  const stop = watchSend({} as ServerResponse, 0);
  stop();
});
