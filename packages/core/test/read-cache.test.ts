// ReadCache: what it keeps, for how long, and how another process's changes empty it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ManifestRecord, MetadataStore } from '../src/index.js';
import { ReadCache } from '../src/read-cache.js';

/** Tags from a Map, counting reads; `version` is what changeVersion() answers (absent: no method). */
function fakeStore(tags: Map<string, string>, options: { version?: () => number; beforeAnswer?: () => void } = {}) {
  const counter = { reads: 0 };
  const store = {
    async resolveTag(repository: string, tag: string) {
      counter.reads++;
      const digest = tags.get(`${repository}:${tag}`);
      await new Promise((r) => setImmediate(r));
      options.beforeAnswer?.();
      return digest;
    },
    ...(options.version ? { changeVersion: options.version } : {}),
  } as unknown as MetadataStore;
  return { store, counter };
}

const limits = (ttlMs: number) => ({ ttlMs, maxBytes: 1 << 20, maxManifestBytes: 1 << 16 });

describe('ReadCache', () => {
  it('keeps what it found for ttlMs, never what it did not find', async () => {
    const tags = new Map([['app:v1', 'sha256:a']]);
    const { store, counter } = fakeStore(tags);
    const cache = new ReadCache(store, limits(50));
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:a');
    tags.set('app:v1', 'sha256:b');
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:a', 'served from memory');
    assert.equal(await cache.resolveTag('app', 'v2'), undefined);
    tags.set('app:v2', 'sha256:c');
    assert.equal(await cache.resolveTag('app', 'v2'), 'sha256:c', 'a miss is asked again');
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:b', 'expired after ttlMs');
    assert.equal(counter.reads, 4);
  });

  it('empties itself when the store reports another process changed something', async () => {
    let version = 1;
    const tags = new Map([['app:v1', 'sha256:a']]);
    const { store, counter } = fakeStore(tags, { version: () => version });
    const cache = new ReadCache(store, limits(60_000));
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:a');
    tags.set('app:v1', 'sha256:b');
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:a');
    assert.equal(counter.reads, 1);
    version = 2;
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:b', 'a new version is read through at once');
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:b');
    assert.equal(counter.reads, 2, 'and cached again under the new version');
  });

  it('serves but does not keep a value loaded while the version changed', async () => {
    let version = 1;
    const tags = new Map([['app:v1', 'sha256:a']]);
    // The change lands while the first read is in flight: its answer may predate it.
    const { store, counter } = fakeStore(tags, { version: () => version, beforeAnswer: () => (version = 2) });
    const cache = new ReadCache(store, limits(60_000));
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:a');
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:a');
    assert.equal(counter.reads, 2, 'the first answer was not kept');
  });

  /** Manifests of `size` bytes, counting reads per digest. */
  function manifestStore(size: number) {
    const reads = new Map<string, number>();
    const store = {
      async getManifest(repository: string, digest: string): Promise<ManifestRecord> {
        reads.set(digest, (reads.get(digest) ?? 0) + 1);
        return { repository, digest, mediaType: 'application/json', content: Buffer.alloc(size), blobs: [], children: [] };
      },
    } as unknown as MetadataStore;
    return { store, reads };
  }

  it('stays within maxBytes, letting the least recently used entries go', async () => {
    const { store, reads } = manifestStore(10_000);
    const cache = new ReadCache(store, { ttlMs: 60_000, maxBytes: 100_000, maxManifestBytes: 50_000 });
    for (let i = 0; i < 100; i++) {
      await cache.getManifest('app', `sha256:${i}`);
      assert.ok(cache.size <= 100_000, `${cache.size} bytes after ${i + 1} manifests`);
    }
    assert.ok(cache.size > 50_000, 'and it does hold what fits');
    await cache.getManifest('app', 'sha256:99');
    await cache.getManifest('app', 'sha256:0');
    assert.equal(reads.get('sha256:99'), 1, 'the newest entry was served from memory');
    assert.equal(reads.get('sha256:0'), 2, 'the oldest had left');
  });

  it('never keeps a manifest larger than maxManifestBytes', async () => {
    const { store, reads } = manifestStore(60_000);
    const cache = new ReadCache(store, { ttlMs: 60_000, maxBytes: 1 << 20, maxManifestBytes: 50_000 });
    await cache.getManifest('app', 'sha256:big');
    await cache.getManifest('app', 'sha256:big');
    assert.equal(reads.get('sha256:big'), 2);
    assert.equal(cache.size, 0);
  });

  it('removes expired entries without waiting for the next read of them', async () => {
    const { store } = manifestStore(1000);
    const cache = new ReadCache(store, { ttlMs: 30, maxBytes: 1 << 20, maxManifestBytes: 50_000 });
    for (let i = 0; i < 10; i++) await cache.getManifest('app', `sha256:${i}`);
    assert.ok(cache.size > 10_000);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(cache.size, 0);
  });

  it('forgets a repository on invalidate, and only that one', async () => {
    const { store, reads } = manifestStore(100);
    const cache = new ReadCache(store, { ttlMs: 60_000, maxBytes: 1 << 20, maxManifestBytes: 50_000 });
    await cache.getManifest('a', 'sha256:1');
    await cache.getManifest('a/b', 'sha256:1');
    cache.invalidate('a');
    await cache.getManifest('a', 'sha256:1');
    await cache.getManifest('a/b', 'sha256:1');
    assert.equal(reads.get('sha256:1'), 3, 'a was read again, a/b was not');
  });
});
