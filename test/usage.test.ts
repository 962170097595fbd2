// Usage kept current by every push, mount, unlink, manifest delete and collection equals a
// recompute from scratch, after any mix of them (fast-check), on fs + SQLite and S3 + Postgres.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { requireS3 } from '@berthjs/storage-s3/testing';
import { OCI_MANIFEST, sha256, TestClient } from './support/client.js';
import { startRegistry, type RunningRegistry } from './support/servers.js';
import { embeddedStores, s3PostgresStores, type StoreSet } from './support/stores.js';

const stacks: [string, () => Promise<StoreSet>, number][] = [['fs + SQLite', embeddedStores, 25]];
if (requireS3()) stacks.push(['S3 + Postgres', s3PostgresStores, 6]);

const REPOS = ['a/one', 'a/two', 'b/one', 'b/two'];
const BLOBS = Array.from({ length: 6 }, (_, i) => Buffer.from(`blob ${i} `.repeat(10 + i * 7)));

type Op =
  | { kind: 'push'; repo: number; blob: number }
  | { kind: 'mount'; from: number; to: number; blob: number }
  | { kind: 'unlink'; repo: number; blob: number }
  | { kind: 'manifest'; repo: number; blobs: number[]; tag: boolean }
  | { kind: 'delete-manifest'; repo: number }
  | { kind: 'abandon'; repo: number; blob: number }
  | { kind: 'collect'; untagged: boolean };

const index = (n: number) => fc.integer({ min: 0, max: n - 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('push' as const), repo: index(REPOS.length), blob: index(BLOBS.length) }),
  fc.record({ kind: fc.constant('mount' as const), from: index(REPOS.length), to: index(REPOS.length), blob: index(BLOBS.length) }),
  fc.record({ kind: fc.constant('unlink' as const), repo: index(REPOS.length), blob: index(BLOBS.length) }),
  fc.record({
    kind: fc.constant('manifest' as const),
    repo: index(REPOS.length),
    blobs: fc.uniqueArray(index(BLOBS.length), { minLength: 1, maxLength: 3 }),
    tag: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('delete-manifest' as const), repo: index(REPOS.length) }),
  fc.record({ kind: fc.constant('abandon' as const), repo: index(REPOS.length), blob: index(BLOBS.length) }),
  fc.record({ kind: fc.constant('collect' as const), untagged: fc.boolean() }),
);

for (const [name, makeStores, runs] of stacks) {
  describe(`usage on ${name}`, () => {
    let stores: StoreSet;
    let running: RunningRegistry;
    let client: TestClient;
    before(async () => {
      stores = await makeStores();
      running = await startRegistry('koa', stores, {
        tenantOf: (repository) => repository.split('/')[0],
        quotaOf: () => 1024 * 1024 * 1024, // reservations too
      });
      client = new TestClient(running.url);
    });
    after(async () => {
      await running?.stop();
      await stores?.destroy();
    });

    const pushed = new Map<string, string[]>(); // repo -> manifest digests pushed

    async function apply(o: Op): Promise<void> {
      switch (o.kind) {
        case 'push':
          await client.pushBlob(REPOS[o.repo], BLOBS[o.blob]);
          return;
        case 'mount': {
          const res = await client.req(`/v2/${REPOS[o.to]}/blobs/uploads/?mount=${sha256(BLOBS[o.blob])}&from=${REPOS[o.from]}`, {
            method: 'POST',
          });
          assert.ok(res.status === 201 || res.status === 202, res.text);
          if (res.status === 202) await client.req(res.header('location')!, { method: 'DELETE' });
          return;
        }
        case 'unlink': {
          const res = await client.req(`/v2/${REPOS[o.repo]}/blobs/${sha256(BLOBS[o.blob])}`, { method: 'DELETE' });
          assert.ok(res.status === 202 || res.status === 404, res.text);
          return;
        }
        case 'manifest': {
          const blobs = o.blobs.map((b) => BLOBS[b]);
          const manifest = {
            schemaVersion: 2,
            mediaType: OCI_MANIFEST,
            config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(blobs[0]), size: blobs[0].length },
            layers: blobs.slice(1).map((b) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(b), size: b.length })),
          };
          const res = await client.pushManifest(REPOS[o.repo], o.tag ? 'latest' : sha256(JSON.stringify(manifest)), manifest);
          assert.ok(res.status === 201 || res.status === 400, res.text); // 400: a blob is not in the repository
          if (res.status === 201) pushed.set(REPOS[o.repo], [...(pushed.get(REPOS[o.repo]) ?? []), sha256(JSON.stringify(manifest))]);
          return;
        }
        case 'delete-manifest': {
          const digest = pushed.get(REPOS[o.repo])?.pop();
          if (digest) await client.req(`/v2/${REPOS[o.repo]}/manifests/${digest}`, { method: 'DELETE' });
          return;
        }
        case 'abandon': {
          // A session holding a reservation, then cancelled.
          const start = await client.req(`/v2/${REPOS[o.repo]}/blobs/uploads/`, { method: 'POST' });
          const location = start.header('location')!;
          const blob = BLOBS[o.blob];
          await client.req(location, { method: 'PATCH', body: blob, headers: { 'Content-Range': `0-${blob.length - 1}` } });
          await client.req(location, { method: 'DELETE' });
          return;
        }
        case 'collect':
          await running.registry.collectGarbage({ gracePeriodMs: 0, untagged: o.untagged });
          return;
      }
    }

    it('equals its recompute after any mix of pushes, mounts, deletes and collections', { timeout: 120_000 }, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
          for (const o of ops) await apply(o);
          const running = await Promise.all(['a', 'b'].map((tenant) => runningUsage(tenant)));
          const recompute = await runningRegistry().recomputeUsage();
          assert.deepEqual(recompute.corrections, [], `after ${JSON.stringify(ops)}`);
          assert.deepEqual(await Promise.all(['a', 'b'].map((tenant) => runningUsage(tenant))), running);
          for (const tenant of ['a', 'b']) assert.equal((await runningUsage(tenant)).reserved, 0, 'no reservation outlives its session');
        }),
        { numRuns: runs },
      );
      // The figures mean what they say: each tenant holds each linked digest once.
      for (const tenant of ['a', 'b']) {
        const digests = new Map<string, number>();
        for (const repo of REPOS.filter((r) => r.startsWith(`${tenant}/`))) {
          for (const blob of BLOBS)
            if ((await client.req(`/v2/${repo}/blobs/${sha256(blob)}`, { method: 'HEAD' })).status === 200)
              digests.set(sha256(blob), blob.length);
        }
        const bytes = [...digests.values()].reduce((sum, size) => sum + size, 0);
        assert.deepEqual(await runningUsage(tenant), { bytes, blobs: digests.size, reserved: 0 });
      }
    });

    const runningRegistry = () => running.registry;
    const runningUsage = (tenant: string) => running.registry.usage({ tenant });
  });
}
