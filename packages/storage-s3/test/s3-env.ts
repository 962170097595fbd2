// Shared setup for the S3 tests: endpoint from the environment, a unique bucket per test file,
// emptied and removed at the end. See the README's "Tests" section.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { S3BlobStore, type S3BlobStoreOptions } from '../src/index.js';

export const MiB = 1024 * 1024;

export interface S3Env {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

/**
 * The endpoint the tests use, or undefined after registering a skipped test (locally) or a failing
 * one (when `CI` is set: a missing S3 must never turn into a silent green run).
 */
export function s3Env(): S3Env | undefined {
  const endpoint = process.env.S3_ENDPOINT;
  if (!endpoint) {
    const hint = 'S3_ENDPOINT is not set; start a local S3 with eval "$(../shared/s3/start-rgw.sh)" (and export its variables)';
    if (process.env.CI) test('S3 endpoint configured', () => assertFail(`${hint}; CI requires the S3 tests to run`));
    else test('S3 tests', { skip: hint }, () => {});
    return undefined;
  }
  return {
    endpoint,
    accessKeyId: process.env.S3_ACCESS_KEY ?? '',
    secretAccessKey: process.env.S3_SECRET_KEY ?? '',
    region: process.env.S3_REGION ?? 'us-east-1',
  };
}

function assertFail(message: string): never {
  throw new Error(message);
}

export function rawClient(env: S3Env): S3Client {
  return new S3Client({
    endpoint: env.endpoint,
    region: env.region,
    forcePathStyle: true,
    credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export async function createBucket(client: S3Client, label: string): Promise<string> {
  const bucket = `berth-${label}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** Abort every multipart upload and delete every object (under `prefix`), then the bucket if asked. */
export async function emptyBucket(client: S3Client, bucket: string, prefix = '', removeBucket = true): Promise<void> {
  for (const key of await listKeys(client, bucket, prefix))
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  for (const u of await listUploads(client, bucket, prefix))
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }));
  if (removeBucket) await client.send(new DeleteBucketCommand({ Bucket: bucket }));
}

export async function listKeys(client: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) keys.push(o.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

export async function listUploads(client: S3Client, bucket: string, prefix = '') {
  const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
  return (page.Uploads ?? []).map((u) => ({ Key: u.Key!, UploadId: u.UploadId! }));
}

export function storeFor(env: S3Env, bucket: string, options: Partial<S3BlobStoreOptions> = {}): S3BlobStore {
  return new S3BlobStore({
    bucket,
    endpoint: env.endpoint,
    region: env.region,
    forcePathStyle: true,
    credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
    partSize: 5 * MiB,
    ...options,
  });
}

export const newId = (): string => randomUUID();

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** SHA-256 and length of a stream, consumed chunk by chunk (never buffered whole). */
export async function hashStream(stream: Readable): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/**
 * A generated stream of `size` random bytes in `chunk`-sized pieces; `digest()` is valid once it
 * has ended. Optionally errors after `failAfter` bytes, like a client that drops mid-request.
 */
export function generated(size: number, options: { chunk?: number; failAfter?: number } = {}) {
  const hash = createHash('sha256');
  const chunk = options.chunk ?? 256 * 1024;
  let sent = 0;
  const stream = new Readable({
    read() {
      if (options.failAfter !== undefined && sent >= options.failAfter) {
        this.destroy(new Error('client went away'));
        return;
      }
      if (sent >= size) {
        this.push(null);
        return;
      }
      const piece = randomBytes(Math.min(chunk, size - sent));
      sent += piece.length;
      hash.update(piece);
      this.push(piece);
    },
  });
  return { stream, digest: () => `sha256:${hash.digest('hex')}` };
}
