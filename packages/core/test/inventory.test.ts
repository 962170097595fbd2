import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { MemoryMetadataStore } from '@berthjs/testkit';
import { inventory } from '../src/inventory.js';

const digestOf = (content: Buffer) => `sha256:${createHash('sha256').update(content).digest('hex')}`;
const IMAGE = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';

async function push(store: MemoryMetadataStore, repository: string, body: object, tags: string[], mediaType = IMAGE) {
  const content = Buffer.from(JSON.stringify(body));
  const digest = digestOf(content);
  await store.putManifest({ repository, digest, mediaType, content, blobs: [], children: [] }, tags, repository.split('/')[0]);
  return { digest, size: content.length };
}

const image = (layers: number[]) => ({
  schemaVersion: 2,
  mediaType: IMAGE,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'c'.repeat(64)}`, size: 100 },
  layers: layers.map((size, i) => ({
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: `sha256:${String(i).repeat(64)}`,
    size,
  })),
});

describe('inventory', () => {
  it("lists one tenant's repositories with their tags and sizes, and nobody else's", async () => {
    const store = new MemoryMetadataStore();
    const web = await push(store, 'acme/web', image([1000, 2000]), ['v1', 'latest']);
    const api = await push(store, 'acme/api', image([5]), ['1.0']);
    await push(store, 'acme-labs/web', image([1]), ['x']); // a prefix of the name, another tenant
    await push(store, 'globex/web', image([1]), ['y']);
    assert.deepEqual(await inventory(store, { prefix: 'acme/' }), [
      {
        repository: 'acme/api',
        tags: [
          {
            tag: '1.0',
            digest: api.digest,
            mediaType: IMAGE,
            size: api.size + 105,
          },
        ],
      },
      {
        repository: 'acme/web',
        tags: [
          { tag: 'latest', digest: web.digest, mediaType: IMAGE, size: web.size + 3100 },
          { tag: 'v1', digest: web.digest, mediaType: IMAGE, size: web.size + 3100 },
        ],
      },
    ]);
    assert.deepEqual(await inventory(store, { prefix: 'initech/' }), []);
  });

  it('counts an index as itself plus each of its manifests; stops at the limit', async () => {
    const store = new MemoryMetadataStore();
    const amd64 = await push(store, 'acme/multi', image([10]), []);
    const arm64 = await push(store, 'acme/multi', image([20]), []);
    const manifests = [amd64, arm64].map(({ digest, size }) => ({ mediaType: IMAGE, digest, size }));
    const index = await push(store, 'acme/multi', { schemaVersion: 2, mediaType: INDEX, manifests }, ['v2'], INDEX);
    const [multi] = await inventory(store, { prefix: 'acme/' });
    assert.deepEqual(multi.tags, [
      { tag: 'v2', digest: index.digest, mediaType: INDEX, size: index.size + amd64.size + 110 + arm64.size + 120 },
    ]);

    for (let i = 0; i < 5; i++) await push(store, `acme/r${i}`, image([1]), ['t']);
    assert.deepEqual(
      (await inventory(store, { prefix: 'acme/', limit: 3 })).map((r) => r.repository),
      ['acme/multi', 'acme/r0', 'acme/r1'],
    );
  });
});
