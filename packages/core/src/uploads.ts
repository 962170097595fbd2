import { randomUUID, type Hash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { HashingStream, newHash, type DigestAlgorithm, type ParsedDigest } from './digest.js';
import { OciError } from './errors.js';
import type { RegistryEventEmitter } from './events.js';
import { Budget } from './limits.js';
import type { BlobStore, UploadState, VerifyContent } from './ports/blob-store.js';
import { ConflictError, IntegrityError, NotFoundError, UnavailableError } from './ports/errors.js';
import type { CommitStart, MetadataStore, TenantUsage, UploadRecord } from './ports/metadata-store.js';
import { BodyError, bodyError, isDead, pipeBody, type BodyPace } from './request-body.js';

/** Where a chunk claims to start and how long it is (from Content-Range / Content-Length). */
export interface ChunkInfo {
  start?: number;
  length?: number;
}

/** A hash that has seen exactly the first `offset` bytes of a session, kept in this process. */
interface LiveHash {
  hash: Hash;
  algorithm: DigestAlgorithm;
  offset: number;
}

const SWEEP_LEASE = 'sweep';

/** How long a commit waits for a collection that is deleting the same digest's bytes (one batch takes well under a second). */
const PIN_WAIT_MS = 30_000;

/** Hashes kept at most this many; older sessions fall back to re-reading (correct, just slower). */
const MAX_LIVE_HASHES = 10_000;

export interface UploadLimits {
  /** End a body that sends no byte for this long (ms); 0: never. Default 60 s. */
  bodyIdleTimeoutMs?: number;
  /** End a body slower than this on average over `bodyIdleTimeoutMs`. Default 256. */
  bodyMinBytesPerSecond?: number;
  /** Upload requests streaming at once in this process; more get 429. Default 128. */
  maxConcurrent?: number;
}

/**
 * Upload sessions that survive restarts and replicas.
 *
 * The session (repository, offset, the blob store's state) lives in the metadata store; a request
 * takes it with a compare-and-set lease on the offset, so of two concurrent PATCHes one gets 416
 * and the session stays intact. The digest is computed with Node's crypto while bytes stream in
 * (the fast path, ~4.7x faster than a hash whose state could be persisted). The hash object stays
 * in this process's memory, keyed by session and offset; a request that finds no hash for the
 * session's offset (the session moved to another process, or this one restarted) stops hashing,
 * and the closing PUT then re-reads the whole upload through the store to verify it before the
 * blob becomes visible. Re-reading was chosen over persisting a hash-wasm state after every chunk:
 * that would tax every push (hash-wasm ~355 MB/s here) to speed up the rare moved session.
 */
export class UploadSessions {
  private readonly live = new LRUCache<string, LiveHash>({ max: MAX_LIVE_HASHES });
  private readonly streams: Budget;
  private readonly pace: BodyPace;

  constructor(
    private readonly blobs: BlobStore,
    private readonly metadata: MetadataStore,
    private readonly events: RegistryEventEmitter,
    private readonly leaseMs: number,
    /** The tenant's quota in bytes, undefined for none (`quotaOf`). */
    private readonly quotaOf: (tenant: string) => number | undefined | Promise<number | undefined> = () => undefined,
    limits: UploadLimits = {},
  ) {
    this.pace = { idleMs: limits.bodyIdleTimeoutMs ?? 60_000, minBytesPerSecond: limits.bodyMinBytesPerSecond ?? 256 };
    this.streams = new Budget(limits.maxConcurrent ?? 128, 'uploads streaming');
  }

  /** Open a session; its bytes count against `tenant`'s usage and quota once committed. */
  async start(repository: string, algorithm?: DigestAlgorithm, tenant = ''): Promise<UploadRecord> {
    const id = randomUUID();
    let state: UploadState = {};
    try {
      state = await this.blobs.createUpload(id);
      await this.metadata.createUpload({ id, repository, tenant, state, algorithm });
    } catch (error) {
      // The client never learns this id, and no sweeper finds a session the metadata never heard
      // of: free whatever was made before the failure (a store may fail after doing its part).
      await this.discard({ id, state });
      throw error;
    }
    this.live.set(id, { hash: newHash(algorithm ?? 'sha256'), algorithm: algorithm ?? 'sha256', offset: 0 });
    const now = Date.now();
    return { id, repository, tenant, state, algorithm, offset: 0, reserved: 0, createdAt: now, updatedAt: now, leaseUntil: 0 };
  }

  /** The session, if it exists and belongs to `repository`. */
  async get(repository: string, id: string): Promise<UploadRecord> {
    const upload = /^[A-Za-z0-9-]{1,64}$/.test(id) ? await this.metadata.getUpload(id) : undefined;
    if (!upload || upload.repository !== repository) {
      throw new OciError('BLOB_UPLOAD_UNKNOWN', { detail: { id } });
    }
    return upload;
  }

  /** Append one chunk (PATCH); returns the session's new size. */
  async append(upload: UploadRecord, body: Readable, chunk: ChunkInfo): Promise<number> {
    return this.withLease(upload, chunk, async (token) => {
      const { offset, state } = await this.write(upload, body, chunk, undefined);
      if (!(await this.metadata.advanceUpload(upload.id, token, offset, state))) {
        throw outOfOrder(upload, 'the upload session was taken over by another request');
      }
      return offset;
    });
  }

  /**
   * Close the session (PUT): append the final chunk if the request carries one, verify the digest
   * and make the blob visible in the repository.
   */
  async complete(upload: UploadRecord, digest: ParsedDigest, body: Readable | undefined, chunk: ChunkInfo): Promise<number> {
    return this.withLease(upload, chunk, async () => {
      let { offset, state } = upload;
      if (body) ({ offset, state } = await this.write(upload, body, chunk, digest.digest));
      await this.commit(upload, state, offset, digest);
      return offset;
    });
  }

  /**
   * Free, as far as the stores let us, a session no client knows of (its POST failed before
   * answering with its Location); failures are ignored, since the request is failing already.
   */
  async discard(upload: Pick<UploadRecord, 'id' | 'state'>): Promise<void> {
    this.live.delete(upload.id);
    await this.blobs.abortUpload(upload.id, upload.state).catch(() => undefined);
    await this.metadata.deleteUpload(upload.id).catch(() => undefined);
  }

  async cancel(upload: UploadRecord, reason: 'cancelled' | 'expired' | 'quota'): Promise<void> {
    this.live.delete(upload.id);
    await this.blobs.abortUpload(upload.id, upload.state);
    // Announced once: a session another request ended already (e.g. a digest mismatch) is not announced again.
    if (await this.metadata.deleteUpload(upload.id))
      this.events.emit('upload.aborted', { repository: upload.repository, id: upload.id, reason });
  }

  /**
   * Free everything uploads left behind: abort sessions untouched for `ttlMs`, then let the blob
   * store remove leftovers no session knows of (older than the lease: a session's store side and
   * its row are made within one request). One sweep at a time across processes. Returns how many.
   */
  async sweep(ttlMs: number, batch = 100): Promise<number> {
    const holder = randomUUID();
    if (!(await this.metadata.acquireLease(SWEEP_LEASE, holder, Math.max(this.leaseMs, 60_000))).acquired) return 0;
    try {
      let swept = 0;
      for (;;) {
        const stale = await this.metadata.listStaleUploads(Date.now() - ttlMs, batch);
        let sweptNow = 0;
        for (const upload of stale) {
          if (upload.leaseUntil > Date.now()) continue; // a request is still writing to it
          await this.cancel(upload, 'expired');
          sweptNow++;
        }
        swept += sweptNow;
        // Stop at the last page, or when a page held only leased sessions (it would come back again).
        if (stale.length < batch || sweptNow === 0) break;
      }
      swept += await this.blobs.sweepUploads({
        before: Date.now() - this.leaseMs,
        known: async (ids) => {
          const found = await Promise.all(ids.map(async (id) => ((await this.metadata.getUpload(id)) ? id : undefined)));
          return new Set(found.filter((id): id is string => id !== undefined));
        },
      });
      return swept;
    } finally {
      await this.metadata.releaseLease(SWEEP_LEASE, holder).catch(() => undefined);
    }
  }

  // --- internals ---

  /** Hold the session's lease (renewed while the body streams) and a stream slot around `work`. */
  private async withLease<T>(upload: UploadRecord, chunk: ChunkInfo, work: (token: string) => Promise<T>): Promise<T> {
    if (chunk.start !== undefined && chunk.start !== upload.offset) {
      throw outOfOrder(upload, `chunk starts at ${chunk.start}, expected ${upload.offset}`);
    }
    const slot = this.streams.take(1);
    try {
      return await this.leased(upload, work);
    } finally {
      slot();
    }
  }

  private async leased<T>(upload: UploadRecord, work: (token: string) => Promise<T>): Promise<T> {
    const token = randomUUID();
    const claimed = await this.metadata.claimUpload(upload.id, upload.offset, token, Date.now() + this.leaseMs).catch(async (error) => {
      // The claim may have landed before the store failed: free it, or it blocks the session for a lease.
      await this.metadata.releaseUpload(upload.id, token).catch(() => undefined);
      throw error;
    });
    if (!claimed) throw outOfOrder(upload, 'another request is writing to this upload session');
    const renew = setInterval(
      () => {
        this.metadata.renewUpload(upload.id, token, Date.now() + this.leaseMs).catch(() => undefined);
      },
      Math.max(1000, this.leaseMs / 3),
    );
    renew.unref();
    let released = false;
    try {
      const result = await work(token);
      released = true; // advanceUpload or the commit's deleteUpload freed it
      return result;
    } finally {
      clearInterval(renew);
      if (!released) await this.metadata.releaseUpload(upload.id, token).catch(() => undefined);
    }
  }

  /**
   * Stream `body` into the store at the session's offset, hashing on the fast path. With a quota
   * and a known length, the bytes are reserved first (`digest`, when known, lets a blob the tenant
   * holds already pass for free).
   */
  private async write(
    upload: UploadRecord,
    body: Readable,
    chunk: ChunkInfo,
    digest: string | undefined,
  ): Promise<{ offset: number; state: UploadState }> {
    // A client that left while the request waited for auth or the lease: nothing to stream.
    if (isDead(body)) throw bodyError(body);
    if (chunk.length !== undefined) {
      const limit = await this.quotaOf(upload.tenant);
      const reservation =
        limit === undefined ? undefined : await this.metadata.reserveUpload(upload.id, upload.offset + chunk.length, limit, digest);
      // (The refused body is drained before the answer goes out, see settleBody.)
      if (reservation && !reservation.granted) {
        await this.refuse(upload, limit as number, reservation.usage, reservation.needed);
      }
    }
    const live = this.liveHashAt(upload);
    // Hash a copy: if this request fails, the live hash must still describe the stored prefix.
    const hash = live?.hash.copy();
    const counter = new HashingStream(hash, chunk.length);
    // Listen before the store's first await: a body that fails meanwhile destroys `counter` with
    // its error, and an 'error' nobody hears would take the whole process down.
    counter.on('error', () => undefined);
    // Only the closing PUT knows the digest, and nothing follows its append but the commit.
    const last = digest !== undefined;
    const appended = this.blobs.appendUpload(upload.id, upload.state, upload.offset, counter, chunk.length, last);
    pipeBody(body, counter, this.pace);
    try {
      await appended;
    } catch (error) {
      // Stop feeding the store; the rest of the body is drained (or the connection closed) before
      // the error response goes out.
      body.unpipe(counter);
      counter.destroy();
      // The body's own failure (the client left or went quiet) explains whatever the store made of it.
      if (counter.errored instanceof BodyError) throw counter.errored;
      if (error instanceof ConflictError) throw outOfOrder(upload, 'the upload session was changed by another request');
      if (error instanceof NotFoundError) throw new OciError('BLOB_UPLOAD_UNKNOWN', { detail: { id: upload.id } });
      // The store lost bytes it had acknowledged (e.g. a crash before they reached the disk):
      // the session cannot be completed correctly, so end it and make the client start over.
      if (error instanceof IntegrityError) {
        await this.cancel(upload, 'cancelled').catch(() => undefined);
        throw new OciError('BLOB_UPLOAD_INVALID', {
          message: 'the upload session lost data; start a new upload',
          detail: { id: upload.id },
        });
      }
      throw error;
    }
    const { state, written } = await appended;
    if (written !== counter.bytes || (chunk.length !== undefined && written !== chunk.length)) {
      throw new OciError('SIZE_INVALID', { detail: { expected: chunk.length, received: counter.bytes } });
    }
    const offset = upload.offset + written;
    if (hash && live) this.live.set(upload.id, { hash, algorithm: live.algorithm, offset });
    else this.live.delete(upload.id);
    return { offset, state };
  }

  private async commit(upload: UploadRecord, state: UploadState, size: number, digest: ParsedDigest): Promise<void> {
    const live = this.liveHashAt({ ...upload, offset: size });
    this.live.delete(upload.id);
    let verify: VerifyContent | undefined;
    if (live && live.offset === size && live.algorithm === digest.algorithm) {
      const computed = `${digest.algorithm}:${live.hash.digest('hex')}`;
      if (computed !== digest.digest) await this.rejectDigest(upload, state, digest, computed);
    } else {
      verify = async (content) => {
        const hash = newHash(digest.algorithm);
        for await (const piece of content) hash.update(piece as Buffer);
        const computed = `${digest.algorithm}:${hash.digest('hex')}`;
        if (computed !== digest.digest) throw new IntegrityError(`content hashes to ${computed}`, 'core');
      };
    }
    await this.pin(upload, digest.digest, size);
    try {
      await this.blobs.commitUpload(upload.id, state, size, digest.digest, verify);
    } catch (error) {
      if (error instanceof IntegrityError) await this.rejectDigest(upload, state, digest, undefined);
      // Cancelled (or completed) by another request since this one found it.
      if (error instanceof NotFoundError) throw new OciError('BLOB_UPLOAD_UNKNOWN', { detail: { id: upload.id } });
      throw error;
    }
    await this.metadata.finishCommit(upload.id, digest.digest, size);
    this.events.emit('blob.pushed', { repository: upload.repository, digest: digest.digest, size });
  }

  /**
   * Pin the digest for this commit (metadata `beginCommit`): from here until the link is made,
   * no collection can delete its bytes, so a dedup commit relies on bytes that stay. While a
   * collection is deleting this digest's bytes, wait for it; finish the deletion ourselves if
   * that collection died.
   */
  private async pin(upload: UploadRecord, digest: string, size: number): Promise<void> {
    const deadline = Date.now() + PIN_WAIT_MS;
    for (let delay = 10; ; delay = Math.min(delay * 2, 500)) {
      let start: CommitStart;
      const limit = await this.quotaOf(upload.tenant);
      try {
        start = await this.metadata.beginCommit(upload.id, digest, size, limit);
      } catch (error) {
        if (error instanceof NotFoundError) throw new OciError('BLOB_UPLOAD_UNKNOWN', { detail: { id: upload.id } });
        throw error;
      }
      if (start.status === 'ready') return;
      if (start.status === 'over-quota') await this.refuse(upload, limit as number, start.usage, start.needed);
      if (start.status === 'deleting' && start.abandoned) {
        await this.blobs.delete([{ digest }]);
        await this.metadata.forgetBlobs([digest]);
        continue;
      }
      if (Date.now() > deadline) throw new UnavailableError(`blob ${digest} is being deleted by garbage collection`, 'core');
      await sleep(delay);
    }
  }

  /** Over quota: the session ends with nothing of it kept, and the client learns usage and limit. */
  private async refuse(upload: UploadRecord, limit: number, usage: TenantUsage, needed: number): Promise<never> {
    await this.cancel(upload, 'quota').catch(() => undefined);
    const who = upload.tenant === '' ? 'the registry' : `tenant ${JSON.stringify(upload.tenant)}`;
    throw new OciError('DENIED', {
      message: `quota exceeded: ${who} stores ${formatBytes(usage.bytes)}${usage.reserved > 0 ? ` (+${formatBytes(usage.reserved)} being uploaded)` : ''} of its ${formatBytes(limit)}; this upload needs ${formatBytes(needed)} more`,
      detail: { tenant: upload.tenant, usage: usage.bytes, reserved: usage.reserved, limit, needed },
    });
  }

  /** A digest mismatch ends the session (as in distribution): nothing of it is kept. */
  private async rejectDigest(upload: UploadRecord, state: UploadState, digest: ParsedDigest, computed?: string): Promise<never> {
    await this.blobs.abortUpload(upload.id, state).catch(() => undefined);
    await this.metadata.deleteUpload(upload.id);
    this.events.emit('upload.aborted', { repository: upload.repository, id: upload.id, reason: 'digest-mismatch' });
    throw new OciError('DIGEST_INVALID', { detail: { expected: digest.digest, ...(computed ? { computed } : {}) } });
  }

  /** The in-process hash of exactly the session's stored bytes, if this process has one. */
  private liveHashAt(upload: UploadRecord): LiveHash | undefined {
    const live = this.live.get(upload.id);
    if (live && live.offset === upload.offset) return live;
    if (upload.offset !== 0) return undefined;
    // Nothing stored yet: any process can start the hash, wherever the POST ran.
    const algorithm = upload.algorithm === 'sha512' ? 'sha512' : 'sha256';
    return { hash: newHash(algorithm), algorithm, offset: 0 };
  }
}

/** 416 for a chunk that does not continue the session; Range and Location let the client resume. */
export function outOfOrder(upload: UploadRecord, message: string): OciError {
  return new OciError('BLOB_UPLOAD_INVALID', {
    status: 416,
    message,
    headers: {
      Location: uploadLocation(upload.repository, upload.id),
      Range: rangeHeader(upload.offset),
      'Docker-Upload-UUID': upload.id,
    },
  });
}

/** `1536` → `1.5 KiB` (bytes below 1 KiB as they are). */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

export function uploadLocation(repository: string, id: string): string {
  return `/v2/${repository}/blobs/uploads/${id}`;
}

/** `0-<last byte>`, inclusive, for the whole blob so far; distribution answers `0-0` for an empty session. */
export function rangeHeader(offset: number): string {
  return `0-${Math.max(0, offset - 1)}`;
}

export { ConflictError };
