// How the top-level S3 tests find their endpoint (see the README's Tests section), plus bucket
// helpers. Locally a missing S3_ENDPOINT skips them with a message; in CI it fails the run.
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

export interface S3Env {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

/** The S3 the tests use, from the environment; undefined when S3_ENDPOINT is unset. */
export function s3EnvOrUndefined(): S3Env | undefined {
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
 * (CI): a missing S3 must never turn into a silent green run. Call at the top of a test file.
 */
export function requireS3(): S3Env | undefined {
  const env = s3EnvOrUndefined();
  if (env) return env;
  const hint = 'S3_ENDPOINT is not set; start a local S3 with: set -a; eval "$(../shared/s3/start-rgw.sh)"; set +a';
  if (process.env.CI) {
    test('S3 endpoint configured', () => {
      throw new Error(`${hint}. CI requires the S3 tests to run.`);
    });
  } else test('S3 tests', { skip: hint }, () => {});
  return undefined;
}

export function s3Client(env: S3Env): S3Client {
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

/** Abort every multipart upload, delete every object, then the bucket. */
export async function deleteBucket(client: S3Client, bucket: string): Promise<void> {
  for (const u of await listUploads(client, bucket))
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.key, UploadId: u.uploadId }));
  for (const key of await listKeys(client, bucket)) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
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
