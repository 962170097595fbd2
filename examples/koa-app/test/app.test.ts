import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp } from '../src/app.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const basic = (user: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${user}-password`).toString('base64')}` });

describe('koa-app: a task board with a registry inside', () => {
  let dir: string;
  let server: Server;
  let base: string;
  let close: () => Promise<void>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'koa-app-'));
    const { app, registry } = await createApp(dir);
    server = createServer(app.callback());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => registry.close();
  });
  after(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await close?.();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps serving its own routes and JSON API with its own auth', async () => {
    assert.deepEqual(await (await fetch(`${base}/health`)).json(), { ok: true });
    assert.equal((await fetch(`${base}/api/me`)).status, 401);
    assert.equal((await fetch(`${base}/api/me`, { headers: { Authorization: 'Basic bad' } })).status, 401);
    assert.deepEqual(await (await fetch(`${base}/api/me`, { headers: basic('alice') })).json(), {
      username: 'alice',
      team: 'acme',
      role: 'admin',
    });
    assert.deepEqual(await (await fetch(`${base}/api/tasks`, { headers: basic('bob') })).json(), {
      tasks: [{ id: 1, title: 'ship the app image' }],
    });
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  });

  it('pushes and pulls an image with credentials; roles and teams decide the rest', async () => {
    const v2 = await fetch(`${base}/v2/`);
    assert.equal(v2.status, 401);
    assert.equal(v2.headers.get('www-authenticate'), 'Basic realm="task board"');

    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const layer = randomBytes(4096);
    for (const blob of [config, layer]) {
      const res = await fetch(`${base}/v2/acme/app/blobs/uploads/?digest=${sha256(blob)}`, {
        method: 'POST',
        body: blob,
        headers: basic('alice'),
      });
      assert.equal(res.status, 201);
    }
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
      }),
    );
    const put = await fetch(`${base}/v2/acme/app/manifests/v1`, {
      method: 'PUT',
      body: manifest,
      headers: { ...basic('alice'), 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(put.status, 201);

    // bob (viewer) pulls, but may not push.
    const pulled = await fetch(`${base}/v2/acme/app/manifests/v1`, { headers: basic('bob') });
    assert.ok(Buffer.from(await pulled.arrayBuffer()).equals(manifest));
    const blob = await fetch(`${base}/v2/acme/app/blobs/${sha256(layer)}`, { headers: basic('bob') });
    assert.ok(Buffer.from(await blob.arrayBuffer()).equals(layer));
    assert.equal((await fetch(`${base}/v2/acme/app/blobs/uploads/`, { method: 'POST', headers: basic('bob') })).status, 403);
    // carol (globex) sees nothing of acme, and cannot mount acme's layer into globex.
    assert.equal((await fetch(`${base}/v2/acme/app/tags/list`, { headers: basic('carol') })).status, 403);
    const mount = await fetch(`${base}/v2/globex/app/blobs/uploads/?mount=${sha256(layer)}&from=acme/app`, {
      method: 'POST',
      headers: basic('carol'),
    });
    assert.equal(mount.status, 202);
    assert.deepEqual((await (await fetch(`${base}/v2/_catalog`, { headers: basic('carol') })).json()).repositories, []);

    // The push shows up in the app's own activity feed, for acme only.
    const feed = await (await fetch(`${base}/api/activity`, { headers: basic('bob') })).json();
    assert.deepEqual(feed.pushes, [{ team: 'acme', repository: 'acme/app', tags: ['v1'], digest: sha256(manifest) }]);
    assert.deepEqual((await (await fetch(`${base}/api/activity`, { headers: basic('carol') })).json()).pushes, []);
  });
});
