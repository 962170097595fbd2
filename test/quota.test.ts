// Quotas on fs + SQLite and S3 + Postgres: refused at POST or PATCH when the length is known, at
// the closing PUT otherwise, each refusal leaving nothing behind; a blob the tenant holds is free;
// concurrent pushes never take usage past the limit together; reservations are released.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireS3 } from '@berthjs/storage-s3/testing';
import { Faults } from '@berthjs/testkit';
import { assertError, randomBlob, sha256, TestClient, type RawResponse } from './support/client.js';
import { startRegistry, type RunningRegistry } from './support/servers.js';
import { embeddedStores, s3PostgresStores, type StoreSet } from './support/stores.js';

const LIMIT = 10_000;
const stacks: [string, () => Promise<StoreSet>][] = [['fs + SQLite', embeddedStores]];
if (requireS3()) stacks.push(['S3 + Postgres', s3PostgresStores]);

for (const [name, makeStores] of stacks) {
  describe(`quotas on ${name}`, () => {
    let stores: StoreSet;
    let running: RunningRegistry;
    let client: TestClient;
    const limit = LIMIT;
    /** Records every blob store call, to tell a refusal before any byte was taken. */
    const faults = new Faults();
    before(async () => {
      stores = await makeStores();
      const opened = await stores.open();
      const watched: StoreSet = { ...stores, open: async () => ({ ...opened, blobs: faults.wrap(opened.blobs) }) };
      running = await startRegistry('koa', watched, {
        tenantOf: (repository) => repository.split('/')[0],
        quotaOf: async (tenant) => (tenant === 'free' ? undefined : limit),
        uploadTtlMs: 60 * 60 * 1000,
      });
      client = new TestClient(running.url);
    });
    after(async () => {
      await running?.stop();
      await stores?.destroy();
    });

    const usage = (tenant: string) => running.registry.usage({ tenant });
    const appends = () => faults.calls.filter((c) => c.method === 'appendUpload').length;

    function assertRefused(res: RawResponse, tenant: string) {
      assertError(res, 403, 'DENIED');
      const message = res.json<{ errors: { message: string }[] }>().errors[0].message;
      assert.match(message, new RegExp(`quota exceeded: tenant "${tenant}" stores .* of its 9\\.8 KiB; this upload needs`), message);
    }

    /** Nothing of a refused upload is left: no session, no bytes, no reservation. */
    async function assertNothingLeft(tenant: string, before: string[]) {
      assert.deepEqual(await stores.stored(), before, 'the blob store holds what it held before');
      assert.equal((await usage(tenant)).reserved, 0);
    }

    it('refuses at POST when a monolithic push says its length, leaving nothing', async () => {
      const stored = await stores.stored();
      const blob = randomBlob(LIMIT + 1);
      const appended = appends();
      const res = await client.req(`/v2/post/app/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', body: blob });
      assertRefused(res, 'post');
      assert.equal(appends(), appended, 'refused before any byte reached the store');
      await assertNothingLeft('post', stored);
      assert.equal((await client.req(`/v2/post/app/blobs/${sha256(blob)}`, { method: 'HEAD' })).status, 404);
    });

    it('refuses a PATCH with a length, ending the session with what it held', async () => {
      const stored = await stores.stored();
      const start = await client.req('/v2/patch/app/blobs/uploads/', { method: 'POST' });
      const location = start.header('location')!;
      const first = await client.req(location, { method: 'PATCH', body: randomBlob(6000), headers: { 'Content-Range': '0-5999' } });
      assert.equal(first.status, 202, first.text);
      assert.equal((await usage('patch')).reserved, 6000);
      const appended = appends();
      const second = await client.req(location, { method: 'PATCH', body: randomBlob(5000), headers: { 'Content-Range': '6000-10999' } });
      assertRefused(second, 'patch');
      assert.equal(appends(), appended, 'refused before any byte reached the store');
      assertError(await client.req(location), 404, 'BLOB_UPLOAD_UNKNOWN');
      await assertNothingLeft('patch', stored);
    });

    it('refuses at the closing PUT when the length was not known, leaving nothing', async () => {
      const stored = await stores.stored();
      const blob = randomBlob(LIMIT + 500);
      const start = await client.req('/v2/put/app/blobs/uploads/', { method: 'POST' });
      const location = start.header('location')!;
      // Chunked transfer encoding: no length, so nothing can be reserved up front.
      const patch = await client.req(location, { method: 'PATCH', body: [blob.subarray(0, 5000), blob.subarray(5000)] });
      assert.equal(patch.status, 202, patch.text);
      const put = await client.req(`${location}?digest=${sha256(blob)}`, { method: 'PUT' });
      assertRefused(put, 'put');
      await assertNothingLeft('put', stored);
      // A closing PUT carrying the body with its length is refused before the body is read.
      const again = await client.req('/v2/put/app/blobs/uploads/', { method: 'POST' });
      const appended = appends();
      const refused = await client.req(`${again.header('location')}?digest=${sha256(blob)}`, { method: 'PUT', body: blob });
      assertRefused(refused, 'put');
      assert.equal(appends(), appended, 'refused before any byte reached the store');
      await assertNothingLeft('put', stored);
      assert.deepEqual(await usage('put'), { bytes: 0, blobs: 0, reserved: 0 });
    });

    it('a blob the tenant already holds costs nothing, pushed or mounted', async () => {
      const blob = randomBlob(LIMIT - 100);
      await client.pushBlob('held/one', blob);
      assert.deepEqual(await usage('held'), { bytes: LIMIT - 100, blobs: 1, reserved: 0 });
      await client.pushBlob('held/two', blob); // POST + PUT with its length: free, it is held
      const monolithic = await client.req(`/v2/held/three/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', body: blob });
      assert.equal(monolithic.status, 201, monolithic.text);
      const mount = await client.req(`/v2/held/four/blobs/uploads/?mount=${sha256(blob)}&from=held/one`, { method: 'POST' });
      assert.equal(mount.status, 201);
      assert.deepEqual(await usage('held'), { bytes: LIMIT - 100, blobs: 1, reserved: 0 }, 'counted once for the tenant');
      assert.equal((await running.registry.usage({ repository: 'held/four' }))?.bytes, LIMIT - 100);
      // Anything new past the limit is refused.
      assertRefused(
        await client.req(`/v2/held/one/blobs/uploads/?digest=${sha256(randomBlob(200))}`, { method: 'POST', body: randomBlob(200) }),
        'held',
      );
    });

    it('concurrent pushes never take usage past the limit together', async () => {
      const size = 1500;
      const blobs = Array.from({ length: 12 }, () => randomBlob(size));
      // Half say their length (reserved at POST), half stream without one (checked at PUT).
      const results = await Promise.all(
        blobs.map(async (blob, i) => {
          if (i % 2 === 0)
            return (await client.req(`/v2/race/r${i}/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', body: blob })).status;
          const start = await client.req(`/v2/race/r${i}/blobs/uploads/`, { method: 'POST' });
          const location = start.header('location')!;
          const patch = await client.req(location, { method: 'PATCH', body: [blob] });
          if (patch.status !== 202) return patch.status;
          return (await client.req(`${location}?digest=${sha256(blob)}`, { method: 'PUT' })).status;
        }),
      );
      const accepted = results.filter((s) => s === 201).length;
      assert.deepEqual(
        results.filter((s) => s !== 201 && s !== 403),
        [],
      );
      assert.equal(accepted, Math.floor(LIMIT / size), `exactly what fits is accepted: ${results}`);
      const figures = await usage('race');
      assert.ok(figures.bytes <= LIMIT);
      assert.deepEqual(figures, { bytes: accepted * size, blobs: accepted, reserved: 0 });
    });

    it('releases reservations of cancelled and expired sessions', async () => {
      const start = await client.req('/v2/release/app/blobs/uploads/', { method: 'POST' });
      const location = start.header('location')!;
      await client.req(location, { method: 'PATCH', body: randomBlob(4000), headers: { 'Content-Range': '0-3999' } });
      assert.equal((await usage('release')).reserved, 4000);
      assert.equal((await client.req(location, { method: 'DELETE' })).status, 204);
      assert.equal((await usage('release')).reserved, 0);

      const idle = await client.req('/v2/release/app/blobs/uploads/', { method: 'POST' });
      await client.req(idle.header('location')!, { method: 'PATCH', body: randomBlob(3000), headers: { 'Content-Range': '0-2999' } });
      assert.equal((await usage('release')).reserved, 3000);
      await sleep(5);
      const sweeper = await startRegistry('koa', stores, { uploadTtlMs: 1 });
      try {
        assert.ok((await sweeper.registry.sweepUploads()) >= 1);
      } finally {
        await sweeper.stop();
      }
      assert.equal((await usage('release')).reserved, 0);
      assertError(await client.req(idle.header('location')!), 404, 'BLOB_UPLOAD_UNKNOWN');
    });

    it('a tenant without a quota is never refused; usage is still counted', async () => {
      const blob = randomBlob(LIMIT * 2);
      await client.pushBlob('free/app', blob);
      assert.deepEqual(await usage('free'), { bytes: LIMIT * 2, blobs: 1, reserved: 0 });
    });
  });
}
