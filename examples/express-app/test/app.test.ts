import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDashboard } from '../src/app.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const basic = (login: string, password = `${login}-password`) => `Basic ${Buffer.from(`${login}:${password}`).toString('base64')}`;

describe('express-app: a deployment dashboard with a registry inside', () => {
  let dir: string;
  let server: Server;
  let base = '';
  let close: () => Promise<void>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'express-app-'));
    const { app, registry } = await createDashboard({ dataDir: dir, publicUrl: () => base });
    server = createServer(app);
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

  /** What docker and skopeo do: follow the Bearer challenge to the token endpoint with Basic credentials. */
  async function tokenFor(path: string, method: string, login: string, password?: string): Promise<string> {
    const res = await fetch(`${base}${path}`, { method });
    assert.equal(res.status, 401);
    const challenge = res.headers.get('www-authenticate')!;
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    assert.equal(params.realm, `${base}/token`);
    const query = new URLSearchParams({ service: params.service, ...(params.scope ? { scope: params.scope } : {}) });
    const token = await fetch(`${params.realm}?${query}`, { headers: { Authorization: basic(login, password) } });
    if (token.status !== 200) throw new Error(`token endpoint answered ${token.status}`);
    return (await token.json()).token;
  }

  it('keeps serving its own routes and JSON API with its own auth', async () => {
    assert.deepEqual(await (await fetch(`${base}/health`)).json(), { ok: true });
    assert.equal((await fetch(`${base}/api/me`)).status, 401);
    assert.deepEqual(await (await fetch(`${base}/api/me`, { headers: { Authorization: basic('dana') } })).json(), {
      login: 'dana',
      orgs: { initech: 'deployer' },
    });
    const created = await fetch(`${base}/api/deployments`, {
      method: 'POST',
      headers: { Authorization: basic('dana'), 'Content-Type': 'application/json' },
      body: JSON.stringify({ image: 'initech/web:v1' }),
    });
    assert.equal(created.status, 201);
    const refused = await fetch(`${base}/api/deployments`, {
      method: 'POST',
      headers: { Authorization: basic('erin'), 'Content-Type': 'application/json' },
      body: JSON.stringify({ image: 'initech/web:v2' }),
    });
    assert.equal(refused.status, 403);
    const list = await (await fetch(`${base}/api/deployments`, { headers: { Authorization: basic('erin') } })).json();
    assert.deepEqual(
      list.deployments.map((d: { image: string }) => d.image),
      ['initech/web:v1'],
    );
  });

  it('logs in with a token, pushes and pulls; watchers pull only; wrong passwords get no token', async () => {
    await assert.rejects(tokenFor('/v2/', 'GET', 'dana', 'wrong'), /401/);
    const login = await tokenFor('/v2/', 'GET', 'dana');
    assert.equal((await fetch(`${base}/v2/`, { headers: { Authorization: `Bearer ${login}` } })).status, 200);

    const push = { Authorization: `Bearer ${await tokenFor('/v2/initech/web/blobs/uploads/', 'POST', 'dana')}` };
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const layer = randomBytes(5000);
    for (const blob of [config, layer]) {
      const res = await fetch(`${base}/v2/initech/web/blobs/uploads/?digest=${sha256(blob)}`, {
        method: 'POST',
        body: blob,
        headers: push,
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
    const put = await fetch(`${base}/v2/initech/web/manifests/v1`, {
      method: 'PUT',
      body: manifest,
      headers: { ...push, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(put.status, 201);

    // erin watches initech: her token for pull,push carries pull only.
    const erin = { Authorization: `Bearer ${await tokenFor('/v2/initech/web/blobs/uploads/', 'POST', 'erin')}` };
    const pulled = await fetch(`${base}/v2/initech/web/manifests/v1`, { headers: erin });
    assert.ok(Buffer.from(await pulled.arrayBuffer()).equals(manifest));
    const erinPush = await fetch(`${base}/v2/initech/web/blobs/uploads/`, { method: 'POST', headers: erin });
    assert.equal(erinPush.status, 401);
    assert.match(erinPush.headers.get('www-authenticate')!, /error="insufficient_scope"/);
    // dana's initech token is worth nothing in hooli.
    assert.equal((await fetch(`${base}/v2/hooli/api/tags/list`, { headers: push })).status, 401);
  });
});
