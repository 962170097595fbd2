// A database made by the first release (001_initial) upgrades to garbage collection and usage
// (002_gc_usage) with its data intact: blob rows for what is linked or referenced, references as
// rows, usage equal to a recompute, and nothing collectable before one grace period has passed.
import { after, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { createSqlMetadataStore, MIGRATIONS_TABLE, migrationSource, type SqlMetadataStoreOptions } from '../src/index.js';
import { postgresUrl, query } from './fixtures/postgres.js';

const digestOf = (label: string) => `sha256:${createHash('sha256').update(label).digest('hex')}`;
const [shared, onlyA, unlinkedButReferenced, config] = ['shared', 'only-a', 'unlinked', 'config'].map(digestOf);

/** What 001 stored: two repositories sharing a blob, a manifest naming one blob that lost its link. */
async function seedFirstRelease(db: Knex): Promise<void> {
  await db.migrate.up({ migrationSource, tableName: MIGRATIONS_TABLE, name: '001_initial' });
  const now = Date.now();
  await db('repositories').insert([
    { name: 'team/a', created_at: now },
    { name: 'team/b', created_at: now },
  ]);
  await db('blob_links').insert([
    { repository: 'team/a', digest: shared, size: 100, created_at: now },
    { repository: 'team/b', digest: shared, size: 100, created_at: now },
    { repository: 'team/a', digest: onlyA, size: 7, created_at: now },
    { repository: 'team/a', digest: config, size: 3, created_at: now },
  ]);
  const content = Buffer.from('{"manifest":1}');
  await db('manifests').insert({
    repository: 'team/a',
    digest: digestOf('manifest'),
    media_type: 'application/vnd.oci.image.manifest.v1+json',
    content,
    size: content.length,
    blobs: JSON.stringify([config, shared, unlinkedButReferenced]),
    children: '[]',
    created_at: now,
  });
}

async function checkUpgrade(options: SqlMetadataStoreOptions): Promise<void> {
  const store = await createSqlMetadataStore(options);
  try {
    assert.deepEqual(await store.getBlob('team/a', shared), { size: 100 });
    assert.deepEqual(await store.tenantUsage(''), { bytes: 110, blobs: 3, reserved: 0 }, 'the shared blob counts once');
    assert.deepEqual(await store.repositoryUsage('team/a'), { tenant: '', bytes: 110, blobs: 3 });
    assert.deepEqual(await store.repositoryUsage('team/b'), { tenant: '', bytes: 100, blobs: 1 });
    const recomputed = await store.recomputeUsage();
    assert.deepEqual(recomputed.corrections, [], 'the carried-over figures are exact');
    // Everything is fresh after the upgrade; later, only what nothing links or references goes.
    assert.deepEqual(await store.listCollectableBlobs(Date.now() - 60_000), []);
    const later = await store.listCollectableBlobs(Date.now() + 60_000);
    assert.deepEqual(later, [], 'linked blobs and a referenced blob without a link are all kept');
    // References are rows now: the manifest keeps its blobs from link deletion.
    assert.deepEqual(await store.deleteUnreferencedLinks('team/a', [shared, onlyA, config], Date.now() + 60_000), [
      { digest: onlyA, size: 7, released: true },
    ]);
    // Tenants introduced later: a recompute moves repositories and their usage.
    const moved = await store.recomputeUsage({ tenantOf: (repository) => repository.split('/')[0] });
    assert.ok(moved.corrections.some((c) => c.scope === 'tenant' && c.name === 'team'));
    assert.deepEqual(await store.tenantUsage('team'), { bytes: 103, blobs: 2, reserved: 0 });
    assert.deepEqual(await store.tenantUsage(''), { bytes: 0, blobs: 0, reserved: 0 });
    assert.deepEqual((await store.recomputeUsage({ tenantOf: (repository) => repository.split('/')[0] })).corrections, []);
  } finally {
    await store.close();
  }
}

describe('upgrading a database of the first release', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('SQLite', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-upgrade-'));
    dirs.push(dir);
    const filename = join(dir, 'old.sqlite');
    const db = knexFactory({ client: 'better-sqlite3', connection: { filename }, useNullAsDefault: true });
    try {
      await seedFirstRelease(db);
    } finally {
      await db.destroy();
    }
    await checkUpgrade({ filename });
  });

  it('Postgres', async (t: TestContext) => {
    const url = await postgresUrl(t);
    if (!url) return;
    const schema = `berth_upgrade_${randomBytes(6).toString('hex')}`;
    await query(`CREATE SCHEMA "${schema}"`);
    const db = knexFactory({ client: 'pg', connection: url, searchPath: [schema] });
    try {
      await seedFirstRelease(db);
    } finally {
      await db.destroy();
    }
    try {
      await checkUpgrade({ url, schema });
    } finally {
      await query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });
});
