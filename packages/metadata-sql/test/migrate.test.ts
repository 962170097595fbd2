// Several processes starting on one fresh database must all come up, and a database that an
// earlier race left with two knex lock rows must not stay locked forever.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import knexFactory from 'knex';
import pg from 'pg';
import { createSqlMetadataStore, MIGRATIONS_TABLE, type SqlMetadataStoreOptions } from '../src/index.js';
import { postgresUrl } from './fixtures/postgres.js';

const LOCK_TABLE = `${MIGRATIONS_TABLE}_lock`;

/** Start `count` stores at once on the same database; all must open and see one schema. */
async function startTogether(options: SqlMetadataStoreOptions, count: number): Promise<void> {
  const stores = await Promise.all(Array.from({ length: count }, () => createSqlMetadataStore(options)));
  try {
    await stores[0].createUpload({ id: 'probe', repository: 'team/app', tenant: '', state: {} });
    for (const store of stores) assert.equal((await store.getUpload('probe'))?.repository, 'team/app');
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
}

describe('migrations on a fresh database', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('SQLite: eight stores starting at once all open; a lock table with two rows is repaired', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-migrate-'));
    dirs.push(dir);
    await startTogether({ filename: join(dir, 'together.sqlite') }, 8);

    // The state knex's select-then-insert race leaves behind: two unlocked lock rows.
    const filename = join(dir, 'two-rows.sqlite');
    const db = knexFactory({ client: 'better-sqlite3', connection: { filename }, useNullAsDefault: true });
    try {
      await db.schema.createTable(LOCK_TABLE, (t) => {
        t.increments('index').primary();
        t.integer('is_locked');
      });
      await db(LOCK_TABLE).insert([{ is_locked: 0 }, { is_locked: 0 }]);
      await startTogether({ filename }, 2);
      assert.deepEqual(await db(LOCK_TABLE).select('is_locked'), [{ is_locked: 0 }]);
    } finally {
      await db.destroy();
    }
  });

  it('Postgres: eight stores starting at once on a new schema all open; two lock rows are repaired', { timeout: 60_000 }, async (t) => {
    const url = await postgresUrl(t);
    if (!url) return;
    const schemas = [`berth_migrate_${randomBytes(4).toString('hex')}`, `berth_migrate_${randomBytes(4).toString('hex')}`];
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await startTogether({ url, schema: schemas[0] }, 8);
      await admin.query(`CREATE SCHEMA ${schemas[1]}`);
      await admin.query(`CREATE TABLE ${schemas[1]}.${LOCK_TABLE} ("index" serial primary key, is_locked integer)`);
      await admin.query(`INSERT INTO ${schemas[1]}.${LOCK_TABLE} (is_locked) VALUES (0), (0)`);
      await startTogether({ url, schema: schemas[1] }, 2);
      const { rows } = await admin.query(`SELECT is_locked FROM ${schemas[1]}.${LOCK_TABLE}`);
      assert.deepEqual(rows, [{ is_locked: 0 }]);
    } finally {
      for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
    }
  });
});
