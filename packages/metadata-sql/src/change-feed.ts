// How a SqlMetadataStore learns that another process changed what the core's read cache holds
// (MetadataStore.changeVersion): deleted blob links, moved or deleted tags, deleted manifests.
//
// SQLite: `PRAGMA data_version` changes whenever another connection (process) commits; one
// prepared statement on the store's single connection answers in about a microsecond, so every
// cached read can ask, and nothing is ever announced.
// Postgres: writes that matter call pg_notify inside their transaction (delivered on commit) and
// a dedicated connection LISTENs. A notification takes about a millisecond to arrive, which is
// how long another replica may still serve what was deleted. While that connection is down the
// version changes on every call, so nothing is cached until it is back.
import type { Knex } from 'knex';
import type pg from 'pg';
import { loadPg } from './drivers.js';

export interface ChangeFeed {
  /** Changes whenever another process may have changed cached data. */
  version(): number;
  /** Inside a write transaction that deletes or moves cached data: tell the other processes. */
  announce(trx: Knex.Transaction): Promise<void>;
  close(): Promise<void>;
}

interface SqliteStatement {
  pluck(): SqliteStatement;
  get(): unknown;
}

/** `data_version` of the store's one SQLite connection (better-sqlite3 is synchronous). */
export async function sqliteChangeFeed(db: Knex): Promise<ChangeFeed> {
  const client = db.client as { acquireConnection(): Promise<unknown>; releaseConnection(c: unknown): Promise<void> };
  let statement: SqliteStatement | undefined;
  let preparing: Promise<void> | undefined;
  let unknownVersion = 0;
  const prepare = async () => {
    const connection = (await client.acquireConnection()) as { prepare(sql: string): SqliteStatement };
    try {
      statement = connection.prepare('PRAGMA data_version').pluck();
    } finally {
      await client.releaseConnection(connection);
    }
  };
  await prepare();
  return {
    version() {
      try {
        if (statement) return Number(statement.get());
      } catch {
        statement = undefined; // the pool replaced its connection
      }
      // No caching until a statement on the current connection is ready.
      preparing ??= prepare()
        .catch(() => undefined)
        .finally(() => (preparing = undefined));
      return -++unknownVersion;
    },
    announce: async () => {},
    close: async () => {},
  };
}

/** LISTEN on `channel` from a connection of its own, reconnecting with backoff when it drops. */
export async function postgresChangeFeed(url: string, channel: string): Promise<ChangeFeed> {
  // Only ever increases, so no version repeats across an outage.
  let version = 0;
  let listening = false;
  let closed = false;
  let backoffMs = 250;
  let client: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;

  const reconnectLater = (): void => {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      connect().catch(reconnectLater);
    }, backoffMs);
    retry.unref();
    backoffMs = Math.min(backoffMs * 2, 30_000);
  };

  const connect = async (): Promise<void> => {
    const connection = new (loadPg().Client)({ connectionString: url });
    const lost = () => {
      if (client !== connection) return; // replaced or closed already
      client = undefined;
      listening = false;
      connection.end().catch(() => undefined);
      reconnectLater();
    };
    connection.on('notification', () => version++);
    connection.on('error', lost);
    connection.on('end', lost);
    client = connection;
    try {
      await connection.connect();
      await connection.query(`LISTEN ${connection.escapeIdentifier(channel)}`);
    } catch (err) {
      if (client === connection) client = undefined;
      connection.end().catch(() => undefined);
      throw err;
    }
    // Whatever happened while nobody listened counts as changed.
    version++;
    listening = true;
    backoffMs = 250;
  };

  await connect();
  return {
    version: () => (listening ? version : ++version),
    async announce(trx) {
      await trx.raw('SELECT pg_notify(?, ?)', [channel, '']);
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      const connection = client;
      client = undefined;
      listening = false;
      await connection?.end().catch(() => undefined);
    },
  };
}
