/** Connection pool bounds (Postgres only: SQLite always uses one connection per store). */
export interface PoolOptions {
  /** Connections kept open when idle. Default 0. */
  min?: number;
  /** Most connections open at once. Default 10. */
  max?: number;
}

/** Options of `createSqlMetadataStore`. Give `url` for Postgres, else `filename` for SQLite. */
export interface SqlMetadataStoreOptions {
  /**
   * `postgres://` (or `postgresql://`) connection URL: selects Postgres. Any other value is taken
   * as a SQLite file, like `filename` (a path or a `file:` URL).
   */
  url?: string;
  /**
   * SQLite database file (the embedded default); its directory is created when missing.
   * Several processes may open the same file. Defaults to `./data/berth.sqlite`.
   */
  filename?: string;
  /**
   * Postgres schema holding Berth's tables (set as the connection's `search_path`); created when
   * missing. Lets one database host several registries or isolated test runs. Default `public`.
   */
  schema?: string;
  /** Postgres connection pool bounds. */
  pool?: PoolOptions;
  /**
   * SQLite: how long (ms) a statement waits synchronously for another process's write lock before
   * the store retries asynchronously. Short, because the wait blocks the event loop. Default 200.
   */
  busyTimeoutMs?: number;
  /** Run the bundled migrations before returning the store. Default true. */
  migrate?: boolean;
}

export type Dialect = 'sqlite' | 'postgres';

export function dialectOf(options: SqlMetadataStoreOptions): Dialect {
  return options.url !== undefined && /^postgres(ql)?:\/\//i.test(options.url) ? 'postgres' : 'sqlite';
}
