// Migrations are imported statically instead of read from a directory, so the same list works from
// `src` under tsx, from `dist`, and from a bundle. Names carry no extension, so a database migrated
// from sources stays in step with one migrated from the build.
import type { Knex } from 'knex';
import * as initial from './migrations/001_initial.js';
import * as gcUsage from './migrations/002_gc_usage.js';

interface Migration {
  name: string;
  module: Knex.Migration;
}

const MIGRATIONS: readonly Migration[] = [
  { name: '001_initial', module: initial },
  { name: '002_gc_usage', module: gcUsage },
];

export const migrationSource: Knex.MigrationSource<Migration> = {
  getMigrations: async () => [...MIGRATIONS],
  getMigrationName: (migration) => migration.name,
  getMigration: async (migration) => migration.module,
};

/** Berth's own bookkeeping tables, apart from any knex migrations of a host app in the same schema. */
export const MIGRATIONS_TABLE = 'berth_migrations';
