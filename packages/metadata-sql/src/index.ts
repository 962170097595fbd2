export { createSqlMetadataStore } from './factory.js';
export { SqlMetadataStore, type SqlMetadataStoreConfig } from './sql-metadata-store.js';
export type { Dialect, PoolOptions, SqlMetadataStoreOptions } from './options.js';
export { migrationSource, MIGRATIONS_TABLE } from './migration-source.js';
