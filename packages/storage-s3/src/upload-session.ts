/**
 * Upload sessions on S3 multipart uploads: create, append, commit and abort (see the README,
 * "Uploads"). All session state travels in `S3UploadState`, so any replica can take the next call.
 *
 * A session's only append (a monolithic PUT: `last`, with a length over one part) goes up as one
 * streamed PutObject at the multipart key instead (`object` in the state): the gateway then sees
 * what a plain upload looks like, and no part buffers are needed.
 *
 * Commit order keeps readers safe: data first (Complete, or the object already there; the
 * multipart upload of a single-PUT session is aborted before its pointer exists), then
 * verification, then the pointer (a conditional create, so concurrent commits of one digest keep
 * exactly one data object). Hence an open multipart upload means its key holds no blob, and
 * aborting one may delete the object at its key.
 */
import { Readable } from 'node:stream';
import {
  type AppendResult,
  ConflictError,
  IntegrityError,
  NotFoundError,
  StoreError,
  TooLargeError,
  UnsupportedError,
  type UploadState,
  type VerifyContent,
} from '@berthjs/core';
import type { Bucket } from './bucket.js';
import { lostConditionalWrite } from './errors.js';
import type { KeyLayout, Location } from './keys.js';
import { MAX_PARTS, choosePartSize, partSizeFor } from './multipart.js';
import { PartBuffers, splitIntoParts } from './splitter.js';
import type { BlobReader } from './reads.js';
import { quiet } from './streams.js';
import { type S3UploadState, heldBytes, parseState } from './upload-state.js';

/** Part buffers kept for reuse, at most, in part sizes. */
const IDLE_PART_BUFFERS = 8;

export interface SessionSettings {
  /** Base part size of new sessions. */
  partSize: number;
  /** Whether part sizes of new sessions grow every 1,000 parts. */
  grow: boolean;
  /** Part uploads in flight while the next part fills. */
  partConcurrency: number;
  /** Create pointers with `If-None-Match: *`. */
  conditionalWrites: boolean;
  /** Largest only append (`last`, with a known length, over one part) sent as one streamed PutObject; 0: never. */
  singlePutMax: number;
}

export class MultipartSessions {
  /** Part buffers of finished parts, for the next ones of any session. */
  private readonly buffers: PartBuffers;

  constructor(
    private readonly bucket: Bucket,
    private readonly layout: KeyLayout,
    private readonly reader: BlobReader,
    private readonly store: string,
    private readonly settings: SessionSettings,
  ) {
    this.buffers = new PartBuffers(IDLE_PART_BUFFERS * settings.partSize);
  }

  async create(id: string): Promise<UploadState> {
    const key = this.layout.newDataKey(id);
    const uploadId = await this.bucket.createMultipart(key);
    const { partSize, grow } = this.settings;
    const state: S3UploadState = { v: 1, key, uploadId, partSize, grow, parts: [] };
    return state;
  }

  async append(id: string, state: UploadState, offset: number, body: Readable, length?: number, last?: boolean): Promise<AppendResult> {
    const input = this.parse(id, state);
    const held = heldBytes(input);
    if (offset !== held) throw new ConflictError(`upload ${id} holds ${held} bytes, not ${offset}`, this.store);
    if (input.object) throw new UnsupportedError(`upload ${id} was closed by its last append`, this.store);
    const fresh = input.parts.length === 0 && !input.tail;
    if (fresh && last && !input.garbage && length !== undefined && length > input.partSize && length <= this.settings.singlePutMax) {
      await this.bucket.putStream(input.key, body, length);
      return { state: { ...input, object: { size: length } }, written: length };
    }
    // The first bytes of a session with a known length may pick a bigger part size to fit 10,000 parts.
    const partSize = fresh ? choosePartSize(input.partSize, length) : input.partSize;

    let written = 0;
    const { bucket, store } = this;
    const tail = input.tail;
    async function* source(): AsyncGenerator<Buffer> {
      if (tail) {
        let staged = 0;
        for await (const chunk of await bucket.get(tail.key)) {
          staged += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (staged !== tail.size) throw new StoreError(`staged tail of upload ${id} has ${staged} bytes, not ${tail.size}`, store);
      }
      for await (const raw of body) {
        const chunk = typeof raw === 'string' ? Buffer.from(raw) : (raw as Buffer);
        written += chunk.length;
        yield chunk;
      }
    }

    const { parts, remainder } = await splitIntoParts(source(), {
      firstPartNumber: input.parts.length + 1,
      sizeOf: (n) => partSizeFor(n, partSize, input.grow),
      concurrency: this.settings.partConcurrency,
      buffers: this.buffers,
      tooManyParts: () => tooManyParts(id, this.store),
      upload: (n, data) => this.bucket.uploadPart(input.key, input.uploadId, n, data),
    });
    // An append that touched neither a part nor a staged tail has not yet proven the session is
    // alive (after an abort or a commit it is not); ask S3 before staging bytes for a dead upload.
    if (parts.length === 0 && !tail) await this.bucket.assertMultipartOpen(input.key, input.uploadId);
    // Nothing new arrived: the session is unchanged (and its tail still where it was).
    if (written === 0) return { state: input, written };

    const next: S3UploadState = { ...input, partSize, parts: [...input.parts, ...parts] };
    delete next.tail;
    delete next.garbage;
    if (remainder.length > 0) {
      const key = this.layout.tail(id, offset + written);
      await this.bucket.put(key, remainder);
      next.tail = { key, size: remainder.length };
    }
    // The input tail may still be what the core has persisted (if persisting `next` fails), so it
    // is only marked; the input's own garbage is superseded by the persisted input: delete it now.
    if (input.tail) next.garbage = input.tail.key;
    if (input.garbage && input.garbage !== next.tail?.key) await this.bucket.deleteQuietly(input.garbage);
    return { state: next, written };
  }

  async commit(id: string, state: UploadState, size: number, digest: string, verify?: VerifyContent): Promise<void> {
    const st = this.parse(id, state);
    const blobKey = this.layout.blob(digest);
    const held = heldBytes(st);
    if (held !== size) throw new IntegrityError(`upload ${id} holds ${held} bytes, not ${size}`, this.store);
    if (st.object) await this.commitObject(id, st, size, digest, blobKey, verify);
    else if (st.parts.length === 0) await this.commitInline(id, st, size, digest, blobKey, verify);
    else if (!verify && !this.settings.conditionalWrites && (await this.reader.resolve(digest))) {
      // Dedup without a conditional pointer write: an existing blob makes this session redundant.
      await this.abort(id, st);
      return;
    } else await this.commitMultipart(id, st, size, digest, blobKey, verify);
    // The blob is readable now; drop the staging. A session that never staged a tail skips the
    // listing (pushes of whole parts, the common case): a tail orphaned there, by an append whose
    // state was never persisted, is the sweeper's, as is whatever fails to go here.
    if (st.tail || st.garbage) await this.deleteStaging(id).catch(() => undefined);
  }

  async abort(id: string, state: UploadState): Promise<void> {
    this.layout.checkId(id);
    let st: S3UploadState | undefined;
    try {
      st = this.parse(id, state);
    } catch {
      // Unusable state: still free whatever staging the id has.
    }
    // Still open, so never committed: whatever single-PUT object its key holds (even one whose
    // state was never persisted) is no blob.
    if (st && (await this.bucket.abortMultipart(st.key, st.uploadId))) await this.bucket.deleteQuietly(st.key);
    await this.deleteStaging(id);
  }

  private parse(id: string, state: UploadState): S3UploadState {
    return parseState(this.layout, this.store, id, state);
  }

  /** No full part: the staged tail (or nothing) is the whole blob; store it at its address. */
  private async commitInline(id: string, st: S3UploadState, size: number, digest: string, blobKey: string, verify?: VerifyContent) {
    const tail = st.tail;
    if (verify) {
      const open = tail ? () => this.bucket.get(tail.key) : async () => quiet(Readable.from([]));
      await this.runVerify(verify, open, () => this.abort(id, st));
    }
    // Dedup: an existing blob (inline, or a pointer a store with another part size made) stays.
    if (!(await this.reader.resolve(digest))) {
      if (tail) await this.bucket.copy(blobKey, tail.key);
      else await this.bucket.put(blobKey, Buffer.alloc(0));
      this.reader.remember(digest, { key: blobKey, size });
    }
    await this.bucket.abortMultipart(st.key, st.uploadId);
  }

  private async commitMultipart(id: string, st: S3UploadState, size: number, digest: string, blobKey: string, verify?: VerifyContent) {
    await this.complete(id, st, size);
    if (verify) {
      await this.runVerify(
        verify,
        () => this.bucket.get(st.key),
        async () => {
          await this.bucket.deleteQuietly(st.key);
          await this.deleteStaging(id).catch(() => undefined);
        },
      );
    }
    await this.point(blobKey, digest, { key: st.key, size });
  }

  /** A single-PUT session: its object is the data; the multipart upload goes before the pointer. */
  private async commitObject(id: string, st: S3UploadState, size: number, digest: string, blobKey: string, verify?: VerifyContent) {
    if (verify)
      await this.runVerify(
        verify,
        () => this.bucket.get(st.key),
        () => this.abort(id, st),
      );
    await this.bucket.abortMultipart(st.key, st.uploadId);
    await this.point(blobKey, digest, { key: st.key, size });
  }

  /** Make the data object readable under the digest, or drop it when the blob exists already. */
  private async point(blobKey: string, digest: string, location: Location): Promise<void> {
    if (await this.createPointer(blobKey, location)) this.reader.remember(digest, location);
    else await this.bucket.deleteQuietly(location.key);
  }

  /** Send the tail as the last part and complete; tolerate a previous attempt that completed already. */
  private async complete(id: string, st: S3UploadState, size: number): Promise<void> {
    try {
      const parts = [...st.parts];
      if (st.tail) {
        const PartNumber = parts.length + 1;
        if (PartNumber > MAX_PARTS) throw tooManyParts(id, this.store);
        const ETag = await this.bucket.copyPart(st.key, st.uploadId, PartNumber, st.tail.key);
        parts.push({ PartNumber, ETag, size: st.tail.size });
      }
      await this.bucket.completeMultipart(st.key, st.uploadId, parts);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      // NoSuchUpload: an earlier commit attempt may have completed it (and then failed later).
      const head = await this.bucket.head(st.key).catch(() => undefined);
      if (head?.size !== size) throw error;
    }
  }

  /** Create the digest's pointer; false when the blob exists already (dedup: another commit made it). */
  private async createPointer(blobKey: string, location: Location): Promise<boolean> {
    const { conditionalWrites } = this.settings;
    try {
      await this.bucket.put(blobKey, Buffer.alloc(0), { metadata: this.layout.pointerMetadata(location), ifNoneMatch: conditionalWrites });
      return true;
    } catch (error) {
      // Whoever holds the address has the same bytes.
      if (conditionalWrites && lostConditionalWrite(error) && (await this.bucket.head(blobKey).catch(() => undefined))) return false;
      throw error;
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

  private async deleteStaging(id: string): Promise<void> {
    const keys: string[] = [];
    for await (const object of this.bucket.list(this.layout.staging(id))) keys.push(object.key);
    // Per-object deletes: a session has a handful of staging objects, and DeleteObjects needs a
    // Content-MD5 that some providers insist on and the SDK no longer sends.
    await Promise.all(keys.map((key) => this.bucket.deleteQuietly(key)));
  }
}

/** S3 holds at most 10,000 parts per object: more bytes than that make the blob too large for it (413). */
function tooManyParts(id: string, store: string): TooLargeError {
  return new TooLargeError(`upload ${id} is too large: S3 objects hold at most ${MAX_PARTS} parts`, store);
}
