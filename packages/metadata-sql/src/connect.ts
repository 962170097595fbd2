// Builds the knex instance for either dialect. Everything dialect-specific about connections lives
// here: SQLite pragmas and its single connection, Postgres type parsing and search_path.
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory, { type Knex } from 'knex';
import { loadBetterSqlite3, loadPg } from './drivers.js';
import { ImmediateBetterSqlite3Client, PgClient } from './knex-clients.js';
import { dialectOf, type Dialect, type SqlMetadataStoreOptions } from './options.js';

const DEFAULT_FILENAME = 'data/berth.sqlite';
const PG_INT8_OID = 20;

export interface Connection {
  db: Knex;
  dialect: Dialect;
  /** Postgres schema, when one was chosen. */
  schema?: string;
}

export function connect(options: SqlMetadataStoreOptions): Connection {
  const dialect = dialectOf(options);
  return dialect === 'postgres' ? connectPostgres(options) : connectSqlite(options);
}

function connectSqlite(options: SqlMetadataStoreOptions): Connection {
  loadBetterSqlite3(); // its error, not knex's rewording of it
  const target = options.filename ?? options.url ?? DEFAULT_FILENAME;
  // ':memory:' works too (one connection, so one database), but only within this store.
  const filename = target === ':memory:' ? target : target.startsWith('file:') ? fileURLToPath(target) : resolve(target);
  if (filename !== ':memory:') mkdirSync(dirname(filename), { recursive: true });
  const busyTimeout = options.busyTimeoutMs ?? 200;
  const db = knexFactory({
    client: ImmediateBetterSqlite3Client as unknown as typeof Knex.Client,
    connection: { filename },
    useNullAsDefault: true,
    pool: {
      // One connection: better-sqlite3 is synchronous, so a second connection in the same process
      // waiting on the first one's lock would block the very event loop the first needs to commit.
      min: 1,
      max: 1,
      afterCreate(conn: { pragma(source: string): unknown }, done: (err: Error | null, conn: unknown) => void) {
        try {
          // busy_timeout first: switching to WAL itself needs a lock another process may hold.
          conn.pragma(`busy_timeout = ${busyTimeout}`);
          conn.pragma('journal_mode = WAL');
          // WAL + NORMAL: durable across process crashes, commits cost no fsync.
          conn.pragma('synchronous = NORMAL');
          conn.pragma('foreign_keys = ON');
          done(null, conn);
        } catch (err) {
          done(err as Error, conn);
        }
      },
    },
  });
  return { db, dialect: 'sqlite' };
}

function connectPostgres(options: SqlMetadataStoreOptions): Connection {
  const pg = loadPg();
  const db = knexFactory({
    client: PgClient as unknown as typeof Knex.Client,
    connection: {
      connectionString: options.url,
      // int8 (bigint: sizes, epoch ms) as JS numbers for this pool only, not pg's global parsers.
      types: {
        getTypeParser: (oid: number, format?: string) =>
          oid === PG_INT8_OID && format !== 'binary' ? Number : pg.types.getTypeParser(oid, format as 'text'),
      },
    } as Knex.PgConnectionConfig,
    searchPath: options.schema ? [options.schema] : undefined,
    pool: { min: options.pool?.min ?? 0, max: options.pool?.max ?? 10 },
  });
  return { db, dialect: 'postgres', schema: options.schema };
}
