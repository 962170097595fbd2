// Translates driver failures (pg, better-sqlite3, knex's pool) into the core's typed store errors,
// so the core answers 503 for an unreachable database and lost races stay recognizable.
import { ConflictError, StorageFullError, StoreError, UnavailableError } from '@berthjs/core';

interface DriverError {
  code?: unknown;
  name?: unknown;
  errors?: unknown;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
]);
// Postgres SQLSTATEs meaning "not now": connection exceptions (class 08), too many connections,
// admin/crash shutdown, cannot connect now, serialization/deadlock failures.
const PG_UNAVAILABLE = /^(08...|53300|57P0[1-3]|40001|40P01)$/;
const SQLITE_UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|CANTOPEN|IOERR|READONLY|PROTOCOL)/;
// Out of space: Postgres disk_full (53100), SQLite's database or disk full; and the errno codes
// either surfaces from the filesystem.
const FULL = /^(53100|SQLITE_FULL|SQLITE_IOERR_WRITE_FULL|ENOSPC|EDQUOT)$/;

function codeOf(err: unknown): string | undefined {
  const code = (err as DriverError | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** SQLite lock contention that outlived busy_timeout: the statement did not run, retrying is safe. */
export function isSqliteBusy(err: unknown): boolean {
  return /^SQLITE_(BUSY|LOCKED)/.test(codeOf(err) ?? '');
}

export function isUniqueViolation(err: unknown): boolean {
  const code = codeOf(err) ?? '';
  return code === '23505' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
}

/** A row this write points at vanished under it (e.g. a tag put racing its manifest's delete). */
function isForeignKeyViolation(err: unknown): boolean {
  const code = codeOf(err) ?? '';
  return code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY';
}

/**
 * A transaction that lost a race with another one and was rolled back whole: under READ COMMITTED
 * a concurrent delete can land between its statements (a tag insert whose manifest row was just
 * deleted: a foreign-key violation; an insert racing an insert: a unique violation), and crossing
 * row locks deadlock (40P01) or fail serialization (40001). Running it again is safe and sees
 * the other transaction's outcome. Takes the driver error or a StoreError made from one.
 */
export function isLostRace(err: unknown): boolean {
  const driver = err instanceof StoreError ? err.cause : err;
  const code = codeOf(driver) ?? '';
  return isUniqueViolation(driver) || isForeignKeyViolation(driver) || code === '40P01' || code === '40001';
}

function isStorageFull(err: unknown): boolean {
  return FULL.test(codeOf(err) ?? '');
}

export function isUnavailable(err: unknown): boolean {
  const code = codeOf(err);
  if (code !== undefined && (NETWORK_CODES.has(code) || PG_UNAVAILABLE.test(code) || SQLITE_UNAVAILABLE.test(code))) return true;
  // Node's happy-eyeballs connect reports an AggregateError of per-address failures.
  const nested = (err as DriverError | undefined)?.errors;
  if (Array.isArray(nested) && nested.some(isUnavailable)) return true;
  const name = (err as DriverError | undefined)?.name;
  const message = err instanceof Error ? err.message : '';
  // knex's pool gave up waiting, or pg lost its socket mid-query.
  return name === 'KnexTimeoutError' || /Connection terminated|Client has encountered a connection error/.test(message);
}

/** The typed StoreError for a backend failure, or the failure itself when it has no better name. */
export function toStoreError(err: unknown, store: string): unknown {
  if (err instanceof StoreError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  let mapped: StoreError | undefined;
  if (isUniqueViolation(err) || isForeignKeyViolation(err)) mapped = new ConflictError(reason, store);
  else if (isStorageFull(err)) mapped = new StorageFullError(reason, store);
  else if (isUnavailable(err)) mapped = new UnavailableError(reason, store);
  if (mapped === undefined) return err;
  mapped.cause = err;
  return mapped;
}
