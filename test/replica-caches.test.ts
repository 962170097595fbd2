// Two replicas over one database (separate stores and read caches, as two processes have): what
// one deletes or moves, the other stops serving from its cache, long before readCacheTtlMs.
// SQLite: at once (data_version). Postgres: as soon as the NOTIFY arrives (polled up to 2 s).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBlob, rawRequest, sha256, TestClient, type RawResponse } from './support/client.js';
import { startRegistry, type RunningRegistry } from './support/servers.js';
import { embeddedStores, postgresStores, type StoreSet } from './support/stores.js';

/** Caches that would hold entries for a minute: only change tracking can make them let go. */
const LONG_TTL = { readCacheTtlMs: 60_000 };

const backends: [string, () => Promise<StoreSet>, number][] = [
  ['SQLite', embeddedStores, 0],
  ['Postgres', postgresStores, 2000],
];

for (const [name, makeStores, graceMs] of backends) {
  describe(`replica read caches on ${name}`, () => {
    let stores: StoreSet;
    let a: RunningRegistry;
    let b: RunningRegistry;
    before(async () => {
      stores = await makeStores();
      a = await startRegistry('koa', stores, LONG_TTL);
      b = await startRegistry('koa', stores, LONG_TTL);
    });
    after(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      await stores?.destroy();
    });

    /** Ask replica b until `expected` holds (at once for SQLite); returns the last answer. */
    async function onB(path: string, method: string, expected: (res: RawResponse) => boolean): Promise<RawResponse> {
      const deadline = Date.now() + graceMs;
      for (;;) {
        const res = await rawRequest(b.url, path, { method });
        if (expected(res) || Date.now() >= deadline) return res;
        await sleep(10);
      }
    }

    it('a tag moved or deleted on one replica is not served from the other one’s cache', async () => {
      const client = new TestClient(a.url);
      const one = await client.pushImage('shared/app', 'latest');
      const path = '/v2/shared/app/manifests/latest';
      // b caches latest -> one.
      assert.equal((await rawRequest(b.url, path, { method: 'HEAD' })).header('docker-content-digest'), one.digest);
      assert.equal((await rawRequest(b.url, path, { method: 'HEAD' })).header('docker-content-digest'), one.digest);
      const two = await client.pushImage('shared/app', 'latest');
      const moved = await onB(path, 'HEAD', (res) => res.header('docker-content-digest') === two.digest);
      assert.equal(moved.header('docker-content-digest'), two.digest, 'the moved tag');
      assert.equal((await rawRequest(a.url, path, { method: 'DELETE' })).status, 202);
      assert.equal((await onB(path, 'GET', (res) => res.status === 404)).status, 404, 'the deleted tag');
    });

    it('a manifest deleted on one replica is gone on the other, by digest and by tag', async () => {
      const client = new TestClient(a.url);
      const image = await client.pushImage('shared/gone', 'v1');
      const byDigest = `/v2/shared/gone/manifests/${image.digest}`;
      const byTag = '/v2/shared/gone/manifests/v1';
      for (const path of [byDigest, byTag]) assert.equal((await rawRequest(b.url, path)).status, 200);
      assert.equal((await rawRequest(a.url, byDigest, { method: 'DELETE' })).status, 202);
      for (const path of [byDigest, byTag]) assert.equal((await onB(path, 'GET', (res) => res.status === 404)).status, 404, path);
    });

    it('a blob deleted on one replica answers 404 on the other', async () => {
      const data = randomBlob(4096);
      const digest = await new TestClient(a.url).pushBlob('shared/blobs', data);
      const path = `/v2/shared/blobs/blobs/${digest}`;
      assert.equal((await rawRequest(b.url, path, { method: 'HEAD' })).status, 200);
      assert.equal(sha256((await rawRequest(b.url, path)).body), digest);
      assert.equal((await rawRequest(a.url, path, { method: 'DELETE' })).status, 202);
      assert.equal((await onB(path, 'HEAD', (res) => res.status === 404)).status, 404);
    });
  });
}
