import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { createRegistry } from '../src/registry.js';
import { UnavailableError } from '../src/ports/errors.js';
import type { BlobStore } from '../src/ports/blob-store.js';
import type { MetadataStore } from '../src/ports/metadata-store.js';

/** A metadata store whose every call fails with `error` (it offers no optional changeVersion). */
function failingMetadata(error: Error): MetadataStore {
  const absent = new Set<string | symbol>(['then', 'changeVersion']);
  return new Proxy({} as MetadataStore, {
    get: (_target, name) => (name === 'name' ? 'failing' : absent.has(name) ? undefined : async () => Promise.reject(error)),
  });
}

const blobs = { name: 'none', capabilities: {} } as BlobStore;
const get = (url: string, method = 'GET') => ({ method, url, headers: {}, body: Readable.from([]) });

describe('error rendering', () => {
  it('turns an unexpected failure into 500 UNKNOWN without leaking internals, and reports it', async () => {
    const registry = createRegistry({ blobs, metadata: failingMetadata(new Error('secret table name berth_internal')) });
    const reported: unknown[] = [];
    registry.events.on('request.failed', ({ error }) => reported.push(error));
    const res = await registry.handle(get('/v2/a/tags/list'));
    assert.equal(res?.status, 500);
    const body = JSON.parse(String(res?.body));
    assert.deepEqual(body, { errors: [{ code: 'UNKNOWN', message: 'unknown error' }] });
    assert.equal(reported.length, 1);
  });

  it('answers even when nobody listens for failures', async () => {
    const registry = createRegistry({ blobs, metadata: failingMetadata(new Error('boom')) });
    const res = await registry.handle(get('/v2/a/manifests/latest'));
    assert.equal(res?.status, 500);
  });

  it('turns an unavailable store into 503 UNAVAILABLE with Retry-After, and HEAD without a body', async () => {
    const registry = createRegistry({ blobs, metadata: failingMetadata(new UnavailableError('connection refused', 'postgres')) });
    const res = await registry.handle(get('/v2/a/manifests/latest', 'HEAD'));
    assert.equal(res?.status, 503);
    assert.equal(res?.headers['Retry-After'], '5');
    assert.equal(res?.body, undefined);
  });
});
