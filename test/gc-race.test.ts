// The safety rule under fire, on fs + SQLite and S3 + Postgres: pushers push images (shared
// layers pushed again by others: dedup commits; mounts between repositories; deletes of earlier
// images) while collections with no grace period run back to back. A manifest PUT may fail with
// MANIFEST_BLOB_UNKNOWN (the collection got there first; the pusher pushes again, as clients do),
// but once a PUT has answered 201, every blob of that image must stay readable, byte for byte.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';
import { requireS3 } from '@berthjs/storage-s3/testing';
import { OCI_MANIFEST, randomBlob, sha256, TestClient } from './support/client.js';
import { startRegistry, type RunningRegistry } from './support/servers.js';
import { embeddedStores, s3PostgresStores, type StoreSet } from './support/stores.js';

// Replicas in this process: Postgres pools serve two; two SQLite connections in one process stall
// each other's event loop in busy waits (real replicas are processes: see gc-crash.test.ts).
const stacks: [string, () => Promise<StoreSet>, number, number][] = [['fs + SQLite', embeddedStores, 40, 1]];
if (requireS3()) stacks.push(['S3 + Postgres', s3PostgresStores, 15, 2]);

const PUSHERS = 4;

interface Accepted {
  repo: string;
  tag: string;
  digest: string;
  blobs: Buffer[];
}

for (const [name, makeStores, iterations, replicaCount] of stacks) {
  describe(`pushes racing back-to-back collections on ${name}`, () => {
    let stores: StoreSet;
    let replicas: RunningRegistry[];
    const failures: string[] = [];
    before(async () => {
      stores = await makeStores();
      // Pushes go to every replica; two collection loops run (on each replica, or both on the one).
      const options = { tenantOf: (repository: string) => repository.split('/')[0] };
      replicas = [];
      for (let i = 0; i < replicaCount; i++) replicas.push(await startRegistry('koa', stores, options));
      // A 500 is a bug: what threw is reported with the failure, not only "500 UNKNOWN".
      for (const replica of replicas) {
        replica.registry.events.on('request.failed', ({ error, method, url }) => failures.push(`${method} ${url}: ${inspect(error)}`));
      }
    });
    after(async () => {
      for (const replica of replicas ?? []) await replica.stop();
      await stores?.destroy();
    });

    it(`never loses a blob of an accepted manifest (${PUSHERS} pushers × ${iterations} images)`, { timeout: 120_000 }, async () => {
      const shared = Array.from({ length: 3 }, () => randomBlob(3000));
      const accepted = new Map<string, Accepted>();
      const counts = { accepted: 0, refused: 0, mounted: 0, deleted: 0, collections: 0, skipped: 0 };
      let stop = false;

      let longest = 0;
      const collectors = [0, 1].map(async (i) => {
        const replica = replicas[i % replicas.length];
        while (!stop) {
          const report = await replica.registry.collectGarbage({ gracePeriodMs: 0, untagged: true });
          longest = Math.max(longest, report.durationMs);
          if (!report.skipped) counts.collections++;
          else {
            counts.skipped++;
            await sleep(10);
          }
          // Back to back, with a few ms of jitter: with no grace period a push only gets through
          // when its blobs and its manifest land between two collections' cutoffs.
          await sleep(Math.random() * 15);
        }
      });
      // Heard at once: a failing collector is reported with the pushers' outcome, below.
      for (const c of collectors) c.catch(() => undefined);

      async function verify(image: Accepted, client: TestClient) {
        const manifest = await client.req(`/v2/${image.repo}/manifests/${image.tag}`);
        assert.equal(manifest.status, 200, `manifest ${image.repo}:${image.tag} is gone`);
        assert.equal(manifest.header('docker-content-digest'), image.digest);
        for (const blob of image.blobs) {
          const res = await client.req(`/v2/${image.repo}/blobs/${sha256(blob)}`);
          assert.equal(res.status, 200, `blob ${sha256(blob)} of accepted ${image.repo}:${image.tag} is gone (${res.text})`);
          assert.equal(sha256(res.body), sha256(blob), 'and keeps its bytes');
        }
      }

      async function pusher(p: number) {
        const client = new TestClient(replicas[p % replicas.length].url);
        const repo = `race/p${p}`;
        const mine: Accepted[] = [];
        for (let i = 0; i < iterations; i++) {
          const config = Buffer.from(JSON.stringify({ pusher: p, i, n: Math.random() }));
          const blobs = [config, randomBlob(1000 + i), shared[(p + i) % shared.length]];
          const manifest = Buffer.from(
            JSON.stringify({
              schemaVersion: 2,
              mediaType: OCI_MANIFEST,
              config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
              layers: blobs
                .slice(1)
                .map((b) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(b), size: b.length })),
            }),
          );
          const tag = `t${i}`;
          for (let attempt = 0; ; attempt++) {
            assert.ok(attempt < 200, 'a push keeps failing');
            // The blobs in parallel, as clients push layers; the shared layer is mounted from
            // another pusher's repository when it is there.
            await Promise.all(
              blobs.map(async (blob, j) => {
                if (j === 2 && i % 2 === 1) {
                  const from = `race/p${(p + 1) % PUSHERS}`;
                  const mount = await client.req(`/v2/${repo}/blobs/uploads/?mount=${sha256(blob)}&from=${from}`, { method: 'POST' });
                  assert.ok(mount.status === 201 || mount.status === 202, `mount: ${mount.status} ${mount.text}`);
                  if (mount.status === 201) {
                    counts.mounted++;
                    return;
                  }
                  await client.req(mount.header('location')!, { method: 'DELETE' });
                }
                await client.pushBlob(repo, blob);
              }),
            );
            const put = await client.pushManifest(repo, tag, manifest.toString());
            if (put.status === 201) break;
            assert.equal(put.status, 400, put.text);
            assert.equal(put.json<{ errors: { code: string }[] }>().errors[0].code, 'MANIFEST_BLOB_UNKNOWN');
            counts.refused++;
          }
          const image = { repo, tag, digest: sha256(manifest), blobs };
          accepted.set(`${repo}:${tag}`, image);
          mine.push(image);
          counts.accepted++;
          // Check an earlier image of ours while the collections go on.
          await verify(mine[Math.floor(Math.random() * mine.length)], client);
          if (i % 3 === 2) {
            const doomed = mine.splice(Math.floor(Math.random() * mine.length), 1)[0];
            accepted.delete(`${doomed.repo}:${doomed.tag}`);
            const deleted = await client.req(`/v2/${repo}/manifests/${doomed.digest}`, { method: 'DELETE' });
            assert.equal(deleted.status, 202, deleted.text);
            counts.deleted++;
          }
        }
      }

      try {
        await Promise.all(Array.from({ length: PUSHERS }, (_, p) => pusher(p)));
      } catch (error) {
        if (failures.length > 0) assert.fail(`${inspect(error)}\nthe registry failed: ${failures.join('\n')}`);
        throw error;
      } finally {
        stop = true;
        await Promise.all(collectors);
      }
      assert.deepEqual(failures, [], 'no request failed');
      // And once more after a last collection, with nothing else going on.
      await replicas[0].registry.collectGarbage({ gracePeriodMs: 0, untagged: true });
      const client = new TestClient(replicas[replicas.length - 1].url);
      for (const image of accepted.values()) await verify(image, client);
      assert.equal(counts.accepted, PUSHERS * iterations);
      assert.ok(counts.collections >= 5, `collections ran meanwhile: ${JSON.stringify(counts)}`);
      console.log(`# ${name}: ${JSON.stringify(counts)}, longest collection ${longest} ms`);
    });
  });
}
