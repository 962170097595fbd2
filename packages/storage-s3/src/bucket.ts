/**
 * The one door to S3: every SDK call of the store goes through `send()`, which maps its failures
 * to the core's store errors (errors.ts) once. Retries are the SDK's (standard mode, jittered
 * backoff, `maxAttempts`), so a failure seen here has already been retried where that is safe.
 */
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { NotFoundError, StoreError } from '@berthjs/core';
import { toStoreError } from './errors.js';
import type { PartRecord } from './multipart.js';
import { quiet } from './streams.js';

const OCTETS = 'application/octet-stream';
/** Keys per DeleteObjects request: S3's maximum. */
const DELETE_BATCH = 1000;

export interface Head {
  metadata: Record<string, string> | undefined;
  size: number | undefined;
}

export class Bucket {
  constructor(
    readonly client: S3Client,
    readonly name: string,
    /** The store's name, for errors. */
    private readonly store: string,
    /** Hash part and object bodies for SigV4 (`S3BlobStoreOptions.signPayload`). */
    private readonly signPayload = false,
  ) {}

  /** Run one SDK call, translating its failure into the core's store errors. */
  private async send<T>(operation: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw toStoreError(this.store, operation, error);
    }
  }

  private fail(message: string): StoreError {
    return new StoreError(message, this.store);
  }

  /** HeadBucket: the readiness probe. */
  async probe(): Promise<void> {
    await this.send('HeadBucket', () => this.client.send(new HeadBucketCommand({ Bucket: this.name })));
  }

  // ---- objects ---------------------------------------------------------------------------

  /** HEAD an object; undefined when it does not exist. */
  async head(key: string): Promise<Head | undefined> {
    try {
      const out = await this.send('HeadObject', () => this.client.send(new HeadObjectCommand({ Bucket: this.name, Key: key })));
      return { metadata: out.Metadata, size: out.ContentLength };
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
  }

  /** The object's bytes (an HTTP `Range` header value selects some of them). */
  async get(key: string, range?: string): Promise<Readable> {
    const out = await this.send('GetObject', () => this.client.send(new GetObjectCommand({ Bucket: this.name, Key: key, Range: range })));
    if (!(out.Body instanceof Readable)) throw this.fail('GetObject returned no Node stream');
    return quiet(out.Body);
  }

  /** Store a small object from memory; `ifNoneMatch` makes it a create that fails if the key exists. */
  async put(key: string, body: Buffer, options: { metadata?: Record<string, string>; ifNoneMatch?: boolean } = {}): Promise<void> {
    const command = new PutObjectCommand({
      Bucket: this.name,
      Key: key,
      Body: body,
      ContentLength: body.length,
      ContentType: OCTETS,
      Metadata: options.metadata,
      IfNoneMatch: options.ifNoneMatch ? '*' : undefined,
    });
    await this.send('PutObject', () => this.client.send(this.unsigned(command)));
  }

  /**
   * Store `size` bytes streamed from `body` (no SDK retries: a stream is read once). A body that
   * fails or closes early stops the request, and its own error is the one thrown.
   */
  async putStream(key: string, body: Readable, size: number): Promise<void> {
    const command = this.unsigned(
      new PutObjectCommand({ Bucket: this.name, Key: key, Body: body, ContentLength: size, ContentType: OCTETS }),
    );
    await this.sendStream('PutObject', body, (abortSignal) => this.client.send(command, { abortSignal }));
  }

  /** Run a call whose request body streams from `body`: a body that fails or closes early stops it. */
  private async sendStream<T>(operation: string, body: Readable, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    let failure: unknown;
    const stop = (error?: unknown) => {
      failure ??= error ?? new Error('the body closed before its end');
      controller.abort();
    };
    const closed = () => body.readableEnded || stop();
    body.once('error', stop);
    body.once('close', closed);
    try {
      return await this.send(operation, () => call(controller.signal));
    } catch (error) {
      throw failure ?? error;
    } finally {
      body.off('error', stop);
      body.off('close', closed);
    }
  }

  /** Server-side copy of a whole object (its metadata replaced by none). */
  async copy(key: string, sourceKey: string): Promise<void> {
    await this.send('CopyObject', () =>
      this.client.send(
        new CopyObjectCommand({
          Bucket: this.name,
          Key: key,
          CopySource: this.copySource(sourceKey),
          MetadataDirective: 'REPLACE',
          ContentType: OCTETS,
        }),
      ),
    );
  }

  async delete(key: string): Promise<void> {
    await this.send('DeleteObject', () => this.client.send(new DeleteObjectCommand({ Bucket: this.name, Key: key })));
  }

  /** Delete, where an object already gone is fine. */
  async deleteQuietly(key: string): Promise<void> {
    await this.delete(key).catch((error) => {
      if (!(error instanceof NotFoundError)) throw error;
    });
  }

  /**
   * Delete many objects, 1,000 per DeleteObjects request (S3's limit); absent keys are fine.
   * A key S3 reports it could not delete fails the call, after the rest of its batch went.
   */
  async deleteMany(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const out = await this.send('DeleteObjects', () =>
        this.client.send(new DeleteObjectsCommand({ Bucket: this.name, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } })),
      );
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) throw this.fail(`DeleteObjects: ${failed.length} keys not deleted, first ${failed[0].Key}: ${failed[0].Code}`);
    }
  }

  /** A presigned GET of the object (with `range`, signed as a header the client must send). */
  async presignGet(key: string, expiresInSeconds: number, range?: string): Promise<string> {
    const command = new GetObjectCommand({ Bucket: this.name, Key: key, Range: range });
    return this.send('presign GetObject', () => getSignedUrl(this.client, command, { expiresIn: expiresInSeconds }));
  }

  /** Every object under `prefix`, page by page. */
  async *list(prefix: string): AsyncGenerator<{ key: string; size: number; modified: number }> {
    let token: string | undefined;
    do {
      const page = await this.send('ListObjectsV2', () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.name, Prefix: prefix, ContinuationToken: token })),
      );
      for (const o of page.Contents ?? []) if (o.Key) yield { key: o.Key, size: o.Size ?? 0, modified: o.LastModified?.getTime() ?? 0 };
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  // ---- multipart -------------------------------------------------------------------------

  async createMultipart(key: string): Promise<string> {
    const out = await this.send('CreateMultipartUpload', () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.name, Key: key, ContentType: OCTETS })),
    );
    if (!out.UploadId) throw this.fail('CreateMultipartUpload returned no UploadId');
    return out.UploadId;
  }

  /** Upload one part from memory; resolves with its ETag. */
  async uploadPart(key: string, uploadId: string, partNumber: number, data: Buffer): Promise<string> {
    const command = new UploadPartCommand({
      Bucket: this.name,
      Key: key,
      UploadId: uploadId,
      PartNumber: partNumber,
      Body: data,
      ContentLength: data.length,
    });
    const out = await this.send('UploadPart', () => this.client.send(this.unsigned(command)));
    if (!out.ETag) throw this.fail('UploadPart returned no ETag');
    return out.ETag;
  }

  /** Make a whole object a part, server-side; resolves with the part's ETag, quoted. */
  async copyPart(key: string, uploadId: string, partNumber: number, sourceKey: string): Promise<string> {
    const out = await this.send('UploadPartCopy', () =>
      this.client.send(
        new UploadPartCopyCommand({
          Bucket: this.name,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          CopySource: this.copySource(sourceKey),
        }),
      ),
    );
    const etag = out.CopyPartResult?.ETag;
    if (!etag) throw this.fail('UploadPartCopy returned no ETag');
    // Ceph returns copy-part ETags unquoted; Complete wants them as UploadPart returns them.
    return etag.startsWith('"') ? etag : `"${etag}"`;
  }

  async completeMultipart(key: string, uploadId: string, parts: PartRecord[]): Promise<void> {
    await this.send('CompleteMultipartUpload', () =>
      this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.name,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag })) },
        }),
      ),
    );
  }

  /** Abort a multipart upload: true if it was open, false if already gone (aborted or completed). */
  async abortMultipart(key: string, uploadId: string): Promise<boolean> {
    try {
      await this.send('AbortMultipartUpload', () =>
        this.client.send(new AbortMultipartUploadCommand({ Bucket: this.name, Key: key, UploadId: uploadId })),
      );
      return true;
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      return false;
    }
  }

  /** Throws NotFoundError unless the multipart upload is still open. */
  async assertMultipartOpen(key: string, uploadId: string): Promise<void> {
    await this.send('ListParts', () =>
      this.client.send(new ListPartsCommand({ Bucket: this.name, Key: key, UploadId: uploadId, MaxParts: 1 })),
    );
  }

  /** Every part of an open multipart upload, page by page. */
  async *listParts(key: string, uploadId: string): AsyncGenerator<{ partNumber: number; modified: number }> {
    let marker: string | undefined;
    for (;;) {
      const page = await this.send('ListParts', () =>
        this.client.send(new ListPartsCommand({ Bucket: this.name, Key: key, UploadId: uploadId, PartNumberMarker: marker })),
      );
      for (const p of page.Parts ?? []) yield { partNumber: p.PartNumber ?? 0, modified: p.LastModified?.getTime() ?? 0 };
      if (!page.IsTruncated) return;
      marker = page.NextPartNumberMarker;
    }
  }

  /** Every open multipart upload under `prefix`, page by page. */
  async *listMultipart(prefix: string): AsyncGenerator<{ key: string; uploadId: string; initiated: number }> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.send('ListMultipartUploads', () =>
        this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.name, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        ),
      );
      for (const u of page.Uploads ?? [])
        if (u.Key && u.UploadId) yield { key: u.Key, uploadId: u.UploadId, initiated: u.Initiated?.getTime() ?? 0 };
      if (!page.IsTruncated) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /**
   * Sign the request but not its body (`x-amz-content-sha256: UNSIGNED-PAYLOAD`), unless the
   * options ask for signed payloads: the SDK would otherwise hash every byte of a Buffer body for
   * the signature, and the gateway hash it again to check it.
   */
  private unsigned<C extends UploadPartCommand | PutObjectCommand>(command: C): C {
    if (this.signPayload) return command;
    (command.middlewareStack as UploadPartCommand['middlewareStack']).add(
      (next) => async (args) => {
        const request = args.request as { headers?: Record<string, string> };
        if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'berthUnsignedPayload' },
    );
    return command;
  }

  /** `x-amz-copy-source`: bucket/key, URL-encoded per segment. */
  private copySource(key: string): string {
    return `${encodeURIComponent(this.name)}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }
}
