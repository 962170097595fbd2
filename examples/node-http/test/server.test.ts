import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Registry } from '@berthjs/core';
import { createService } from '../src/server.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('node-http: a plain node:http service routing to Berth by hand', () => {
  let dir: string;
  let server: Server;
  let registry: Registry;
  let base = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'node-http-'));
    ({ server, registry } = await createService(dir, () => base));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await registry?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const token = async (scope: string, user: string, password: string) => {
    const res = await fetch(`${base}/token?service=node-http-registry&scope=${scope}`, {
      headers: { Authorization: basic(user, password) },
    });
    return res.status === 200 ? `Bearer ${(await res.json()).token}` : `status ${res.status}`;
  };

  it('serves its own routes', async () => {
    assert.deepEqual(await (await fetch(`${base}/health`)).json(), { ok: true });
    assert.equal((await (await fetch(`${base}/status`)).json()).pushes, 0);
    assert.equal((await fetch(`${base}/elsewhere`)).status, 404);
  });

  it('pushes with the bot, pulls with the auditor, refuses wrong passwords and pushes outside ci/', async () => {
    assert.equal(await token('repository:ci/app:pull,push', 'build-bot', 'nope'), 'status 401');
    const bot = await token('repository:ci/app:pull,push', 'build-bot', 'bot-secret');
    const config = Buffer.from('{}');
    const put = await fetch(`${base}/v2/ci/app/blobs/uploads/?digest=${sha256(config)}`, {
      method: 'POST',
      body: config,
      headers: { Authorization: bot },
    });
    assert.equal(put.status, 201);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: 'application/vnd.example.report',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: 2 },
        layers: [],
      }),
    );
    const tagged = await fetch(`${base}/v2/ci/app/manifests/build-1`, {
      method: 'PUT',
      body: manifest,
      headers: { Authorization: bot, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(tagged.status, 201);
    assert.equal((await (await fetch(`${base}/status`)).json()).pushes, 1);

    const auditor = await token('repository:ci/app:pull,push', 'auditor', 'audit-secret');
    const pulled = await fetch(`${base}/v2/ci/app/manifests/build-1`, { headers: { Authorization: auditor } });
    assert.ok(Buffer.from(await pulled.arrayBuffer()).equals(manifest));
    const head = await fetch(`${base}/v2/ci/app/blobs/${sha256(config)}`, { method: 'HEAD', headers: { Authorization: auditor } });
    assert.equal(head.headers.get('content-length'), '2');
    assert.equal((await fetch(`${base}/v2/ci/app/blobs/uploads/`, { method: 'POST', headers: { Authorization: auditor } })).status, 401);
    const elsewhere = await token('repository:prod/app:pull,push', 'build-bot', 'bot-secret');
    assert.equal(
      (await fetch(`${base}/v2/prod/app/blobs/uploads/`, { method: 'POST', headers: { Authorization: elsewhere } })).status,
      401,
    );
  });
});
