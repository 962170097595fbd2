/**
 * The start-up check `berth serve` runs before it serves from a bucket: stricter than the
 * readiness probe (one HeadBucket), because a bucket that answers but refuses writes would
 * otherwise only show at the first push.
 */
import { randomBytes } from 'node:crypto';
import type { Bucket } from './bucket.js';
import { errorCode, httpStatus } from './errors.js';

/** Why `checkAccess` failed; `retryable` when the gateway did not answer (yet). */
export class S3AccessError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    cause: unknown,
  ) {
    super(message, { cause });
    this.name = 'S3AccessError';
  }
}

const DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden']);

/** Credentials resolve, the bucket exists, and a tiny object can be written and deleted under `prefix`. */
export async function checkAccess(bucket: Bucket, prefix: string): Promise<void> {
  const fail = (what: string, mapped: unknown): never => {
    // Bucket's store errors keep the SDK's failure as their cause.
    const error = (mapped as { cause?: unknown })?.cause ?? mapped;
    const code = errorCode(error) ?? 'Error';
    const status = httpStatus(error);
    const reason =
      code === 'CredentialsProviderError'
        ? 'no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)'
        : code === 'NoSuchBucket' || (what === 'HeadBucket' && status === 404)
          ? 'the bucket does not exist'
          : status === 403 || DENIED.has(code)
            ? `access denied (${code}${status ? `, HTTP ${status}` : ''}): check the credentials and the bucket policy`
            : `${code}${status ? ` (HTTP ${status})` : ''}: ${(error as Error)?.message ?? String(error)}`;
    const retryable = code !== 'CredentialsProviderError' && (status === undefined || status >= 500 || status === 429);
    throw new S3AccessError(`bucket ${bucket.name}: ${what} failed: ${reason}`, retryable, error);
  };
  const key = `${prefix}berth-check-${randomBytes(8).toString('hex')}`;
  await bucket.client.config.credentials().catch((error: unknown) => fail('loading credentials', error));
  await bucket.probe().catch((error: unknown) => fail('HeadBucket', error));
  await bucket.put(key, Buffer.from('berth')).catch((error: unknown) => fail(`PutObject ${key}`, error));
  await bucket.delete(key).catch((error: unknown) => fail(`DeleteObject ${key}`, error));
}
