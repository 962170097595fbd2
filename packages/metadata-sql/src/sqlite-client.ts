// knex's SQLite transactions open with a deferred `BEGIN`: the transaction takes a read snapshot on
// its first statement and only asks for the write lock on its first write. When another process
// commits in between, SQLite cannot upgrade the stale snapshot and fails at once with SQLITE_BUSY
// (the busy handler is not consulted), so two processes doing read-then-write transactions can
// fail each other. `BEGIN IMMEDIATE` takes the write lock up front, waiting through busy_timeout,
// so every write transaction here is serialized across processes instead. knex has no option for
// it, hence this small subclass of its better-sqlite3 client (selected via `client:` in the config).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

// biome-ignore-start lint/suspicious/noExplicitAny: knex's dialect classes are untyped JS.
const BetterSqlite3Client: new (...args: any[]) => any = require('knex/lib/dialects/better-sqlite3/index.js');
const SqliteTransaction: new (...args: any[]) => any = require('knex/lib/dialects/sqlite3/execution/sqlite-transaction.js');
// biome-ignore-end lint/suspicious/noExplicitAny: -

class ImmediateTransaction extends SqliteTransaction {
  begin(connection: unknown): Promise<unknown> {
    return this.query(connection, 'BEGIN IMMEDIATE;');
  }
}

/** knex client for better-sqlite3 whose top-level transactions start with `BEGIN IMMEDIATE`. */
export class ImmediateBetterSqlite3Client extends BetterSqlite3Client {
  transaction(container: unknown, config: unknown, outerTx: unknown): unknown {
    return new ImmediateTransaction(this, container, config, outerTx);
  }
}
