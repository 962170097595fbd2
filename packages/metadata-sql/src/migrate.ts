// Runs the bundled migrations. Several processes may start against a fresh database at once.
//
// knex's migrator creates its lock table and then inserts the single lock row with a
// select-then-insert outside any transaction: two processes starting together can both insert,
// and with two rows its lock (`UPDATE ... SET is_locked = 1 WHERE is_locked = 0`, which must
// change exactly one row) fails with "Migration table is already locked" on every start from
// then on. So the bookkeeping tables and the one row are made here first, in a transaction the
// other processes wait for (SQLite: BEGIN IMMEDIATE; Postgres: an advisory lock), which also
// removes extra rows a database may carry from that race. What remains racy (a loser finding the
// lock taken or a table just created) is retried; by then there is nothing left to do.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';
import { isSqliteBusy, isUniqueViolation } from './backend-errors.js';
import { MIGRATIONS_TABLE, migrationSource } from './migration-source.js';
import type { Dialect } from './options.js';

const ATTEMPTS = 50;
const LOCK_TABLE = `${MIGRATIONS_TABLE}_lock`;
/** Postgres advisory lock key serializing Berth's migration bookkeeping ("berth" in ASCII). */
const ADVISORY_KEY = 0x6265727468;

function isStartupRace(err: unknown): boolean {
  const message = err instanceof Error ? err.message : '';
  return isSqliteBusy(err) || isUniqueViolation(err) || /already locked|already exists/i.test(message);
}

export async function runMigrations(db: Knex, dialect: Dialect, schema?: string): Promise<void> {
  const config: Knex.MigratorConfig = { migrationSource, tableName: MIGRATIONS_TABLE, schemaName: schema };
  for (let attempt = 1; ; attempt++) {
    try {
      await prepareBookkeeping(db, dialect, schema);
      await db.migrate.latest(config);
      return;
    } catch (err) {
      if (attempt >= ATTEMPTS || !isStartupRace(err)) throw err;
      await sleep(20 + Math.random() * 80);
    }
  }
}

/** The schema, knex's two bookkeeping tables (as knex makes them) and exactly one lock row. */
async function prepareBookkeeping(db: Knex, dialect: Dialect, schema?: string): Promise<void> {
  await db.transaction(async (trx) => {
    if (dialect === 'postgres') {
      await trx.raw('SELECT pg_advisory_xact_lock(?)', [ADVISORY_KEY]);
      if (schema !== undefined) await trx.raw('CREATE SCHEMA IF NOT EXISTS ??', [schema]);
    }
    const tables = () => (schema === undefined ? trx.schema : trx.schema.withSchema(schema));
    if (!(await tables().hasTable(MIGRATIONS_TABLE))) {
      await tables().createTable(MIGRATIONS_TABLE, (t) => {
        t.increments();
        t.string('name');
        t.integer('batch');
        t.timestamp('migration_time');
      });
    }
    if (!(await tables().hasTable(LOCK_TABLE))) {
      await tables().createTable(LOCK_TABLE, (t) => {
        t.increments('index').primary();
        t.integer('is_locked');
      });
    }
    const lockRows = () => (schema === undefined ? trx(LOCK_TABLE) : trx(LOCK_TABLE).withSchema(schema));
    const rows: { index: number }[] = await lockRows().select('index').orderBy('index');
    if (rows.length === 0) await lockRows().insert({ is_locked: 0 });
    // With two rows nobody could ever take the lock, so no migration holds it: keep the first.
    else if (rows.length > 1) await lockRows().whereNot('index', rows[0].index).del();
  });
}
