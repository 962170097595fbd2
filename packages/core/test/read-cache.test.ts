// ReadCache: what it keeps, for how long, and how another process's changes empty it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { MetadataStore } from '../src/index.js';
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

describe('ReadCache', () => {
  it('keeps what it found for ttlMs, never what it did not find', async () => {
    const tags = new Map([['app:v1', 'sha256:a']]);
    const { store, counter } = fakeStore(tags);
    const cache = new ReadCache(store, 50);
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
    const cache = new ReadCache(store, 60_000);
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
    const cache = new ReadCache(store, 60_000);
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:a');
    assert.equal(await cache.resolveTag('app', 'v1'), 'sha256:a');
    assert.equal(counter.reads, 2, 'the first answer was not kept');
  });
});
