/**
 * S3BlobStore: a BlobStore on any S3-compatible bucket.
 *
 * Object layout in the bucket, under the configured prefix `P` (`""` or ending in `/`):
 *
 *   P blobs/<alg>/<hex>            The blob's address, one per digest (dedup). Either
 *                                  - the bytes themselves ("inline"): blobs that never filled a
 *                                    whole part (configs, small layers, the empty blob), copied
 *                                    server-side from their staged tail at commit; or
 *                                  - a 0-byte "pointer" whose user metadata names the data object
 *                                    (`x-amz-meta-berth-data-key`) and its size (`…-berth-size`).
 *   P data/<upload-id>/<random>    The bytes of a blob that went through multipart: the key of the
 *                                  multipart upload, fixed at CreateMultipartUpload (before the
 *                                  digest is known) and left in place after completion, so large
 *                                  blobs are never copied. The random suffix keeps a reused upload
 *                                  id from ever completing over a live blob.
 *   P uploads/<upload-id>/tail-<end>  Staged remainder of an open session: the bytes after its last
 *                                  full part, ending at offset <end>. Each append writes a new key
 *                                  and leaves the one the persisted state names untouched, so a
 *                                  failed append never destroys the session.
 *
 * Commit order keeps readers safe: data first (Complete), then verification, then the pointer (a
 * conditional create, so concurrent commits of one digest keep exactly one data object). Delete goes
 * the other way: pointer first, then data, so a crash leaves unreachable bytes, never a dangling
 * address. Open multipart uploads all live under `P data/`, which is what the sweeper lists.
 *
 * Copy vs pointer, measured on the local Ceph RGW (16.2, loopback, Node 20, 2 cores):
 *   CopyObject 256 MiB: 250–300 ms; 1 GiB: 570–730 ms (Ceph copies RADOS manifests, not bytes);
 *   UploadPartCopy (needed above 5 GiB), 64 MiB ranges in parallel: 256 MiB 2.2 s, 1 GiB 6.2 s;
 *   HEAD on a keep-alive connection: 4.6–8.9 ms.
 * AWS copies bytes on CopyObject too (seconds per GiB, and PUT would block for the whole copy),
 * while the pointer costs one HEAD on the first read of a digest per process and nothing after
 * (the digest → data-key mapping is immutable, so it is cached). Pointer wins; small blobs, whose
 * copy is cheap, are stored inline so that they need no second object.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, pipeline } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type HeadObjectCommandOutput,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import {
  ConflictError,
  IntegrityError,
  NotFoundError,
  StoreError,
  UnsupportedError,
  type AppendResult,
  type BlobStore,
  type BlobStoreCapabilities,
  type ByteRange,
  type UploadState,
  type VerifyContent,
} from '@berthjs/core';
import { httpStatus, toStoreError } from './errors.js';
import { MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, MiB, choosePartSize, partSizeFor, splitIntoParts, type PartRecord } from './multipart.js';

export interface S3BlobStoreOptions {
  /** Bucket holding blobs and upload staging; it must exist. */
  bucket: string;
  /** Key prefix for everything this store writes (e.g. `registry/`); a trailing `/` is added. Default: none. */
  prefix?: string;
  /** Endpoint URL for non-AWS providers (MinIO, Ceph RGW, R2…). Default: AWS, from `region`. */
  endpoint?: string;
  /** Signing region. Default: `AWS_REGION`, else `us-east-1` (what Ceph, MinIO expect; R2 wants `auto`). */
  region?: string;
  /** Path-style URLs (`endpoint/bucket/key`), needed by most self-hosted providers. Default: false. */
  forcePathStyle?: boolean;
  /** Static credentials or a provider. Default: the standard AWS chain (env, profile, SSO, IMDS…). */
  credentials?: S3ClientConfig['credentials'];
  /**
   * Size of every multipart part but the last, in bytes (≥ 5 MiB, ≤ 5 GiB). Default 8 MiB. Also
   * advertised as `OCI-Chunk-Min-Length`: chunks of at least this size go straight to S3.
   * Memory per active upload is about (partConcurrency + 1) × part size.
   */
  partSize?: number;
  /**
   * Keep every part the same size. Off (default), the part size doubles every 1,000 parts so that a
   * stream of unknown length can reach S3's 5 TiB limit within 10,000 parts. Turn it on for
   * providers that reject unequal parts (Cloudflare R2): blobs are then limited to
   * 10,000 × partSize (80 GB at 8 MiB) unless the first chunk's length is known, in which case the
   * part size is raised once, up front, to fit.
   */
  equalPartSizes?: boolean;
  /** Part uploads in flight while the next part fills. Default 1 (two parts in memory). */
  partConcurrency?: number;
  /** Offer presigned GET URLs (`redirectUrl`, `capabilities.redirect`) so clients download directly. Default false. */
  redirect?: boolean;
  /** Milliseconds to establish a connection. Default 5,000. */
  connectionTimeoutMs?: number;
  /**
   * Milliseconds from sending a request to its response headers, request body included (a whole
   * part upload). Default 120,000. Streamed response bodies are bounded by `socketTimeoutMs` instead.
   */
  requestTimeoutMs?: number;
  /** Milliseconds a socket may sit idle (no bytes either way) before the request fails. Default 30,000. */
  socketTimeoutMs?: number;
  /** Attempts per request, with the SDK's standard jittered backoff. Default 3. */
  maxAttempts?: number;
  /** Concurrent sockets to the endpoint (open blob reads hold one each). Default 64. */
  maxSockets?: number;
  /**
   * Create blob pointers with `If-None-Match: *`, so two commits of one digest racing each other
   * keep one data object. Supported by AWS, R2, MinIO and Ceph RGW; turn off for a provider that
   * rejects the header (the race then leaves an unreferenced object behind). Default true.
   */
  conditionalWrites?: boolean;
  /** Use this client instead of building one (the connection options above are then ignored). */
  client?: S3Client;
}

/** What `appendUpload` hands the core to persist; JSON only. */
export type S3UploadState = {
  v: 1;
  /** Multipart key: `P data/<id>/<random>`. */
  key: string;
  uploadId: string;
  /** Base part size of this session (see `partSizeFor`). */
  partSize: number;
  /** Whether part sizes grow every 1,000 parts. */
  grow: boolean;
  /** Full parts uploaded, in order, numbered from 1. */
  parts: PartRecord[];
  /** Staged bytes after the last part, if any. */
  tail?: { key: string; size: number };
  /** A tail superseded by this state; deleted by the next successful append. */
  garbage?: string;
};

export interface SweepResult {
  /** Multipart uploads aborted. */
  aborted: number;
  /** Staging objects deleted. */
  deleted: number;
}

interface Location {
  /** The key holding the bytes. */
  key: string;
  size: number;
}

const DATA_KEY_META = 'berth-data-key';
const SIZE_META = 'berth-size';
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^(sha256|sha512):([a-f0-9]+)$/;
const HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };
const CACHE_LIMIT = 10_000;

export class S3BlobStore implements BlobStore {
  readonly name = 's3';
  readonly capabilities: BlobStoreCapabilities;
  /** The underlying client, for tooling and tests. */
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;

  private readonly partSize: number;
  private readonly grow: boolean;
  private readonly concurrency: number;
  private readonly redirect: boolean;
  private readonly conditionalWrites: boolean;
  private readonly ownsClient: boolean;
  /** digest → where its bytes live: immutable while the blob exists, so safe to cache (LRU). */
  private readonly locations = new Map<string, Location>();

  constructor(options: S3BlobStoreOptions) {
    if (!options.bucket) throw new TypeError('S3BlobStore: bucket is required');
    const partSize = options.partSize ?? 8 * MiB;
    if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE)
      throw new RangeError(`S3BlobStore: partSize must be an integer between 5 MiB and 5 GiB, got ${partSize}`);
    this.bucket = options.bucket;
    this.prefix = normalizePrefix(options.prefix);
    this.partSize = partSize;
    this.grow = !options.equalPartSizes;
    this.concurrency = Math.max(1, Math.floor(options.partConcurrency ?? 1));
    this.redirect = options.redirect ?? false;
    this.conditionalWrites = options.conditionalWrites ?? true;
    this.capabilities = { minChunkLength: partSize, redirect: this.redirect };
    this.ownsClient = !options.client;
    this.client = options.client ?? new S3Client(clientConfig(options));
  }

  // ---- keys -------------------------------------------------------------------------------

  private blobKey(digest: string): string {
    const m = DIGEST.exec(digest);
    if (!m || m[2].length !== HEX_LENGTH[m[1]]) throw new StoreError(`invalid digest ${JSON.stringify(digest)}`, this.name);
    return `${this.prefix}blobs/${m[1]}/${m[2]}`;
  }

  private checkId(id: string): string {
    if (!ID.test(id)) throw new StoreError(`invalid upload id ${JSON.stringify(id)}`, this.name);
    return id;
  }

  private dataPrefix(id: string): string {
    return `${this.prefix}data/${this.checkId(id)}/`;
  }

  private stagingPrefix(id: string): string {
    return `${this.prefix}uploads/${this.checkId(id)}/`;
  }

  // ---- blobs ------------------------------------------------------------------------------

  async stat(digest: string): Promise<{ size: number } | undefined> {
    const key = this.blobKey(digest);
    const location = await this.resolve(digest, key);
    return location && { size: location.size };
  }

  async read(digest: string, range?: ByteRange): Promise<Readable> {
    const key = this.blobKey(digest);
    for (let attempt = 0; ; attempt++) {
      const cached = this.cacheGet(digest);
      const location = cached ?? (await this.resolve(digest, key));
      if (!location) throw new NotFoundError(`blob ${digest} not found`, this.name);
      try {
        const body = await this.getBody(location.key, httpRange(range, location.size, digest, this.name));
        // Hand out a plain stream: the SDK's IncomingMessage only aborts its request when destroyed
        // (`destroyed` flips once the socket closes); the PassThrough is destroyed at once and
        // takes the response down with it, and S3 errors still propagate to the reader.
        return pipeline(body, new PassThrough(), () => {});
      } catch (error) {
        // A cached location can outlive a delete (or a delete + re-push) by another process.
        if (!(cached && attempt === 0 && error instanceof NotFoundError)) throw error;
        this.locations.delete(digest);
      }
    }
  }

  async delete(digest: string): Promise<void> {
    const key = this.blobKey(digest);
    this.locations.delete(digest);
    const location = await this.resolve(digest, key);
    if (!location) return;
    this.locations.delete(digest);
    // Pointer first: a crash in between leaves unreachable bytes, never a dangling address.
    await this.send('DeleteObject', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
    if (location.key !== key)
      await this.send('DeleteObject', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: location.key })));
  }

  async redirectUrl(digest: string, options: { expiresInSeconds: number; range?: ByteRange }): Promise<string | undefined> {
    if (!this.redirect) return undefined;
    const key = this.blobKey(digest);
    const location = this.cacheGet(digest) ?? (await this.resolve(digest, key));
    if (!location) throw new NotFoundError(`blob ${digest} not found`, this.name);
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: location.key,
      // Signed as a header: the client must send this same Range, which it does when following
      // the redirect of its own ranged request.
      Range: options.range && httpRange(options.range, location.size, digest, this.name),
    });
    return this.send('presign GetObject', () => getSignedUrl(this.client, command, { expiresIn: options.expiresInSeconds }));
  }

  /** HEAD the digest's address: where its bytes are and how many, or undefined when absent. */
  private async resolve(digest: string, key: string): Promise<Location | undefined> {
    let head: HeadObjectCommandOutput;
    try {
      head = await this.send('HeadObject', () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })));
    } catch (error) {
      if (error instanceof NotFoundError) {
        this.locations.delete(digest);
        return undefined;
      }
      throw error;
    }
    const dataKey = head.Metadata?.[DATA_KEY_META];
    const location: Location = dataKey
      ? { key: dataKey, size: Number(head.Metadata?.[SIZE_META]) }
      : { key, size: head.ContentLength ?? 0 };
    if (dataKey && (!dataKey.startsWith(`${this.prefix}data/`) || !Number.isSafeInteger(location.size)))
      throw new StoreError(`blob ${digest} has a malformed pointer`, this.name);
    this.cacheSet(digest, location);
    return location;
  }

  private cacheGet(digest: string): Location | undefined {
    const hit = this.locations.get(digest);
    if (hit) {
      this.locations.delete(digest);
      this.locations.set(digest, hit);
    }
    return hit;
  }

  private cacheSet(digest: string, location: Location): void {
    this.locations.delete(digest);
    this.locations.set(digest, location);
    if (this.locations.size > CACHE_LIMIT) this.locations.delete(this.locations.keys().next().value as string);
  }

  // ---- uploads ----------------------------------------------------------------------------

  async createUpload(id: string): Promise<UploadState> {
    const key = `${this.dataPrefix(id)}${randomBytes(6).toString('hex')}`;
    const created = await this.send('CreateMultipartUpload', () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: 'application/octet-stream' })),
    );
    if (!created.UploadId) throw new StoreError('CreateMultipartUpload returned no UploadId', this.name);
    const state: S3UploadState = { v: 1, key, uploadId: created.UploadId, partSize: this.partSize, grow: this.grow, parts: [] };
    return state;
  }

  async appendUpload(id: string, state: UploadState, offset: number, body: Readable, length?: number): Promise<AppendResult> {
    const input = this.parseState(id, state);
    const held = heldBytes(input);
    if (offset !== held) throw new ConflictError(`upload ${id} holds ${held} bytes, not ${offset}`, this.name);
    // The first bytes of a session with a known length may pick a bigger part size to fit 10,000 parts.
    const partSize = input.parts.length === 0 && !input.tail ? choosePartSize(input.partSize, length) : input.partSize;

    let written = 0;
    const tail = input.tail;
    const source = async function* (this: S3BlobStore): AsyncGenerator<Buffer> {
      if (tail) {
        let staged = 0;
        for await (const chunk of await this.getBody(tail.key)) {
          staged += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (staged !== tail.size) throw new StoreError(`staged tail of upload ${id} has ${staged} bytes, not ${tail.size}`, this.name);
      }
      for await (const raw of body) {
        const chunk = typeof raw === 'string' ? Buffer.from(raw) : (raw as Buffer);
        written += chunk.length;
        yield chunk;
      }
    }.call(this);

    const { parts, remainder } = await splitIntoParts(source, {
      firstPartNumber: input.parts.length + 1,
      sizeOf: (n) => partSizeFor(n, partSize, input.grow),
      concurrency: this.concurrency,
      tooManyParts: () => new UnsupportedError(`upload ${id} exceeds ${MAX_PARTS} parts`, this.name),
      upload: (n, data) => this.uploadPart(input, n, data),
    });
    // An append that touched neither a part nor a staged tail has not yet proven the session is
    // alive (after an abort or a commit it is not); ask S3 before staging bytes for a dead upload.
    if (parts.length === 0 && !tail) await this.assertUploadExists(input);
    // Nothing new arrived: the session is unchanged (and its tail still where it was).
    if (written === 0) return { state: input, written };

    const next: S3UploadState = { ...input, partSize, parts: [...input.parts, ...parts] };
    delete next.tail;
    delete next.garbage;
    if (remainder.length > 0) {
      const key = `${this.stagingPrefix(id)}tail-${offset + written}`;
      await this.send('PutObject', () =>
        this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: remainder, ContentLength: remainder.length })),
      );
      next.tail = { key, size: remainder.length };
    }
    // The input tail may still be what the core has persisted (if persisting `next` fails), so it
    // is only marked; the input's own garbage is superseded by the persisted input: delete it now.
    if (input.tail) next.garbage = input.tail.key;
    if (input.garbage && input.garbage !== next.tail?.key) await this.deleteQuietly(input.garbage);
    return { state: next, written };
  }

  async commitUpload(id: string, state: UploadState, size: number, digest: string, verify?: VerifyContent): Promise<void> {
    const st = this.parseState(id, state);
    const blobKey = this.blobKey(digest);
    const held = heldBytes(st);
    if (held !== size) throw new IntegrityError(`upload ${id} holds ${held} bytes, not ${size}`, this.name);
    // Dedup: with nothing to verify, an existing blob makes the session's bytes redundant.
    if (!verify && (await this.resolve(digest, blobKey))) {
      await this.abortUpload(id, st);
      return;
    }
    if (st.parts.length === 0) await this.commitInline(id, st, size, digest, blobKey, verify);
    else await this.commitMultipart(id, st, size, digest, blobKey, verify);
    // The blob is readable now; leftover staging is the sweeper's if this fails.
    await this.deleteStaging(id).catch(() => undefined);
  }

  /** No full part: the staged tail (or nothing) is the whole blob; store it at its address. */
  private async commitInline(id: string, st: S3UploadState, size: number, digest: string, blobKey: string, verify?: VerifyContent) {
    const tail = st.tail;
    if (verify) {
      await this.runVerify(verify, tail ? () => this.getBody(tail.key) : async () => Readable.from([]), async () => {
        await this.abortUpload(id, st);
      });
    }
    if (!(await this.resolve(digest, blobKey))) {
      if (tail) {
        await this.send('CopyObject', () =>
          this.client.send(
            new CopyObjectCommand({
              Bucket: this.bucket,
              Key: blobKey,
              CopySource: copySource(this.bucket, tail.key),
              MetadataDirective: 'REPLACE',
              ContentType: 'application/octet-stream',
            }),
          ),
        );
      } else {
        await this.send('PutObject', () =>
          this.client.send(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: blobKey,
              Body: Buffer.alloc(0),
              ContentLength: 0,
              ContentType: 'application/octet-stream',
            }),
          ),
        );
      }
    }
    this.cacheSet(digest, { key: blobKey, size });
    await this.abortMultipart(st);
  }

  private async commitMultipart(id: string, st: S3UploadState, size: number, digest: string, blobKey: string, verify?: VerifyContent) {
    await this.completeMultipart(id, st, size);
    if (verify) {
      await this.runVerify(
        verify,
        () => this.getBody(st.key),
        async () => {
          await this.deleteQuietly(st.key);
          await this.deleteStaging(id).catch(() => undefined);
        },
      );
    }
    const stored = await this.putPointer(blobKey, st.key, size);
    if (!stored) await this.deleteQuietly(st.key);
    else this.cacheSet(digest, { key: st.key, size });
  }

  /** Send the tail as the last part and complete; tolerate a previous attempt that completed already. */
  private async completeMultipart(id: string, st: S3UploadState, size: number): Promise<void> {
    try {
      const parts = [...st.parts];
      if (st.tail) {
        const PartNumber = parts.length + 1;
        if (PartNumber > MAX_PARTS) throw new UnsupportedError(`upload ${id} exceeds ${MAX_PARTS} parts`, this.name);
        const copied = await this.send('UploadPartCopy', () =>
          this.client.send(
            new UploadPartCopyCommand({
              Bucket: this.bucket,
              Key: st.key,
              UploadId: st.uploadId,
              PartNumber,
              CopySource: copySource(this.bucket, st.tail!.key),
            }),
          ),
        );
        const etag = copied.CopyPartResult?.ETag;
        if (!etag) throw new StoreError('UploadPartCopy returned no ETag', this.name);
        parts.push({ PartNumber, ETag: quoteEtag(etag), size: st.tail.size });
      }
      await this.send('CompleteMultipartUpload', () =>
        this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.bucket,
            Key: st.key,
            UploadId: st.uploadId,
            MultipartUpload: { Parts: parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag })) },
          }),
        ),
      );
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      // NoSuchUpload: an earlier commit attempt may have completed it (and then failed later).
      const head = await this.send('HeadObject', () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: st.key }))).catch(
        () => undefined,
      );
      if (head?.ContentLength !== size) throw error;
    }
  }

  /** Create the digest's pointer; false when another commit created it first (dedup). */
  private async putPointer(blobKey: string, dataKey: string, size: number): Promise<boolean> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: blobKey,
          Body: Buffer.alloc(0),
          ContentLength: 0,
          ContentType: 'application/octet-stream',
          Metadata: { [DATA_KEY_META]: dataKey, [SIZE_META]: String(size) },
          IfNoneMatch: this.conditionalWrites ? '*' : undefined,
        }),
      );
      return true;
    } catch (error) {
      const status = httpStatus(error);
      // 412: it exists; 409: a concurrent conditional write is in flight (AWS). Either way,
      // whoever holds the address has the same bytes.
      if ((status === 412 || status === 409) && this.conditionalWrites) {
        const exists = await this.send('HeadObject', () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: blobKey })))
          .then(() => true)
          .catch(() => false);
        if (exists) return false;
      }
      throw toStoreError(this.name, 'PutObject', error);
    }
  }

  /** Hand the content to `verify`; on rejection clean up with `drop` and rethrow the rejection. */
  private async runVerify(verify: VerifyContent, open: () => Promise<Readable>, drop: () => Promise<void>): Promise<void> {
    const content = await open();
    try {
      await verify(content);
    } catch (error) {
      content.destroy();
      await drop().catch(() => undefined);
      throw error;
    }
    content.destroy();
  }

  async abortUpload(id: string, state: UploadState): Promise<void> {
    this.checkId(id);
    let st: S3UploadState | undefined;
    try {
      st = this.parseState(id, state);
    } catch {
      // Unusable state: still free whatever staging the id has.
    }
    if (st) await this.abortMultipart(st);
    await this.deleteStaging(id);
  }

  private async abortMultipart(st: Pick<S3UploadState, 'key' | 'uploadId'>): Promise<void> {
    try {
      await this.send('AbortMultipartUpload', () =>
        this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: st.key, UploadId: st.uploadId })),
      );
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
  }

  /**
   * Free what abandoned sessions hold: abort multipart uploads under this prefix with no activity
   * (creation, a part, a staged tail) for `olderThanMs`, and delete staging objects that old
   * whose upload is gone. The core's own sweeper should abort stale sessions through
   * `abortUpload` first; this is the backstop for sessions the metadata store never learned about
   * (a crash between CreateMultipartUpload and persisting the session) or lost.
   */
  async sweepUploads(olderThanMs: number): Promise<SweepResult> {
    const cutoff = Date.now() - olderThanMs;
    const result: SweepResult = { aborted: 0, deleted: 0 };

    // Staging objects by upload id, with their latest modification.
    const staging = new Map<string, { keys: string[]; latest: number }>();
    const uploadsRoot = `${this.prefix}uploads/`;
    for await (const object of this.listObjects(uploadsRoot)) {
      const id = object.key.slice(uploadsRoot.length).split('/')[0];
      const entry = staging.get(id) ?? { keys: [], latest: 0 };
      entry.keys.push(object.key);
      entry.latest = Math.max(entry.latest, object.modified);
      staging.set(id, entry);
    }

    const live = new Set<string>();
    const dataRoot = `${this.prefix}data/`;
    for await (const upload of this.listMultipartUploads(dataRoot)) {
      const id = upload.key.slice(dataRoot.length).split('/')[0];
      let latest = Math.max(upload.initiated, staging.get(id)?.latest ?? 0);
      if (latest < cutoff) latest = Math.max(latest, await this.latestPart(upload.key, upload.uploadId));
      if (latest >= cutoff) {
        live.add(id);
        continue;
      }
      await this.abortMultipart({ key: upload.key, uploadId: upload.uploadId });
      result.aborted++;
    }

    for (const [id, entry] of staging) {
      if (live.has(id) || entry.latest >= cutoff) continue;
      for (const key of entry.keys) {
        await this.deleteQuietly(key);
        result.deleted++;
      }
    }
    return result;
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.client.destroy();
  }

  // ---- helpers ----------------------------------------------------------------------------

  private async uploadPart(st: S3UploadState, PartNumber: number, data: Buffer): Promise<string> {
    const out = await this.send('UploadPart', () =>
      this.client.send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: st.key,
          UploadId: st.uploadId,
          PartNumber,
          Body: data,
          ContentLength: data.length,
        }),
      ),
    );
    if (!out.ETag) throw new StoreError('UploadPart returned no ETag', this.name);
    return out.ETag;
  }

  private async assertUploadExists(st: S3UploadState): Promise<void> {
    await this.send('ListParts', () =>
      this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: st.key, UploadId: st.uploadId, MaxParts: 1 })),
    );
  }

  private async getBody(key: string, range?: string): Promise<Readable> {
    const out = await this.send('GetObject', () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range })));
    if (!(out.Body instanceof Readable)) throw new StoreError('GetObject returned no Node stream', this.name);
    return out.Body;
  }

  private async deleteStaging(id: string): Promise<void> {
    const keys: string[] = [];
    for await (const object of this.listObjects(this.stagingPrefix(id))) keys.push(object.key);
    // Per-object deletes: a session has a handful of staging objects, and DeleteObjects needs a
    // Content-MD5 that some providers insist on and the SDK no longer sends.
    await Promise.all(keys.map((key) => this.deleteQuietly(key)));
  }

  private async deleteQuietly(key: string): Promise<void> {
    await this.send('DeleteObject', () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }))).catch((error) => {
      if (!(error instanceof NotFoundError)) throw error;
    });
  }

  private async *listObjects(prefix: string): AsyncGenerator<{ key: string; modified: number }> {
    let token: string | undefined;
    do {
      const page = await this.send('ListObjectsV2', () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token })),
      );
      for (const o of page.Contents ?? []) if (o.Key) yield { key: o.Key, modified: o.LastModified?.getTime() ?? 0 };
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  private async *listMultipartUploads(prefix: string): AsyncGenerator<{ key: string; uploadId: string; initiated: number }> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.send('ListMultipartUploads', () =>
        this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        ),
      );
      for (const u of page.Uploads ?? [])
        if (u.Key && u.UploadId) yield { key: u.Key, uploadId: u.UploadId, initiated: u.Initiated?.getTime() ?? 0 };
      if (!page.IsTruncated) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /** Latest LastModified among an upload's parts (0 when none, or when it vanished meanwhile). */
  private async latestPart(key: string, uploadId: string): Promise<number> {
    let latest = 0;
    let marker: string | undefined;
    try {
      for (;;) {
        const page = await this.send('ListParts', () =>
          this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker })),
        );
        for (const p of page.Parts ?? []) latest = Math.max(latest, p.LastModified?.getTime() ?? 0);
        if (!page.IsTruncated) return latest;
        marker = page.NextPartNumberMarker;
      }
    } catch (error) {
      if (error instanceof NotFoundError) return latest;
      throw error;
    }
  }

  /** Run one SDK call, translating its failures into the core's store errors. */
  private async send<T>(operation: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw toStoreError(this.name, operation, error);
    }
  }

  /** Validate a state from the metadata store: it only ever names keys of this session. */
  private parseState(id: string, state: UploadState): S3UploadState {
    const s = state as Partial<S3UploadState>;
    const bad = (why: string) => new StoreError(`upload ${id}: invalid state (${why})`, this.name);
    // No state of ours at all (`{}`): the session was never created here, or is gone.
    if (s === null || typeof s !== 'object' || s.uploadId === undefined) throw new NotFoundError(`upload ${id} not found`, this.name);
    if (s.v !== 1) throw bad('version');
    if (typeof s.key !== 'string' || !s.key.startsWith(this.dataPrefix(id)) || s.key.slice(this.dataPrefix(id).length).includes('/'))
      throw bad('key');
    if (typeof s.uploadId !== 'string' || !s.uploadId) throw bad('uploadId');
    if (!Number.isSafeInteger(s.partSize) || s.partSize! < MIN_PART_SIZE || s.partSize! > MAX_PART_SIZE) throw bad('partSize');
    if (typeof s.grow !== 'boolean') throw bad('grow');
    if (!Array.isArray(s.parts)) throw bad('parts');
    s.parts.forEach((p, i) => {
      if (p?.PartNumber !== i + 1 || typeof p.ETag !== 'string' || p.size !== partSizeFor(i + 1, s.partSize!, s.grow!))
        throw bad(`part ${i + 1}`);
    });
    const staging = this.stagingPrefix(id);
    if (s.tail !== undefined) {
      const { key, size } = s.tail;
      if (typeof key !== 'string' || !key.startsWith(staging) || !Number.isSafeInteger(size) || size <= 0) throw bad('tail');
      if (size >= partSizeFor(s.parts.length + 1, s.partSize!, s.grow)) throw bad('tail size');
    }
    if (s.garbage !== undefined && (typeof s.garbage !== 'string' || !s.garbage.startsWith(staging))) throw bad('garbage');
    return s as S3UploadState;
  }
}

function heldBytes(st: S3UploadState): number {
  return st.parts.reduce((sum, p) => sum + p.size, 0) + (st.tail?.size ?? 0);
}

function normalizePrefix(prefix: string | undefined): string {
  const p = (prefix ?? '').replace(/^\/+/, '');
  return p === '' || p.endsWith('/') ? p : `${p}/`;
}

/** `Range` header for an inclusive range, validated against the blob's size. */
function httpRange(range: ByteRange | undefined, size: number, digest: string, store: string): string | undefined {
  if (!range) return undefined;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end >= size)
    throw new RangeError(`${store}: range ${start}-${end} is not satisfiable for blob ${digest} of ${size} bytes`);
  return `bytes=${start}-${end}`;
}

/** `x-amz-copy-source`: bucket/key, URL-encoded per segment. */
function copySource(bucket: string, key: string): string {
  return `${encodeURIComponent(bucket)}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/** Ceph returns copy-part ETags unquoted; Complete wants them as UploadPart returns them. */
function quoteEtag(etag: string): string {
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

function clientConfig(options: S3BlobStoreOptions): S3ClientConfig {
  const agent = { keepAlive: true, maxSockets: options.maxSockets ?? 64 };
  return {
    endpoint: options.endpoint,
    region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: options.forcePathStyle ?? false,
    credentials: options.credentials,
    maxAttempts: options.maxAttempts ?? 3,
    retryMode: 'standard',
    // Checksums only where S3 demands them: the core verifies every digest anyway, and the
    // trailer encoding the SDK would otherwise use is rejected by Ceph RGW and older MinIO.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: options.connectionTimeoutMs ?? 5_000,
      requestTimeout: options.requestTimeoutMs ?? 120_000,
      throwOnRequestTimeout: true,
      socketTimeout: options.socketTimeoutMs ?? 30_000,
      httpAgent: agent,
      httpsAgent: agent,
    },
  };
}
