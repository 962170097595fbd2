// A body that announces more bytes than it sends and then closes the connection used to kill the
// process (an unhandled 'error' on the core's hashing stream). Run against `berth serve` itself,
// since that is what a stranger on the network reaches.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawnBerth, type BerthProcess } from './support/cli.js';
import { TestClient, randomBlob, sha256 } from './support/client.js';

/** Send `head` plus `sent` body bytes on a raw socket, then close it at once. */
function cutRequest(url: string, head: string, sent: Buffer): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(head);
      socket.end(sent);
      socket.destroy();
      resolve();
    });
    socket.on('error', () => resolve());
  });
}

describe('hostile clients: bodies cut short', () => {
  let dir: string;
  let berth: BerthProcess;
  let client: TestClient;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-hostile-'));
    berth = await spawnBerth(['--data-dir', dir]);
    client = new TestClient(berth.url);
  });
  after(async () => {
    await berth?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function alive(): Promise<void> {
    // Give the server a moment to trip over the cut request before asking.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(berth.child.exitCode, null, 'the server process died');
    const res = await client.req('/v2/');
    assert.equal(res.status, 200);
  }

  it('a PATCH cut short leaves the process up and the session at its last good offset', async () => {
    const start = await client.req('/v2/cut/patch/blobs/uploads/', { method: 'POST' });
    const location = start.header('location')!;
    const first = randomBlob(1000);
    const ok = await client.req(location, { method: 'PATCH', body: first, headers: { 'Content-Type': 'application/octet-stream' } });
    assert.equal(ok.status, 202);
    for (let i = 0; i < 5; i++) {
      await cutRequest(
        berth.url,
        `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n`,
        randomBlob(10 * i),
      );
    }
    await alive();
    const status = await client.req(location);
    assert.equal(status.status, 204);
    assert.equal(status.header('range'), '0-999');
  });

  it('a closing PUT cut short stores nothing under the digest', async () => {
    const blob = randomBlob(5000);
    const digest = sha256(blob);
    const start = await client.req('/v2/cut/put/blobs/uploads/', { method: 'POST' });
    const location = start.header('location')!;
    await cutRequest(
      berth.url,
      `PUT ${location}?digest=${digest} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${blob.length}\r\n\r\n`,
      blob.subarray(0, 100),
    );
    await alive();
    assert.equal((await client.req(`/v2/cut/put/blobs/${digest}`, { method: 'HEAD' })).status, 404);
    assert.equal((await client.req(location)).header('range'), '0-0');
  });

  it('a monolithic POST cut short stores nothing under the digest', async () => {
    const blob = randomBlob(5000);
    const digest = sha256(blob);
    await cutRequest(
      berth.url,
      `POST /v2/cut/post/blobs/uploads/?digest=${digest} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${blob.length}\r\n\r\n`,
      blob.subarray(0, 100),
    );
    await alive();
    assert.equal((await client.req(`/v2/cut/post/blobs/${digest}`, { method: 'HEAD' })).status, 404);
  });

  it('a manifest PUT cut short leaves the process up', async () => {
    await cutRequest(
      berth.url,
      `PUT /v2/cut/manifest/manifests/latest HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 1000\r\n\r\n`,
      Buffer.from('{"schemaVersion":'),
    );
    await alive();
    assert.equal((await client.req('/v2/cut/manifest/manifests/latest')).status, 404);
  });
});
