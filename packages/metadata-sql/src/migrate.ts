// Runs the bundled migrations. Several processes may start against a fresh database at once: knex
// then races on creating its bookkeeping tables ("already exists") or finds its lock row taken
// ("already locked"); the loser simply waits and tries again, by then finding nothing to do.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';
import { isSqliteBusy, isUniqueViolation } from './backend-errors.js';
import { MIGRATIONS_TABLE, migrationSource } from './migration-source.js';

const ATTEMPTS = 50;

function isStartupRace(err: unknown): boolean {
  const message = err instanceof Error ? err.message : '';
  return isSqliteBusy(err) || isUniqueViolation(err) || /already locked|already exists/i.test(message);
}

export async function runMigrations(db: Knex, schema?: string): Promise<void> {
  const config: Knex.MigratorConfig = { migrationSource, tableName: MIGRATIONS_TABLE, schemaName: schema };
  for (let attempt = 1; ; attempt++) {
    try {
      if (schema !== undefined) await db.raw('CREATE SCHEMA IF NOT EXISTS ??', [schema]);
      await db.migrate.latest(config);
      return;
    } catch (err) {
      if (attempt >= ATTEMPTS || !isStartupRace(err)) throw err;
      await sleep(20 + Math.random() * 80);
    }
  }
}
