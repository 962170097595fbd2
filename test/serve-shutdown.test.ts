// SIGTERM to `berth serve`: an upload in flight completes within --shutdown-timeout, a stalled
// client is cut at the deadline (its session stays resumable), and the exit code is 0.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBlob, rawRequest, sha256, startSession, streamedPatch } from './support/client.js';
import { spawnBerth } from './support/cli.js';

describe('graceful shutdown of berth serve', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-shutdown-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lets a long upload finish after SIGTERM, refuses new connections, then exits 0', async () => {
    const server = await spawnBerth(['--data-dir', join(dir, 'a'), '--shutdown-timeout', '20'], {}, { built: true });
    const data = randomBlob(4 * 1024 * 1024);
    const location = await startSession(server.url, 'drain/long');
    const { req, response } = streamedPatch(server.url, location);
    const piece = 256 * 1024;
    req.write(data.subarray(0, piece));
    await sleep(200);
    server.child.kill('SIGTERM');
    const signalled = Date.now();
    await sleep(200);
    // Listening has stopped: a new connection is refused.
    await assert.rejects(rawRequest(server.url, '/v2/'), /ECONNREFUSED/);
    for (let offset = piece; offset < data.length; offset += piece) {
      req.write(data.subarray(offset, offset + piece));
      await sleep(60);
    }
    req.end();
    const res = await response;
    assert.ok(!(res instanceof Error), String(res));
    assert.equal(res.statusCode, 202);
    assert.equal(res.headers.range, `0-${data.length - 1}`);
    res.resume();
    const { code } = await server.exit;
    assert.equal(code, 0);
    assert.ok(Date.now() - signalled < 15_000, 'it did not wait for the whole timeout');
    const start = server.logs.find((l) => l.msg === 'shutting down');
    const end = server.logs.find((l) => l.msg === 'shutdown complete');
    assert.deepEqual([start?.signal, start?.inFlight, start?.timeoutSeconds], ['SIGTERM', 1, 20]);
    assert.equal(end?.cut, 0);
    const line = server.logs.find((l) => l.msg === 'request' && l.method === 'PATCH');
    assert.deepEqual([line?.status, line?.bytesIn], [202, data.length]);
  });

  it('cuts a stalled upload at the deadline, exits 0, and the session resumes after a restart', async () => {
    const dataDir = join(dir, 'b');
    const server = await spawnBerth(['--data-dir', dataDir, '--shutdown-timeout', '1'], {}, { built: true });
    const first = randomBlob(300_000);
    const rest = randomBlob(123_456);
    const location = await startSession(server.url, 'drain/stalled');
    const chunk = await rawRequest(server.url, location, {
      method: 'PATCH',
      body: first,
      headers: { 'Content-Range': `0-${first.length - 1}` },
    });
    assert.equal(chunk.status, 202);
    const { req, response } = streamedPatch(server.url, location);
    req.write(randomBlob(50_000)); // and then nothing more: the client stalls
    await sleep(200);
    const signalled = Date.now();
    server.child.kill('SIGTERM');
    const { code } = await server.exit;
    const took = Date.now() - signalled;
    assert.equal(code, 0);
    assert.ok(took >= 900 && took < 6000, `exited ${took} ms after SIGTERM`);
    assert.equal(server.logs.find((l) => l.msg === 'shutdown complete')?.cut, 1);
    assert.ok((await response) instanceof Error, 'the stalled request was cut');

    const again = await spawnBerth(['--data-dir', dataDir], {}, { built: true });
    try {
      const status = await rawRequest(again.url, location);
      assert.equal(status.status, 204);
      assert.equal(status.header('range'), `0-${first.length - 1}`, 'the cut request left nothing behind');
      const put = await rawRequest(again.url, `${location}?digest=${sha256(Buffer.concat([first, rest]))}`, {
        method: 'PUT',
        body: rest,
        headers: { 'Content-Range': `${first.length}-${first.length + rest.length - 1}` },
      });
      assert.equal(put.status, 201, put.text);
    } finally {
      await again.stop();
    }
  });
});
