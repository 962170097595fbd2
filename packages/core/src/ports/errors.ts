/**
 * Typed errors that stores throw at their edge; the core maps them to OCI errors.
 * A store translates its backend's failures (ENOENT, NoSuchKey, a unique violation...)
 * into one of these, naming itself so logs show which driver failed.
 */
export class StoreError extends Error {
  constructor(
    message: string,
    readonly store: string,
  ) {
    super(`${store}: ${message}`);
    this.name = new.target.name;
  }
}

/** The blob, upload or record does not exist. */
export class NotFoundError extends StoreError {}

/** A compare-and-set lost: another request changed the record first. */
export class ConflictError extends StoreError {}

/** The store does not support this operation; the core answers 400 UNSUPPORTED. */
export class UnsupportedError extends StoreError {}

/** The object is larger than the store can hold (e.g. S3's 10,000 parts); the core answers 413. */
export class TooLargeError extends StoreError {}

/** The backend cannot be reached or refused the request; the core answers 503. */
export class UnavailableError extends StoreError {}

/** The backend is out of space or over its quota (ENOSPC, EDQUOT, SQLITE_FULL); the core answers 503 "storage is full". */
export class StorageFullError extends UnavailableError {}

/** Stored bytes do not hash to the expected digest (or the client sent the wrong length). */
export class IntegrityError extends StoreError {}
