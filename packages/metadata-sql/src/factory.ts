import { connect } from './connect.js';
import type { SqlMetadataStoreOptions } from './options.js';
import { SqlMetadataStore } from './sql-metadata-store.js';

/**
 * Open a metadata store: Postgres for a `postgres://` `url`, else the SQLite file `filename`
 * (directory created as needed). Runs the bundled migrations unless `migrate: false`.
 */
export async function createSqlMetadataStore(options: SqlMetadataStoreOptions = {}): Promise<SqlMetadataStore> {
  const { db, dialect, schema } = connect(options);
  const store = new SqlMetadataStore(db, { dialect, schema });
  if (options.migrate === false) return store;
  try {
    await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
