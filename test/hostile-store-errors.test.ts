// Store errors become the spec's answers, through the one table in renderError: never a bare 500
// for a condition a store names, and nothing stored by the request that failed. On fs + SQLite
// and S3 + Postgres, with failures injected in front of the real stores (@berthjs/testkit Faults),
// plus the real thing where it can be made: a full disk under the fs store (/dev/full) and the
// manifest PUT / DELETE race on Postgres.
import assert from 'node:assert/strict';
import { rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, before, describe, it } from 'node:test';
import { ConflictError, NotFoundError, StorageFullError, TooLargeError, UnavailableError, UnsupportedError } from '@berthjs/core';
import type { FsBlobStore } from '@berthjs/storage-fs';
import { requireS3 } from '@berthjs/storage-s3/testing';
import { Faults, type StoreMethod } from '@berthjs/testkit';
import { assertError, OCI_MANIFEST, randomBlob, sha256, type TestClient, type RawResponse } from './support/client.js';
import { useHosts, type HostileHost } from './support/hostile.js';
import { embeddedStores, postgresStores, s3PostgresStores, type StoreSet } from './support/stores.js';

const STORE = 'test-store';
const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });

/** What each store error must become: status, code, and a word of the message where it matters. */
const TABLE: { name: string; error: () => unknown; upload: [number, string]; manifest: [number, string]; message?: RegExp }[] = [
  {
    name: 'ConflictError',
    error: () => new ConflictError('lost a race', STORE),
    upload: [416, 'BLOB_UPLOAD_INVALID'],
    manifest: [404, 'MANIFEST_UNKNOWN'],
  },
  {
    name: 'NotFoundError',
    error: () => new NotFoundError('gone', STORE),
    upload: [404, 'BLOB_UPLOAD_UNKNOWN'],
    manifest: [404, 'MANIFEST_UNKNOWN'],
  },
  {
    name: 'UnsupportedError',
    error: () => new UnsupportedError('cannot', STORE),
    upload: [400, 'UNSUPPORTED'],
    manifest: [400, 'UNSUPPORTED'],
  },
  {
    name: 'TooLargeError',
    error: () => new TooLargeError('too big', STORE),
    upload: [413, 'SIZE_INVALID'],
    manifest: [413, 'SIZE_INVALID'],
  },
  {
    name: 'StorageFullError',
    error: () => new StorageFullError('disk full', STORE),
    upload: [503, 'UNAVAILABLE'],
    manifest: [503, 'UNAVAILABLE'],
    message: /storage is full/,
  },
  { name: 'a raw ENOSPC', error: enospc, upload: [503, 'UNAVAILABLE'], manifest: [503, 'UNAVAILABLE'], message: /storage is full/ },
  {
    name: 'UnavailableError',
    error: () => new UnavailableError('down', STORE),
    upload: [503, 'UNAVAILABLE'],
    manifest: [503, 'UNAVAILABLE'],
  },
];

function describeStoreErrors(name: string, makeStores: () => Promise<StoreSet>) {
  describe(`hostile store errors: ${name}`, () => {
    const faults = new Faults();
    const fixture = useHosts(['koa'], makeStores, {}, async (stores) => {
      const opened = await stores.open();
      return { blobs: faults.wrap(opened.blobs, 'blobs'), metadata: faults.wrap(opened.metadata, 'metadata') };
    }).get('koa')!;
    let host: HostileHost;
    let client: TestClient;
    before(() => ({ host, client } = fixture));
    afterEach(() => faults.clear());

    function assertAnswer(res: RawResponse, [status, code]: [number, string], message: RegExp | undefined, what: string) {
      assertError(res, status, code);
      if (message) assert.match(res.json().errors[0].message, message, what);
      if (status === 503) assert.ok(res.header('retry-after'), `${what}: Retry-After on a 503`);
    }

    /** A session holding 100 bytes. */
    async function session(repo: string): Promise<string> {
      const location = (await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' })).header('location')!;
      assert.equal((await client.req(location, { method: 'PATCH', body: randomBlob(100) })).status, 202);
      return location;
    }

    it('a failing append answers per the table and leaves the session at its last good offset', async () => {
      for (const row of TABLE) {
        const location = await session(`errors/append`);
        faults.fail('appendUpload', row.error(), { store: 'blobs' });
        const res = await client.req(location, { method: 'PATCH', body: randomBlob(50) });
        faults.clear();
        assertAnswer(res, row.upload, row.message, row.name);
        if (row.upload[0] === 416) assert.equal(res.header('range'), '0-99', 'a 416 tells where to resume');
        if (row.upload[0] !== 404) assert.equal((await client.req(location)).header('range'), '0-99', row.name);
      }
    });

    it('a failing commit answers per the table and makes nothing visible under the digest', async () => {
      for (const row of TABLE) {
        const blob = randomBlob(64);
        const digest = sha256(blob);
        const location = (await client.req('/v2/errors/commit/blobs/uploads/', { method: 'POST' })).header('location')!;
        faults.fail('commitUpload', row.error(), { store: 'blobs' });
        const res = await client.req(`${location}?digest=${digest}`, { method: 'PUT', body: blob });
        faults.clear();
        // A commit that does not continue an upload is a 416 as well: the session changed under it.
        assertAnswer(res, row.upload, row.message, row.name);
        assert.equal((await client.req(`/v2/errors/commit/blobs/${digest}`, { method: 'HEAD' })).status, 404, row.name);
      }
    });

    it('a failing manifest write answers per the table and stores nothing', async () => {
      const config = Buffer.from('{}');
      await client.pushBlob('errors/manifest', config);
      for (const row of TABLE) {
        const manifest = {
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: 2 },
          layers: [],
          annotations: { row: row.name },
        };
        faults.fail('putManifest', row.error(), { store: 'metadata' });
        const res = await client.pushManifest('errors/manifest', 'v1', manifest);
        faults.clear();
        assertAnswer(res, row.manifest, row.message, row.name);
        assertError(await client.req('/v2/errors/manifest/manifests/v1'), 404, 'MANIFEST_UNKNOWN');
      }
    });

    it('reports only server-side failures (5xx) on request.failed', async () => {
      host.failures.length = 0;
      for (const [method, error] of [
        ['createUpload', new ConflictError('x', STORE)],
        ['createUpload', new StorageFullError('x', STORE)],
      ] as [StoreMethod, unknown][]) {
        faults.fail(method, error, { store: 'metadata' });
        await client.req('/v2/errors/events/blobs/uploads/', { method: 'POST' });
        faults.clear();
      }
      assert.equal(host.failures.length, 1);
      assert.ok(host.failures[0] instanceof StorageFullError);
    });

    it('a blob link whose bytes are gone is BLOB_UNKNOWN, a store that is down 503', async () => {
      const digest = await client.pushBlob('errors/read', randomBlob(10));
      faults.fail('read', new NotFoundError('gone', STORE), { store: 'blobs' });
      assertError(await client.req(`/v2/errors/read/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
      faults.clear();
      faults.fail('read', new UnavailableError('down', STORE), { store: 'blobs' });
      assertError(await client.req(`/v2/errors/read/blobs/${digest}`), 503, 'UNAVAILABLE');
      faults.clear();
      assert.equal((await client.req(`/v2/errors/read/blobs/${digest}`)).status, 200);
    });
  });
}

describeStoreErrors('fs + sqlite', embeddedStores);
if (requireS3()) describeStoreErrors('s3 + postgres', s3PostgresStores);

describe('hostile store errors: a full disk under the fs store', () => {
  let root = '';
  const fixture = useHosts(['express'], embeddedStores, {}, async (stores) => {
    const opened = await stores.open();
    root = (opened.blobs as FsBlobStore).root;
    return opened;
  }).get('express')!;
  let host: HostileHost;
  let client: TestClient;
  before(() => ({ host, client } = fixture));

  it('ENOSPC from the body pipeline answers 503 "storage is full" and keeps the session', async () => {
    const location = (await client.req('/v2/full/disk/blobs/uploads/', { method: 'POST' })).header('location')!;
    const id = location.split('/').pop()!;
    // The session's file becomes /dev/full: every write to it fails with ENOSPC, as on a full disk.
    const file = join(root, 'uploads', id);
    await rm(file);
    await symlink('/dev/full', file);
    const res = await client.req(location, { method: 'PATCH', body: randomBlob(3 << 20) });
    assertError(res, 503, 'UNAVAILABLE');
    assert.match(res.json().errors[0].message, /storage is full/);
    assert.equal((await client.req(location)).header('range'), '0-0');
    assert.ok(host.failures[0] instanceof StorageFullError, String(host.failures[0]));
  });
});

describe('hostile store errors: manifest PUT with a tag racing DELETE of that manifest (postgres)', () => {
  const fixture = useHosts(['koa'], postgresStores).get('koa')!;
  let host: HostileHost;
  let client: TestClient;
  before(() => ({ host, client } = fixture));

  it('answers every request with 201, 202 or 404 and leaves no tag without its manifest', async () => {
    const config = Buffer.from('{}');
    await client.pushBlob('race/app', config);
    const seen = new Map<number, number>();
    for (let i = 0; i < 60; i++) {
      const bytes = JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: 2 },
        layers: [],
        annotations: { i: String(i % 4) },
      });
      const put = () => client.pushManifest('race/app', `t${i % 3}`, bytes);
      const del = () => client.req(`/v2/race/app/manifests/${sha256(bytes)}`, { method: 'DELETE' });
      for (const res of await Promise.all([put(), del(), put(), del()])) seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
    }
    assert.deepEqual(
      [...seen.keys()].filter((s) => ![201, 202, 404].includes(s)),
      [],
      JSON.stringify([...seen]),
    );
    assert.deepEqual(host.failures, []);
    for (const tag of ['t0', 't1', 't2']) {
      const res = await client.req(`/v2/race/app/manifests/${tag}`);
      assert.ok([200, 404].includes(res.status), `${tag}: ${res.status}`);
    }
  });
});
