/**
 * S3BlobStore: a BlobStore on any S3-compatible bucket. The object layout and the reasons for it
 * are in the package README; this class only wires the parts together:
 *   keys.ts            the layout: every key, the pointer format, validation of digests and ids
 *   bucket.ts          every SDK call, through one `send()` that maps errors (errors.ts)
 *   reads.ts           stat, read, presigned URLs, the digest → location cache
 *   upload-session.ts  create / append / commit / abort on S3 multipart uploads (multipart.ts
 *                      cuts parts, upload-state.ts validates the persisted state)
 *   sweeper.ts         leftovers of sessions no metadata knows: multipart uploads, staging,
 *                      data objects no pointer names
 *   collection.ts      garbage collection: batched deletes, the listing of stored blobs
 */
import { S3Client } from '@aws-sdk/client-s3';
import type {
  AppendResult,
  BlobStore,
  BlobStoreCapabilities,
  ByteRange,
  StoredBlob,
  SweepOptions,
  UploadState,
  VerifyContent,
} from '@berthjs/core';
import type { Readable } from 'node:stream';
import { checkAccess } from './access-check.js';
import { Bucket } from './bucket.js';
import { KeyLayout } from './keys.js';
import { MAX_PART_SIZE, MIN_PART_SIZE, MiB } from './multipart.js';
import { type S3BlobStoreOptions, clientConfig } from './options.js';
import { BlobReader } from './reads.js';
import { deleteBlobs, listBlobs } from './collection.js';
import { sweepUploads } from './sweeper.js';
import { MultipartSessions } from './upload-session.js';

export class S3BlobStore implements BlobStore {
  readonly name = 's3';
  readonly capabilities: BlobStoreCapabilities;
  /** The underlying client, for tooling and tests. */
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;

  private readonly ownsClient: boolean;
  private readonly redirect: boolean;
  private readonly s3: Bucket;
  private readonly layout: KeyLayout;
  private readonly reader: BlobReader;
  private readonly sessions: MultipartSessions;

  constructor(options: S3BlobStoreOptions) {
    if (!options.bucket) throw new TypeError('S3BlobStore: bucket is required');
    const partSize = options.partSize ?? 8 * MiB;
    if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE)
      throw new RangeError(`S3BlobStore: partSize must be an integer between 5 MiB and 5 GiB, got ${partSize}`);
    this.redirect = options.redirect ?? false;
    this.capabilities = { minChunkLength: partSize, redirect: this.redirect };
    this.ownsClient = !options.client;
    this.client = options.client ?? new S3Client(clientConfig(options));
    this.bucket = options.bucket;
    this.layout = new KeyLayout(options.prefix, this.name);
    this.prefix = this.layout.prefix;
    const signPayload = options.signPayload ?? false;
    const singlePutMax = options.singlePutMax ?? 512 * MiB;
    if (!Number.isSafeInteger(singlePutMax) || singlePutMax < 0 || singlePutMax > MAX_PART_SIZE)
      throw new RangeError(`S3BlobStore: singlePutMax must be an integer between 0 and 5 GiB, got ${singlePutMax}`);
    this.s3 = new Bucket(this.client, this.bucket, this.name, signPayload);
    this.reader = new BlobReader(this.s3, this.layout, this.name);
    this.sessions = new MultipartSessions(this.s3, this.layout, this.reader, this.name, {
      partSize,
      grow: !options.equalPartSizes,
      partConcurrency: Math.max(1, Math.floor(options.partConcurrency ?? 2)),
      conditionalWrites: options.conditionalWrites ?? true,
      singlePutMax,
    });
  }

  stat(digest: string): Promise<{ size: number } | undefined> {
    return this.reader.stat(digest);
  }

  read(digest: string, range?: ByteRange): Promise<Readable> {
    return this.reader.read(digest, range);
  }

  async redirectUrl(digest: string, options: { expiresInSeconds: number; range?: ByteRange }): Promise<string | undefined> {
    return this.redirect ? this.reader.redirectUrl(digest, options) : undefined;
  }

  delete(blobs: ReadonlyArray<{ digest: string; size?: number }>): Promise<void> {
    return deleteBlobs(this.s3, this.layout, this.reader, blobs);
  }

  listBlobs(): AsyncIterable<StoredBlob> {
    return listBlobs(this.s3, this.layout);
  }

  createUpload(id: string): Promise<UploadState> {
    return this.sessions.create(id);
  }

  appendUpload(id: string, state: UploadState, offset: number, body: Readable, length?: number, last?: boolean): Promise<AppendResult> {
    return this.sessions.append(id, state, offset, body, length, last);
  }

  commitUpload(id: string, state: UploadState, size: number, digest: string, verify?: VerifyContent): Promise<void> {
    return this.sessions.commit(id, state, size, digest, verify);
  }

  abortUpload(id: string, state: UploadState): Promise<void> {
    return this.sessions.abort(id, state);
  }

  sweepUploads(options: SweepOptions): Promise<number> {
    return sweepUploads(this.s3, this.layout, this.reader, options);
  }

  /** One HeadBucket: the endpoint answers, the bucket exists and the credentials are accepted. */
  probe(): Promise<void> {
    return this.s3.probe();
  }

  /**
   * A start-up check for operators, stricter than `probe`: credentials resolve, the bucket
   * exists, and a tiny object can be written and deleted under the prefix. Rejects with an
   * `S3AccessError` naming the problem; `retryable` says whether the gateway merely did not
   * answer (unreachable, 5xx), as when replicas start before it.
   */
  checkAccess(): Promise<void> {
    return checkAccess(this.s3, this.prefix);
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.client.destroy();
  }
}
