import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, OCI_MANIFEST, randomBlob, sha256, TestClient } from './support/client.js';
import { startRegistry, type RunningRegistry } from './support/servers.js';
import { embeddedStores, type StoreSet } from './support/stores.js';

/** Registry switches and limits, on a registry of their own. */
describe('registry options', () => {
  let stores: StoreSet;
  let open: RunningRegistry;
  let locked: RunningRegistry;
  let a: TestClient;
  let b: TestClient;
  before(async () => {
    stores = await embeddedStores();
    open = await startRegistry('koa', stores);
    // A second registry over the same data, with deletes, referrers and auto-mount off and a tiny manifest limit.
    locked = await startRegistry('express', stores, {
      delete: false,
      referrers: false,
      automaticCrossMount: false,
      maxManifestBytes: 1024,
      uploadTtlMs: 300,
    });
    a = new TestClient(open.url);
    b = new TestClient(locked.url);
  });
  after(async () => {
    await locked?.stop();
    await open?.stop();
    await stores?.destroy();
  });

  it('answers 405 UNSUPPORTED to deletes when deletes are off, and deletes nothing', async () => {
    const { digest } = await a.pushImage('opt/del', 'v1');
    const blob = await a.pushBlob('opt/del', randomBlob(10));
    for (const path of [`/v2/opt/del/manifests/v1`, `/v2/opt/del/manifests/${digest}`, `/v2/opt/del/blobs/${blob}`]) {
      assertError(await b.req(path, { method: 'DELETE' }), 405, 'UNSUPPORTED');
    }
    assert.equal((await b.req('/v2/opt/del/manifests/v1')).status, 200);
    assert.equal((await b.req(`/v2/opt/del/blobs/${blob}`, { method: 'HEAD' })).status, 200);
  });

  it('answers 404 to the referrers API when it is off and sends no OCI-Subject', async () => {
    const subject = await a.pushImage('opt/ref', 'v1');
    assertError(await b.req(`/v2/opt/ref/referrers/${subject.digest}`), 404);
    const config = Buffer.from('{}');
    await b.pushBlob('opt/ref', config);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'x/y', digest: sha256(config), size: 2 },
      layers: [],
      subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size },
    });
    const res = await b.pushManifest('opt/ref', 'sig', manifest);
    assert.equal(res.status, 201);
    assert.equal(res.header('oci-subject'), undefined);
  });

  it('applies its own manifest size limit', async () => {
    const config = Buffer.from('{}');
    await b.pushBlob('opt/size', config);
    const small = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'x/y', digest: sha256(config), size: 2 },
      layers: [],
    });
    assert.equal((await b.pushManifest('opt/size', 'small', small)).status, 201);
    const big = JSON.stringify({ ...JSON.parse(small), annotations: { pad: 'x'.repeat(2000) } });
    assertError(await b.pushManifest('opt/size', 'big', big), 413, 'SIZE_INVALID');
  });

  it('does not mount without from when automatic cross-mount is off, even for a blob the target has', async () => {
    const blob = await a.pushBlob('opt/mount', randomBlob(20));
    const res = await b.req(`/v2/opt/mount/blobs/uploads/?mount=${blob}`, { method: 'POST' });
    assert.equal(res.status, 202);
    const withFrom = await b.req(`/v2/opt/other/blobs/uploads/?mount=${blob}&from=opt/mount`, { method: 'POST' });
    assert.equal(withFrom.status, 201);
  });

  it('sweeps idle upload sessions and keeps fresh ones', async () => {
    const idle = await b.req('/v2/opt/sweep/blobs/uploads/', { method: 'POST' });
    await b.req(idle.header('location')!, { method: 'PATCH', body: 'partial' });
    await new Promise((resolve) => setTimeout(resolve, 400));
    const fresh = await b.req('/v2/opt/sweep/blobs/uploads/', { method: 'POST' });
    const aborted: string[] = [];
    locked.registry.events.on('upload.aborted', ({ id, reason }) => reason === 'expired' && aborted.push(id));
    assert.ok((await locked.registry.sweepUploads()) >= 1);
    assert.ok(aborted.includes(idle.header('docker-upload-uuid')!));
    assertError(await b.req(idle.header('location')!), 404, 'BLOB_UPLOAD_UNKNOWN');
    assert.equal((await b.req(fresh.header('location')!)).status, 204);
  });
});
