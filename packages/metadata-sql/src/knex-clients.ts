// knex clients for both dialects, selected via `client:` in the knex config (connect.ts).
//
// Both take their driver from drivers.ts instead of knex's own `require`, which resolves from
// knex's location: the drivers are this package's optional peers, so only ours is sure to see them.
//
// SQLite also changes how transactions begin. knex opens them with a deferred `BEGIN`: the
// transaction takes a read snapshot on its first statement and only asks for the write lock on its
// first write. When another process commits in between, SQLite cannot upgrade the stale snapshot
// and fails at once with SQLITE_BUSY (the busy handler is not consulted), so two processes doing
// read-then-write transactions can fail each other. `BEGIN IMMEDIATE` takes the write lock up
// front, waiting through busy_timeout, so every write transaction here is serialized across
// processes instead. knex has no option for it, hence the transaction subclass.
import { createRequire } from 'node:module';
import { loadBetterSqlite3, loadPg } from './drivers.js';

const require = createRequire(import.meta.url);

// biome-ignore-start lint/suspicious/noExplicitAny: knex's dialect classes are untyped JS.
const BetterSqlite3Client: new (...args: any[]) => any = require('knex/lib/dialects/better-sqlite3/index.js');
const PostgresClient: new (...args: any[]) => any = require('knex/lib/dialects/postgres/index.js');
const SqliteTransaction: new (...args: any[]) => any = require('knex/lib/dialects/sqlite3/execution/sqlite-transaction.js');
// biome-ignore-end lint/suspicious/noExplicitAny: -

class ImmediateTransaction extends SqliteTransaction {
  begin(connection: unknown): Promise<unknown> {
    return this.query(connection, 'BEGIN IMMEDIATE;');
  }

  // SQLite ends the transaction itself after some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM):
  // knex's ROLLBACK then fails with "no transaction is active", and that error would replace the
  // cause (a full disk became a bare 500). Reject with the cause instead.
  rollback(connection: { inTransaction?: boolean }, error: unknown): Promise<unknown> {
    if (connection.inTransaction !== false) return super.rollback(connection, error);
    this._completed = true;
    this._rejecter(error);
    return Promise.resolve();
  }
}

/** knex client for better-sqlite3 whose top-level transactions start with `BEGIN IMMEDIATE`. */
export class ImmediateBetterSqlite3Client extends BetterSqlite3Client {
  _driver(): unknown {
    return loadBetterSqlite3();
  }

  transaction(container: unknown, config: unknown, outerTx: unknown): unknown {
    return new ImmediateTransaction(this, container, config, outerTx);
  }
}

/** knex's Postgres client on our `pg`. */
export class PgClient extends PostgresClient {
  _driver(): unknown {
    return loadPg();
  }
}
