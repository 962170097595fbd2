// Garbage collection on fs + SQLite and S3 + Postgres: what goes, what stays, and that nothing
// of a kept image is ever lost. The races, crashes and replicas have files of their own
// (gc-race, gc-crash); usage and quotas too (usage, quota).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { S3BlobStore } from '@berthjs/storage-s3';
import { interceptPointerWrites, requireS3 } from '@berthjs/storage-s3/testing';
import { OCI_INDEX, OCI_MANIFEST, randomBlob, sha256, TestClient } from './support/client.js';
import { startRegistry, type RunningRegistry } from './support/servers.js';
import { embeddedStores, s3PostgresStores, type StoreSet } from './support/stores.js';

const stacks: [string, () => Promise<StoreSet>][] = [['fs + SQLite', embeddedStores]];
if (requireS3()) stacks.push(['S3 + Postgres', s3PostgresStores]);

/** A manifest over blobs already pushed: `config` and `layers` are the bytes. */
function imageManifest(config: Buffer, layers: Buffer[], extra: Record<string, unknown> = {}) {
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(l), size: l.length })),
    ...extra,
  };
}

function descriptor(manifest: unknown, mediaType = OCI_MANIFEST) {
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { mediaType, digest: sha256(bytes), size: bytes.length };
}

for (const [name, makeStores] of stacks) {
  describe(`garbage collection on ${name}`, () => {
    let stores: StoreSet;
    let running: RunningRegistry;
    let client: TestClient;
    before(async () => {
      stores = await makeStores();
      running = await startRegistry('koa', stores, { tenantOf: (repository) => repository.split('/')[0] });
      client = new TestClient(running.url);
    });
    after(async () => {
      await running?.stop();
      await stores?.destroy();
    });

    /** Push the blobs and the manifest; returns the manifest's digest. */
    async function pushImage(repo: string, ref: string, config: Buffer, layers: Buffer[], extra: Record<string, unknown> = {}) {
      for (const blob of [config, ...layers]) await client.pushBlob(repo, blob);
      const manifest = imageManifest(config, layers, extra);
      const res = await client.pushManifest(repo, ref, manifest);
      assert.equal(res.status, 201, res.text);
      return descriptor(manifest);
    }

    async function blobStatus(repo: string, data: Buffer): Promise<number> {
      const res = await client.req(`/v2/${repo}/blobs/${sha256(data)}`);
      if (res.status === 200) assert.ok(res.body.equals(data), 'a kept blob keeps its bytes');
      return res.status;
    }

    /** Collect with no grace period (after a tick, so every push so far is older than the cutoff). */
    async function collect(options: { untagged?: boolean; gracePeriodMs?: number; dryRun?: boolean } = {}) {
      await sleep(5);
      const report = await running.registry.collectGarbage({ gracePeriodMs: 0, ...options });
      assert.equal(report.skipped, undefined);
      return report;
    }

    it('deletes the bytes of a deleted image and keeps the layers it shared', async () => {
      const [shared, onlyA, onlyB, configA, configB] = [1, 2, 3, 4, 5].map((n) => randomBlob(1000 + n));
      const a = await pushImage('gc1/app', 'a', configA, [shared, onlyA]);
      const b = await pushImage('gc1/app', 'b', configB, [shared, onlyB]);
      const deleted = await client.req(`/v2/gc1/app/manifests/${b.digest}`, { method: 'DELETE' });
      assert.equal(deleted.status, 202);
      const before = await running.registry.usage({ tenant: 'gc1' });

      const report = await collect();
      assert.equal(report.linksDeleted, 2);
      assert.equal(report.blobsDeleted, 2);
      assert.equal(report.bytesFreed, onlyB.length + configB.length);
      assert.deepEqual(report.tenants.gc1, {
        manifestsDeleted: 0,
        linksDeleted: 2,
        blobsReleased: 2,
        bytesReleased: onlyB.length + configB.length,
      });
      for (const gone of [onlyB, configB]) assert.equal(await blobStatus('gc1/app', gone), 404);
      for (const kept of [shared, onlyA, configA]) assert.equal(await blobStatus('gc1/app', kept), 200);
      assert.equal((await client.req(`/v2/gc1/app/manifests/a`)).status, 200);
      assert.equal((await client.req(`/v2/gc1/app/manifests/${a.digest}`)).status, 200);
      const afterwards = await running.registry.usage({ tenant: 'gc1' });
      assert.equal(afterwards.bytes, before.bytes - onlyB.length - configB.length);
      assert.equal(afterwards.blobs, before.blobs - 2);

      // Nothing left to do: a second collection deletes nothing.
      const again = await collect();
      assert.equal(again.blobsDeleted + again.linksDeleted + again.manifestsDeleted, 0);
    });

    it('the grace period protects fresh uploads and fresh manifests', async () => {
      const lonely = randomBlob(777);
      await client.pushBlob('gc2/app', lonely);
      const fresh = await pushImage('gc2/app', 'tmp', randomBlob(10), [randomBlob(20)]);
      await client.req('/v2/gc2/app/manifests/tmp', { method: 'DELETE' }); // untag: the manifest stays
      const hour = 60 * 60 * 1000;
      const spared = await collect({ gracePeriodMs: hour, untagged: true });
      assert.equal(spared.tenants.gc2?.linksDeleted ?? 0, 0);
      assert.equal(spared.tenants.gc2?.manifestsDeleted ?? 0, 0);
      assert.equal(await blobStatus('gc2/app', lonely), 200);
      assert.equal((await client.req(`/v2/gc2/app/manifests/${fresh.digest}`)).status, 200);

      const report = await collect({ untagged: true });
      assert.equal(report.tenants.gc2.manifestsDeleted, 1);
      assert.equal(report.tenants.gc2.linksDeleted, 3);
      assert.equal(await blobStatus('gc2/app', lonely), 404);
      assert.equal((await client.req(`/v2/gc2/app/manifests/${fresh.digest}`)).status, 404);
      assert.equal(await running.registry.usage({ repository: 'gc2/app' }), undefined, 'the empty repository ended');
    });

    it('untagged keeps index children and the referrers of kept manifests, and deletes the rest', async () => {
      const repo = 'gc3/app';
      const child1 = await pushImage(repo, 'sha-placeholder', randomBlob(31), [randomBlob(41)]);
      const child2 = await pushImage(repo, 'sha-placeholder', randomBlob(32), [randomBlob(42)]);
      const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [child1, child2] };
      assert.equal((await client.pushManifest(repo, 'multi', index, OCI_INDEX)).status, 201);
      await client.req(`/v2/${repo}/manifests/sha-placeholder`, { method: 'DELETE' }); // children untagged now
      const indexDescriptor = descriptor(index, OCI_INDEX);
      const empty = Buffer.from('{}');
      const signature = randomBlob(50);
      const sig = await pushImage(repo, 'placeholder', empty, [signature], {
        artifactType: 'application/vnd.example.sig',
        subject: indexDescriptor,
      });
      const sbomLayer = randomBlob(60);
      const sbom = await pushImage(repo, 'placeholder', empty, [sbomLayer], { artifactType: 'application/spdx+json', subject: child1 });
      const orphanLayer = randomBlob(70);
      const orphan = await pushImage(repo, 'placeholder', randomBlob(33), [orphanLayer]);
      const orphanSigLayer = randomBlob(80);
      const orphanSig = await pushImage(repo, 'placeholder', empty, [orphanSigLayer], {
        artifactType: 'application/vnd.example.sig',
        subject: orphan,
      });
      await client.req(`/v2/${repo}/manifests/placeholder`, { method: 'DELETE' });

      const dry = await collect({ untagged: true, dryRun: true });
      assert.equal(dry.tenants.gc3.manifestsDeleted, 2, 'the dry run counts the same');
      assert.equal((await client.req(`/v2/${repo}/manifests/${orphan.digest}`)).status, 200, 'and deletes nothing');

      const report = await collect({ untagged: true });
      assert.equal(report.tenants.gc3.manifestsDeleted, 2);
      for (const kept of [child1, child2, sig, sbom, indexDescriptor]) {
        assert.equal((await client.req(`/v2/${repo}/manifests/${kept.digest}`)).status, 200, `${kept.digest} is kept`);
      }
      for (const gone of [orphan, orphanSig]) assert.equal((await client.req(`/v2/${repo}/manifests/${gone.digest}`)).status, 404);
      for (const blob of [signature, sbomLayer, empty]) assert.equal(await blobStatus(repo, blob), 200);
      for (const blob of [orphanLayer, orphanSigLayer]) assert.equal(await blobStatus(repo, blob), 404);
      const referrers = (await client.req(`/v2/${repo}/referrers/${indexDescriptor.digest}`)).json<{ manifests: { digest: string }[] }>();
      assert.deepEqual(
        referrers.manifests.map((m) => m.digest),
        [sig.digest],
      );
    });

    it('a dry run reports what a collection then deletes, and deletes nothing', async () => {
      const layer = randomBlob(4321);
      const config = randomBlob(12);
      const image = await pushImage('gc4/app', 'v1', config, [layer]);
      await client.req(`/v2/gc4/app/manifests/${image.digest}`, { method: 'DELETE' });
      const dry = await collect({ dryRun: true });
      assert.equal(dry.dryRun, true);
      assert.equal(dry.tenants.gc4.linksDeleted, 2);
      assert.ok(dry.blobsDeleted >= 2);
      assert.equal(await blobStatus('gc4/app', layer), 200);
      const real = await collect();
      assert.equal(real.tenants.gc4.linksDeleted, 2);
      assert.equal(real.blobsDeleted, dry.blobsDeleted);
      assert.equal(real.bytesFreed, dry.bytesFreed);
    });

    it('finishes what a dead collection marked; a push of such a digest finishes it too', async () => {
      const [doomed, repushed] = [randomBlob(900), randomBlob(901)];
      for (const blob of [doomed, repushed]) await client.pushBlob('gc6/app', blob);
      for (const blob of [doomed, repushed]) await client.req(`/v2/gc6/app/blobs/${sha256(blob)}`, { method: 'DELETE' });
      await sleep(5);
      // A collection that marked both and died before deleting their bytes (it holds no lease).
      const { metadata } = await stores.open();
      try {
        const marked = await metadata.markBlobsDeleting(
          [doomed, repushed].map((b) => ({ digest: sha256(b) })),
          'a-dead-run',
          Date.now(),
        );
        assert.equal(marked.length, 2);
      } finally {
        await metadata.close();
      }
      // A push of one of them does not wait for anyone: it deletes the old bytes, then stores its own.
      await client.pushBlob('gc6/app', repushed);
      assert.equal(await blobStatus('gc6/app', repushed), 200);
      // Even within a grace period, what a collection marked goes: its bytes may be half deleted.
      const report = await collect({ gracePeriodMs: 60 * 60 * 1000 });
      assert.equal(report.blobsDeleted, 1);
      assert.equal(await blobStatus('gc6/app', doomed), 404);
      assert.ok(!(await stores.stored()).some((f) => f.includes(sha256(doomed).slice(7))), 'its bytes are gone');
      assert.equal(await blobStatus('gc6/app', repushed), 200);
    });

    it('deleting everything and collecting with no grace period leaves no blob bytes and an empty catalog', async () => {
      const shared = randomBlob(2048);
      const big = randomBlob(6 * 1024 * 1024 + 3); // several S3 parts: a pointer and its data object
      const images = [
        await pushImage('gc5/one', 'v1', randomBlob(11), [shared, big]),
        await pushImage('gc5/two', 'v1', randomBlob(12), [shared]),
      ];
      const mount = await client.req(`/v2/gc5/three/blobs/uploads/?mount=${sha256(shared)}&from=gc5/one`, { method: 'POST' });
      assert.equal(mount.status, 201);
      const open = await client.req('/v2/gc5/four/blobs/uploads/', { method: 'POST' }); // an open session
      await client.req(open.header('location')!, { method: 'PATCH', body: randomBlob(100) });
      for (const [repo, image] of [
        ['gc5/one', images[0]],
        ['gc5/two', images[1]],
      ] as const) {
        assert.equal((await client.req(`/v2/${repo}/manifests/${image.digest}`, { method: 'DELETE' })).status, 202);
      }
      // Everything the earlier tests left goes too.
      for (const repo of (await client.req('/v2/_catalog')).json<{ repositories: string[] }>().repositories) {
        for (const tag of (await client.req(`/v2/${repo}/tags/list`)).json<{ tags: string[] | null }>().tags ?? []) {
          const digest = (await client.req(`/v2/${repo}/manifests/${tag}`, { method: 'HEAD' })).header('docker-content-digest');
          await client.req(`/v2/${repo}/manifests/${digest}`, { method: 'DELETE' });
        }
      }
      // S3: a blob whose bytes were stored but whose pointer write failed (as if its replica died
      // right there), then the client gave up on the session: bytes that no blob names.
      const faulty = await stores.open();
      let collector = running;
      if (faulty.blobs instanceof S3BlobStore) {
        interceptPointerWrites(faulty.blobs.client, async () => {
          throw Object.assign(new Error('injected: pointer write failed'), { name: 'ServiceUnavailable' });
        });
        const replica = await startRegistry('koa', { ...stores, open: async () => faulty }, { tenantOf: (r) => r.split('/')[0] });
        try {
          const leak = randomBlob(6 * 1024 * 1024 + 5);
          const via = new TestClient(replica.url);
          const location = (await via.req('/v2/gc5/five/blobs/uploads/', { method: 'POST' })).header('location')!;
          const put = await via.req(`${location}${location.includes('?') ? '&' : '?'}digest=${sha256(leak)}`, {
            method: 'PUT',
            body: leak,
          });
          assert.ok(put.status >= 500, `${put.status} ${put.text}`);
          assert.equal((await via.req(location, { method: 'DELETE' })).status, 204);
          assert.equal(await blobStatus('gc5/five', leak), 404);
        } finally {
          await replica.stop();
        }
        assert.ok((await stores.stored()).filter((f) => f.startsWith('data/')).length >= 2, 'its data object is left');
        // The sweep spares what is younger than the upload lease: collect with a short one.
        collector = await startRegistry('koa', stores, { uploadLeaseMs: 1 });
      } else await Promise.all([faulty.blobs.close?.(), faulty.metadata.close()]);
      try {
        await sleep(5);
        assert.equal((await collector.registry.collectGarbage({ gracePeriodMs: 0, untagged: true })).skipped, undefined);
      } finally {
        if (collector !== running) await collector.stop();
      }
      assert.deepEqual((await client.req('/v2/_catalog')).json(), { repositories: [] });
      const left = await stores.stored();
      assert.ok(left.length > 0 && left.every((f) => f.startsWith('uploads/')), `only the open session is left: ${left}`);
      assert.equal((await client.req(open.header('location')!, { method: 'DELETE' })).status, 204);
      assert.deepEqual(await stores.stored(), [], 'no bytes left at all');
    });
  });
}
