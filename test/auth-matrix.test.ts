import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { basicAuth, type BasicPrincipal } from '@berthjs/auth';
import type { Action, AuthorizeRequest } from '@berthjs/core';
import {
  assertError,
  EMPTY_CONFIG,
  OCI_MANIFEST,
  randomBlob,
  sha256,
  TestClient,
  type RawRequest,
  type RawResponse,
} from './support/client.js';
import { startRegistry, type ExtraOptions, type RunningRegistry } from './support/servers.js';
import { embeddedStores, type StoreSet } from './support/stores.js';

/**
 * Every endpoint × action × caller against tenant `acme`, plus the ways content could cross from
 * tenant `acme` to tenant `globex` (same digests in both, mounts, referrers, catalog, tags).
 */

type Caller = 'anonymous' | 'reader' | 'writer' | 'other';
const CALLERS: Caller[] = ['anonymous', 'reader', 'writer', 'other'];

/** user → tenant → actions. `bridge` may push in globex and pull in acme: mounts must still not cross. */
const GRANTS: Record<string, Record<string, Action[]>> = {
  reader: { acme: ['pull'] },
  writer: { acme: ['pull', 'push', 'delete'] },
  other: { globex: ['pull', 'push', 'delete'] },
  bridge: { globex: ['pull', 'push'], acme: ['pull'] },
};
const tenantOf = (repository: string) => repository.split('/')[0];
const authorize = ({ principal, action, repository }: AuthorizeRequest) =>
  GRANTS[(principal as BasicPrincipal).username]?.[tenantOf(repository)]?.includes(action) ?? false;

function authOptions(extra: ExtraOptions = {}): ExtraOptions {
  return { ...basicAuth({ verifyPassword: (user, pass) => user in GRANTS && pass === `${user}-pw` }), authorize, tenantOf, ...extra };
}
const credentials = (user: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}` });

/** An image whose layers are given, plus its bytes and digest. */
function imageManifest(config: Buffer, layers: Buffer[], extra: Record<string, unknown> = {}) {
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(l), size: l.length })),
    ...extra,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { bytes, digest: sha256(bytes) };
}

describe('authorization matrix (Basic auth, tenants by first path segment)', () => {
  let stores: StoreSet;
  let server: RunningRegistry;
  const clients = {} as Record<Caller | 'bridge', TestClient>;
  // Tenant acme's content; none of it may show in a response to another tenant.
  const shared = randomBlob(2048); // pushed by both tenants
  const acmeLayer = randomBlob(3000);
  const acmeConfig = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', tenant: 'acme' }));
  const acmeImage = imageManifest(acmeConfig, [shared, acmeLayer]);
  const acmeSignature = imageManifest(Buffer.from('{}'), [], {
    artifactType: 'application/vnd.test.signature',
    config: { mediaType: EMPTY_CONFIG, digest: sha256('{}'), size: 2 },
    subject: { mediaType: OCI_MANIFEST, digest: acmeImage.digest, size: acmeImage.bytes.length },
  });
  const secrets = [sha256(acmeLayer), sha256(acmeConfig), acmeImage.digest, acmeSignature.digest];

  before(async () => {
    stores = await embeddedStores();
    server = await startRegistry('koa', stores, authOptions());
    for (const user of ['reader', 'writer', 'other', 'bridge'] as const) clients[user] = new TestClient(server.url, credentials(user));
    clients.anonymous = new TestClient(server.url);
    const writer = clients.writer;
    for (const blob of [shared, acmeLayer, acmeConfig, Buffer.from('{}')]) await writer.pushBlob('acme/app', blob);
    assert.equal((await writer.pushManifest('acme/app', 'v1', acmeImage.bytes.toString())).status, 201);
    assert.equal((await writer.pushManifest('acme/app', acmeSignature.digest, acmeSignature.bytes.toString())).status, 201);
    // globex has its own image over the same shared layer.
    const globexConfig = Buffer.from(JSON.stringify({ architecture: 'arm64', os: 'linux', tenant: 'globex' }));
    for (const blob of [shared, globexConfig]) await clients.other.pushBlob('globex/app', blob);
    assert.equal(
      (await clients.other.pushManifest('globex/app', 'v1', imageManifest(globexConfig, [shared]).bytes.toString())).status,
      201,
    );
  });
  after(async () => {
    await server?.stop();
    await stores?.destroy();
  });

  /** Nothing of acme's content in any header or the body of a response to someone outside acme. */
  function assertNoLeak(res: RawResponse, what: string) {
    const text = [res.text, ...Object.values(res.headers).flat()].join('\n');
    for (const secret of secrets) assert.ok(!text.includes(secret.slice(7)), `${what} leaks ${secret}: ${text}`);
  }

  let n = 0;
  /** A fresh session, blob, tag or manifest of acme/app for a destructive row. */
  const fixtures = {
    session: async () => (await clients.writer.req('/v2/acme/app/blobs/uploads/', { method: 'POST' })).header('location')!,
    blob: async () => clients.writer.pushBlob('acme/app', randomBlob(100)),
    tag: async () => {
      const tag = `t${++n}`;
      assert.equal((await clients.writer.pushManifest('acme/app', tag, acmeImage.bytes.toString())).status, 201);
      return tag;
    },
    manifest: async () => {
      const { bytes, digest } = imageManifest(acmeConfig, [shared], { annotations: { n: String(++n) } });
      assert.equal((await clients.writer.pushManifest('acme/app', digest, bytes.toString())).status, 201);
      return digest;
    },
  };

  const blobA = sha256(acmeLayer);
  const fresh = randomBlob(10);
  const ROWS: { name: string; expect: [number, number, number, number]; request: () => Promise<[string, RawRequest?]> }[] = [
    { name: 'GET /v2/', expect: [401, 200, 200, 200], request: async () => ['/v2/'] },
    { name: 'GET catalog', expect: [401, 200, 200, 200], request: async () => ['/v2/_catalog'] },
    { name: 'GET tags list', expect: [401, 200, 200, 403], request: async () => ['/v2/acme/app/tags/list'] },
    { name: 'GET manifest by tag', expect: [401, 200, 200, 403], request: async () => ['/v2/acme/app/manifests/v1'] },
    {
      name: 'HEAD manifest by digest',
      expect: [401, 200, 200, 403],
      request: async () => [`/v2/acme/app/manifests/${acmeImage.digest}`, { method: 'HEAD' }],
    },
    {
      name: 'PUT manifest by tag',
      expect: [401, 403, 201, 403],
      request: async () => [
        '/v2/acme/app/manifests/pushed',
        { method: 'PUT', body: acmeImage.bytes, headers: { 'Content-Type': OCI_MANIFEST } },
      ],
    },
    {
      name: 'DELETE tag',
      expect: [401, 403, 202, 403],
      request: async () => [`/v2/acme/app/manifests/${await fixtures.tag()}`, { method: 'DELETE' }],
    },
    {
      name: 'DELETE manifest by digest',
      expect: [401, 403, 202, 403],
      request: async () => [`/v2/acme/app/manifests/${await fixtures.manifest()}`, { method: 'DELETE' }],
    },
    { name: 'GET blob', expect: [401, 200, 200, 403], request: async () => [`/v2/acme/app/blobs/${blobA}`] },
    { name: 'HEAD blob', expect: [401, 200, 200, 403], request: async () => [`/v2/acme/app/blobs/${blobA}`, { method: 'HEAD' }] },
    {
      name: 'DELETE blob',
      expect: [401, 403, 202, 403],
      request: async () => [`/v2/acme/app/blobs/${await fixtures.blob()}`, { method: 'DELETE' }],
    },
    { name: 'POST upload', expect: [401, 403, 202, 403], request: async () => ['/v2/acme/app/blobs/uploads/', { method: 'POST' }] },
    {
      name: 'POST monolithic upload',
      expect: [401, 403, 201, 403],
      request: async () => [
        `/v2/acme/app/blobs/uploads/?digest=${sha256(fresh)}`,
        { method: 'POST', body: fresh, headers: { 'Content-Type': 'application/octet-stream' } },
      ],
    },
    {
      name: 'PATCH upload',
      expect: [401, 403, 202, 403],
      request: async () => [await fixtures.session(), { method: 'PATCH', body: fresh, headers: { 'Content-Range': '0-9' } }],
    },
    {
      name: 'PUT upload',
      expect: [401, 403, 201, 403],
      request: async () => [`${await fixtures.session()}?digest=${sha256(fresh)}`, { method: 'PUT', body: fresh }],
    },
    { name: 'GET upload status', expect: [401, 403, 204, 403], request: async () => [await fixtures.session()] },
    { name: 'DELETE upload', expect: [401, 403, 204, 403], request: async () => [await fixtures.session(), { method: 'DELETE' }] },
    { name: 'GET referrers', expect: [401, 200, 200, 403], request: async () => [`/v2/acme/app/referrers/${acmeImage.digest}`] },
    {
      name: 'POST mount within acme',
      expect: [401, 403, 201, 403],
      request: async () => [`/v2/acme/copy/blobs/uploads/?mount=${blobA}&from=acme/app`, { method: 'POST' }],
    },
  ];

  for (const row of ROWS) {
    it(`${row.name}: ${CALLERS.map((c, i) => `${c} ${row.expect[i]}`).join(', ')}`, async () => {
      for (const [i, caller] of CALLERS.entries()) {
        const [path, init] = await row.request();
        const res = await clients[caller].req(path, init);
        assert.equal(res.status, row.expect[i], `${caller}: ${res.status} ${res.text}`);
        if (res.status === 401) {
          if (init?.method !== 'HEAD') assertError(res, 401, 'UNAUTHORIZED');
          assert.equal(res.header('www-authenticate'), 'Basic realm="berth"');
        }
        if (res.status === 403 && init?.method !== 'HEAD') assertError(res, 403, 'DENIED');
        if (caller === 'anonymous' || caller === 'other') assertNoLeak(res, `${row.name} as ${caller}`);
      }
    });
  }

  it('a refusal looks the same whether the repository or digest exists or not', async () => {
    const strip = (res: RawResponse) => [res.status, res.text.replaceAll('acme/app', 'X').replaceAll('acme/none', 'X')];
    for (const caller of ['other', 'anonymous'] as const) {
      for (const [real, fake] of [
        [`/v2/acme/app/blobs/${blobA}`, `/v2/acme/none/blobs/${blobA}`],
        [`/v2/acme/app/blobs/${blobA}`, `/v2/acme/app/blobs/${sha256('nothing')}`],
        ['/v2/acme/app/tags/list', '/v2/acme/none/tags/list'],
        [`/v2/acme/app/manifests/${acmeImage.digest}`, `/v2/acme/none/manifests/${acmeImage.digest}`],
      ]) {
        const [a, b] = [await clients[caller].req(real), await clients[caller].req(fake)];
        assert.deepEqual(
          strip(a).map((x) => String(x).replace(blobA, 'D').replace(sha256('nothing'), 'D')),
          strip(b).map((x) => String(x).replace(blobA, 'D').replace(sha256('nothing'), 'D')),
        );
      }
    }
  });

  it('the same digest in both tenants: each sees only its own link', async () => {
    const other = clients.other;
    assert.equal((await other.req(`/v2/globex/app/blobs/${sha256(shared)}`, { method: 'HEAD' })).status, 200);
    for (const secret of [blobA, sha256(acmeConfig)]) {
      const head = await other.req(`/v2/globex/app/blobs/${secret}`, { method: 'HEAD' });
      assert.equal(head.status, 404);
      assertNoLeak(head, 'HEAD');
      const get = await other.req(`/v2/globex/app/blobs/${secret}`);
      assertError(get, 404, 'BLOB_UNKNOWN');
    }
    const manifest = await other.req(`/v2/globex/app/manifests/${acmeImage.digest}`);
    assertError(manifest, 404, 'MANIFEST_UNKNOWN');
    // A manifest may not reference another tenant's blob.
    const stolen = imageManifest(Buffer.from('{}'), [acmeLayer], { config: { mediaType: EMPTY_CONFIG, digest: sha256('{}'), size: 2 } });
    await other.pushBlob('globex/app', Buffer.from('{}'));
    assertError(await other.pushManifest('globex/app', 'stolen', stolen.bytes.toString()), 400, 'MANIFEST_BLOB_UNKNOWN');
    // Deleting one tenant's link leaves the other's.
    await clients.writer.pushBlob('acme/dedup', shared);
    assert.equal((await clients.writer.req(`/v2/acme/dedup/blobs/${sha256(shared)}`, { method: 'DELETE' })).status, 202);
    assert.equal((await other.req(`/v2/globex/app/blobs/${sha256(shared)}`)).body.equals(shared), true);
  });

  it('a mount from another tenant is a plain upload session, even for a caller who may pull there', async () => {
    for (const user of ['other', 'bridge'] as const) {
      for (const query of [`mount=${blobA}&from=acme/app`, `mount=${blobA}`]) {
        const target = `globex/m-${user}-${++n}`;
        const res = await clients[user].req(`/v2/${target}/blobs/uploads/?${query}`, { method: 'POST' });
        assert.equal(res.status, 202, `${user} ${query}: ${res.text}`);
        assert.match(res.header('location')!, new RegExp(`^/v2/${target}/blobs/uploads/[0-9a-f-]{36}$`));
        assertNoLeak(res, `mount by ${user}`);
        assert.equal((await clients[user].req(`/v2/${target}/blobs/${blobA}`, { method: 'HEAD' })).status, 404);
      }
    }
    // Within a tenant, automatic mount still finds the blob.
    const res = await clients.writer.req(`/v2/acme/auto/blobs/uploads/?mount=${blobA}`, { method: 'POST' });
    assert.equal(res.status, 201);
  });

  it('without tenantOf, the same cross-tenant mount would succeed (the control)', async () => {
    const open = await startRegistry('koa', stores, authOptions({ tenantOf: undefined }));
    try {
      const bridge = new TestClient(open.url, credentials('bridge'));
      const res = await bridge.req(`/v2/globex/control/blobs/uploads/?mount=${blobA}&from=acme/app`, { method: 'POST' });
      assert.equal(res.status, 201);
      assert.equal((await bridge.req(`/v2/globex/control/blobs/${blobA}`, { method: 'HEAD' })).status, 200);
    } finally {
      await open.stop();
    }
  });

  it('referrers list only the repository’s own manifests, whatever the subject', async () => {
    const sig = imageManifest(Buffer.from('{}'), [], {
      artifactType: 'application/vnd.test.globex',
      config: { mediaType: EMPTY_CONFIG, digest: sha256('{}'), size: 2 },
      subject: { mediaType: OCI_MANIFEST, digest: acmeImage.digest, size: acmeImage.bytes.length },
    });
    assert.equal((await clients.other.pushManifest('globex/app', sig.digest, sig.bytes.toString())).status, 201);
    const globex = await clients.other.req(`/v2/globex/app/referrers/${acmeImage.digest}`);
    assert.equal(globex.status, 200);
    assert.deepEqual(
      globex.json().manifests.map((m: { digest: string }) => m.digest),
      [sig.digest],
    );
    assertNoLeak(globex, 'referrers');
    const acme = await clients.reader.req(`/v2/acme/app/referrers/${acmeImage.digest}`);
    assert.deepEqual(
      acme.json().manifests.map((m: { digest: string }) => m.digest),
      [acmeSignature.digest],
    );
  });

  it('catalog and tags list show only what the caller may pull', async () => {
    const names = async (user: Caller) => (await clients[user].req('/v2/_catalog')).json().repositories as string[];
    const reader = await names('reader');
    assert.ok(reader.includes('acme/app') && reader.every((r) => r.startsWith('acme/')), reader.join());
    const other = await clients.other.req('/v2/_catalog');
    assert.ok(other.json().repositories.includes('globex/app'));
    assert.ok(
      other.json().repositories.every((r: string) => r.startsWith('globex/')),
      other.text,
    );
    assertNoLeak(other, 'catalog');
    const tags = await clients.other.req('/v2/globex/app/tags/list');
    assert.deepEqual(tags.json().tags, ['v1']);
  });
});

describe('anonymous access', () => {
  let stores: StoreSet;
  let server: RunningRegistry;
  before(async () => {
    stores = await embeddedStores();
    const publicPull = ({ principal, action, repository }: AuthorizeRequest) =>
      principal === undefined ? action === 'pull' && repository.startsWith('public/') : (principal as BasicPrincipal).username === 'admin';
    server = await startRegistry('express', stores, {
      ...basicAuth({ verifyPassword: (u, p) => u === 'admin' && p === 'pw', realm: 'Acme "registry"' }),
      authorize: publicPull,
      anonymous: 'authorize',
    });
    const admin = new TestClient(server.url, { Authorization: `Basic ${Buffer.from('admin:pw').toString('base64')}` });
    await admin.pushImage('public/tool', 'v1');
    await admin.pushImage('private/tool', 'v1');
  });
  after(async () => {
    await server?.stop();
    await stores?.destroy();
  });

  it("with anonymous: 'authorize', anonymous callers pull public repositories and get challenges elsewhere", async () => {
    const anon = new TestClient(server.url);
    assert.equal((await anon.req('/v2/')).status, 200);
    assert.equal((await anon.req('/v2/public/tool/tags/list')).status, 200);
    assert.deepEqual((await anon.req('/v2/_catalog')).json().repositories, ['public/tool']);
    for (const [path, method] of [
      ['/v2/private/tool/tags/list', 'GET'],
      ['/v2/public/tool/blobs/uploads/', 'POST'],
    ]) {
      const res = await anon.req(path, { method });
      assertError(res, 401, 'UNAUTHORIZED');
      assert.equal(res.header('www-authenticate'), 'Basic realm="Acme \\"registry\\""');
    }
  });

  it('wrong credentials are a 401, never a silent downgrade to anonymous', async () => {
    for (const authorization of [`Basic ${Buffer.from('admin:wrong').toString('base64')}`, 'Basic ???', 'Bearer x']) {
      const res = await new TestClient(server.url, { Authorization: authorization }).req('/v2/public/tool/tags/list');
      assertError(res, 401, 'UNAUTHORIZED');
      assert.ok(res.header('www-authenticate'));
    }
  });
});

describe("anonymous: 'none' (the default with authenticate)", () => {
  it('answers 401 with the challenge on /v2/ before any hook runs', async () => {
    const stores = await embeddedStores();
    const calls: string[] = [];
    const server = await startRegistry('koa', stores, {
      authenticate: () => undefined,
      authorize: ({ repository }) => {
        calls.push(repository);
        return true;
      },
    });
    try {
      const anon = new TestClient(server.url);
      for (const path of ['/v2/', '/v2/_catalog', '/v2/a/b/tags/list']) {
        const res = await anon.req(path);
        assertError(res, 401, 'UNAUTHORIZED');
        assert.equal(res.header('www-authenticate'), 'Basic realm="berth"');
      }
      assert.deepEqual(calls, []);
    } finally {
      await server.stop();
      await stores.destroy();
    }
  });
});
