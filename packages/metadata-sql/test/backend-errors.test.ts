import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConflictError, StorageFullError, UnavailableError } from '@berthjs/core';
import { createSqlMetadataStore, SqlMetadataStore } from '../src/index.js';
import { isLostRace, toStoreError } from '../src/backend-errors.js';
import { connect } from '../src/connect.js';

describe('backend errors', () => {
  it('maps an unreachable Postgres to UnavailableError', async () => {
    const started = Date.now();
    await assert.rejects(createSqlMetadataStore({ url: 'postgres://postgres@127.0.0.1:1/test' }), (err: unknown) => {
      assert.ok(err instanceof UnavailableError, String(err));
      assert.equal(err.store, 'postgres');
      return true;
    });
    assert.ok(Date.now() - started < 10_000, 'fails fast instead of waiting for the pool timeout');
  });

  it('maps unique violations to ConflictError and SQLITE_BUSY to UnavailableError', () => {
    assert.ok(toStoreError(Object.assign(new Error('dup'), { code: '23505' }), 'postgres') instanceof ConflictError);
    assert.ok(toStoreError(Object.assign(new Error('dup'), { code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }), 'sqlite') instanceof ConflictError);
    assert.ok(toStoreError(Object.assign(new Error('busy'), { code: 'SQLITE_BUSY' }), 'sqlite') instanceof UnavailableError);
    const other = new TypeError('bug');
    assert.equal(toStoreError(other, 'sqlite'), other);
  });

  it('maps a full disk or database to StorageFullError, and knows which races to run again', () => {
    for (const code of ['53100', 'SQLITE_FULL', 'ENOSPC', 'EDQUOT']) {
      assert.ok(toStoreError(Object.assign(new Error('full'), { code }), 'sqlite') instanceof StorageFullError, code);
    }
    for (const code of ['23503', '23505', '40P01', '40001']) {
      assert.ok(isLostRace(toStoreError(Object.assign(new Error('race'), { code }), 'postgres')), code);
    }
    assert.ok(!isLostRace(toStoreError(Object.assign(new Error('down'), { code: 'ECONNREFUSED' }), 'postgres')));
  });

  it('answers StorageFullError when SQLite runs out of pages', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-full-'));
    const { db } = connect({ filename: join(dir, 'full.sqlite') });
    const store = new SqlMetadataStore(db, { dialect: 'sqlite' });
    try {
      await store.migrate();
      // One connection per SQLite store, so the pragma holds for every statement the store runs.
      const [{ page_count: pages }] = await db.raw('PRAGMA page_count');
      await db.raw(`PRAGMA max_page_count = ${pages + 2}`);
      const manifest = {
        repository: 'full/app',
        digest: `sha256:${'a'.repeat(64)}`,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        content: Buffer.alloc(64 * 1024, 1),
        blobs: [],
        children: [],
      };
      await assert.rejects(store.putManifest(manifest, ['v1'], ''), StorageFullError);
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
