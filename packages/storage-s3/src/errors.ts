import { NotFoundError, StoreError, UnavailableError } from '@berthjs/core';

interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const NOT_FOUND = new Set(['NoSuchKey', 'NotFound', 'NoSuchUpload']);

/** The S3 error code (or Node error code) of a failure, for matching and messages. */
export function errorCode(error: unknown): string | undefined {
  const e = error as SdkErrorShape | undefined;
  return e?.name && e.name !== 'Error' ? e.name : e?.code;
}

export function httpStatus(error: unknown): number | undefined {
  return (error as SdkErrorShape | undefined)?.$metadata?.httpStatusCode;
}

/**
 * A conditional create (`If-None-Match: *`) that lost, mapped or not: 412, the key exists; 409, a
 * concurrent conditional write to it is in flight (AWS).
 */
export function lostConditionalWrite(error: unknown): boolean {
  const status = httpStatus(error instanceof StoreError ? error.cause : error);
  return status === 412 || status === 409;
}

/** A missing key, upload or part. Ceph answers NoSuchKey for ListParts after Abort. */
function isNotFound(error: unknown): boolean {
  if (error instanceof NotFoundError) return true;
  const code = errorCode(error);
  // NoSuchBucket is a 404 too, but it is a misconfiguration, not a missing blob.
  if (code === 'NoSuchBucket') return false;
  return (code !== undefined && NOT_FOUND.has(code)) || httpStatus(error) === 404;
}

/**
 * Translate an SDK failure into the core's store errors. By the time an error reaches us the SDK
 * has already retried what it considers retryable (5xx, throttling, timeouts, resets).
 * - 404-ish → NotFoundError;
 * - no HTTP status (connection refused/reset, DNS, timeouts, after the SDK's retries), 5xx, 429, 403 (the backend refused
 *   us: credentials, policy) and S3's 400 RequestTimeout → UnavailableError, which the core
 *   answers with 503;
 * - anything else (a 4xx that means a bug or a race, such as InvalidPart) → StoreError (500).
 */
export function toStoreError(store: string, operation: string, error: unknown): Error {
  if (error instanceof StoreError) return error;
  const code = errorCode(error) ?? 'Error';
  const status = httpStatus(error);
  const message = `${operation} failed: ${code}${status ? ` (HTTP ${status})` : ''}: ${(error as SdkErrorShape)?.message ?? String(error)}`;
  let mapped: StoreError;
  if (isNotFound(error)) mapped = new NotFoundError(message, store);
  else if (
    transportFailure(error) ||
    (status !== undefined && status >= 500) ||
    status === 429 ||
    status === 403 ||
    code === 'RequestTimeout'
  )
    mapped = new UnavailableError(message, store);
  else mapped = new StoreError(message, store);
  Object.defineProperty(mapped, 'cause', { value: error, enumerable: false, writable: true, configurable: true });
  return mapped;
}

const TRANSPORT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/** The request never got an HTTP answer: the SDK stamps `$metadata` on what went through its stack. */
function transportFailure(error: unknown): boolean {
  const e = error as SdkErrorShape | undefined;
  if (httpStatus(error) !== undefined) return false;
  const code = errorCode(error);
  return (
    e?.$metadata !== undefined ||
    code === 'TimeoutError' ||
    code === 'AbortError' ||
    (code !== undefined && TRANSPORT_CODES.has(code)) ||
    (e?.code !== undefined && TRANSPORT_CODES.has(e.code))
  );
}
