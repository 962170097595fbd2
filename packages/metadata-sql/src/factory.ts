import { createHash } from 'node:crypto';
import { toStoreError } from './backend-errors.js';
import { postgresChangeFeed, sqliteChangeFeed, type ChangeFeed } from './change-feed.js';
import { connect } from './connect.js';
import { runMigrations } from './migrate.js';
import type { SqlMetadataStoreOptions } from './options.js';
import { SqlMetadataStore } from './sql-metadata-store.js';

/**
 * Open a metadata store: Postgres for a `postgres://` `url`, else the SQLite file `filename`
 * (directory created as needed). Runs the bundled migrations unless `migrate: false`, then
 * follows other processes' changes (change-feed.ts) so replicas' read caches stay exact.
 */
export async function createSqlMetadataStore(options: SqlMetadataStoreOptions = {}): Promise<SqlMetadataStore> {
  const { db, dialect, schema } = connect(options);
  let changes: ChangeFeed;
  try {
    if (options.migrate !== false) await runMigrations(db, dialect, schema);
    changes = dialect === 'postgres' ? await postgresChangeFeed(options.url!, changeChannel(schema)) : await sqliteChangeFeed(db);
  } catch (err) {
    await db.destroy().catch(() => undefined);
    throw toStoreError(err, dialect);
  }
  return new SqlMetadataStore(db, { dialect, schema, changes });
}

/** One NOTIFY channel per schema; hashed, as channel names stop at 63 bytes. */
function changeChannel(schema = 'public'): string {
  return `berth_changes_${createHash('sha256').update(schema).digest('hex').slice(0, 16)}`;
}
