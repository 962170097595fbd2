// `@berthjs/storage-s3/testing`: how Berth's S3 tests find an endpoint, and bucket helpers, shared
// by this package's own tests and the cross-package suites in test/ (see the README, "Tests").
// Not part of the store: nothing in src/ imports it.
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { POINTER_DATA_KEY_META } from './keys.js';

/** An S3 endpoint with credentials, from S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION. */
export interface S3TestEnv {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

/** The S3 the tests use, from the environment; undefined when S3_ENDPOINT is unset. */
export function s3TestEnv(): S3TestEnv | undefined {
  const endpoint = process.env.S3_ENDPOINT;
  if (!endpoint) return undefined;
  return {
    endpoint,
    accessKeyId: process.env.S3_ACCESS_KEY ?? '',
    secretAccessKey: process.env.S3_SECRET_KEY ?? '',
    region: process.env.S3_REGION ?? 'us-east-1',
  };
}

/**
 * The S3 the tests use, or undefined after registering a skipped test (locally) or a failing one
 * (when `CI` is set): a missing S3 must never turn into a silent green run. Call it at the top of
 * a test file.
 */
export function requireS3(): S3TestEnv | undefined {
  const env = s3TestEnv();
  if (env) return env;
  const hint = 'S3_ENDPOINT is not set; start a local S3 with: set -a; eval "$(../shared/s3/start-rgw.sh)"; set +a';
  if (process.env.CI) {
    test('S3 endpoint configured', () => {
      throw new Error(`${hint}. CI requires the S3 tests to run.`);
    });
  } else test('S3 tests', { skip: hint }, () => {});
  return undefined;
}

/** A client for setting up and inspecting buckets (path style, checksums only when required). */
export function s3Client(env: S3TestEnv): S3Client {
  return new S3Client({
    endpoint: env.endpoint,
    region: env.region,
    forcePathStyle: true,
    credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A bucket of its own for one test run: `berth-<label>-<time>-<random>`. */
export async function createBucket(client: S3Client, label: string): Promise<string> {
  const bucket = `berth-${label}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** Abort every multipart upload and delete every object under `prefix`. */
export async function emptyBucket(client: S3Client, bucket: string, prefix = ''): Promise<void> {
  for (const u of await listUploads(client, bucket, prefix)) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.key, UploadId: u.uploadId }));
  }
  for (const key of await listKeys(client, bucket, prefix)) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
}

/** Empty the bucket, then remove it. */
export async function deleteBucket(client: S3Client, bucket: string): Promise<void> {
  await emptyBucket(client, bucket);
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
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

/** Multipart uploads in progress under `prefix`, every page of them. */
export async function listUploads(client: S3Client, bucket: string, prefix = ''): Promise<{ key: string; uploadId: string }[]> {
  const uploads: { key: string; uploadId: string }[] = [];
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  for (;;) {
    const page = await client.send(
      new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
    );
    for (const u of page.Uploads ?? []) uploads.push({ key: u.Key!, uploadId: u.UploadId! });
    if (!page.IsTruncated) return uploads;
    keyMarker = page.NextKeyMarker;
    uploadIdMarker = page.NextUploadIdMarker;
  }
}

/** Sizes of the parts uploaded so far to one multipart upload. */
export async function listPartSizes(client: S3Client, bucket: string, key: string, uploadId: string): Promise<number[]> {
  const page = await client.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
  return (page.Parts ?? []).map((p) => p.Size ?? 0);
}

/**
 * Run `hook` before every blob pointer write (a PutObject naming a data object) the client sends:
 * a hook that rejects fails the write as a gateway would (the commit's data object is then
 * complete but named by nothing, as after a crash at that point), one that waits holds it.
 * Returns a function that removes the hook.
 */
export function interceptPointerWrites(client: S3Client, hook: (key: string) => Promise<void>): () => void {
  const name = `berthPointerWrites${randomBytes(4).toString('hex')}`;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Key?: string; Metadata?: Record<string, string> };
      if (context.commandName === 'PutObjectCommand' && input.Metadata?.[POINTER_DATA_KEY_META]) await hook(input.Key ?? '');
      return next(args);
    },
    { step: 'initialize', name },
  );
  return () => {
    client.middlewareStack.remove(name);
  };
}
