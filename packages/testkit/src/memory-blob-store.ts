/*
 * MemoryBlobStore: the BlobStore port in process memory, for tests (Berth's own and embedders').
 *
 * Layout: two maps shared by every replica() of one store, `blobs` (digest -> immutable bytes) and
 * `uploads` (session id -> the chunks received so far). It behaves like FsBlobStore where the
 * port leaves room: every call yields to the event loop before touching anything (as real I/O
 * does, so races and listener-ordering bugs show up here too); bytes of a failed append stay past
 * the recorded offset until the next append cuts them; a commit whose session holds less than
 * `size` is an IntegrityError; malformed digests and ids are a StoreError.
 */
import { Readable } from 'node:stream';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import {
  ConflictError,
  IntegrityError,
  NotFoundError,
  StoreError,
  UnavailableError,
  type AppendResult,
  type BlobStore,
  type BlobStoreCapabilities,
  type ByteRange,
  type StoredBlob,
  type SweepOptions,
  type UploadState,
  type VerifyContent,
} from '@berthjs/core';

const DIGEST_RE = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const UPLOAD_ID_RE = /^[A-Za-z0-9-]{1,64}$/;
/** Read streams hand out bytes in pieces of this size, like a file read stream. */
const READ_CHUNK = 64 * 1024;

interface BlobData {
  blobs: Map<string, Buffer>;
  uploads: Map<string, Buffer[]>;
  /** Last write of each blob (`b:<digest>`) and session (`u:<id>`), epoch ms, for listings and sweeps. */
  written: Map<string, number>;
  /** While set, every call of every replica fails as a lost backend would (see `outage()`). */
  down: boolean;
}

/** Everything a MemoryBlobStore holds, as plain sorted data: compare two with deepEqual, or restore one. */
export interface BlobStoreSnapshot {
  blobs: { digest: string; content: Buffer }[];
  uploads: { id: string; content: Buffer }[];
}

export interface MemoryBlobStoreOptions {
  /** Advertised as `OCI-Chunk-Min-Length` (the memory store itself takes chunks of any size). */
  minChunkLength?: number;
}

/** A {@link BlobStore} in memory. `replica()` opens another instance over the same data. */
export class MemoryBlobStore implements BlobStore {
  readonly name = 'memory';
  readonly capabilities: BlobStoreCapabilities;
  #closed = false;
  #data: BlobData = { blobs: new Map(), uploads: new Map(), written: new Map(), down: false };

  constructor(options: MemoryBlobStoreOptions = {}) {
    this.capabilities = options.minChunkLength === undefined ? {} : { minChunkLength: options.minChunkLength };
  }

  /** A second store over the same bytes, as another process would open a shared volume. */
  replica(): MemoryBlobStore {
    const other = new MemoryBlobStore(this.capabilities);
    other.#data = this.#data;
    return other;
  }

  async stat(digest: string): Promise<{ size: number } | undefined> {
    await this.#io();
    const blob = this.#data.blobs.get(this.#digest(digest));
    return blob === undefined ? undefined : { size: blob.length };
  }

  async read(digest: string, range?: ByteRange): Promise<Readable> {
    await this.#io();
    const blob = this.#data.blobs.get(this.#digest(digest));
    if (blob === undefined) throw new NotFoundError(`blob ${digest} not found`, this.name);
    if (range === undefined) return chunked(blob);
    const { start, end } = range;
    // A range past the end would yield a short body under a Content-Length promising more.
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end >= blob.length) {
      throw new StoreError(`range ${start}-${end} outside blob ${digest} of ${blob.length} bytes`, this.name);
    }
    return chunked(blob.subarray(start, end + 1));
  }

  async delete(blobs: ReadonlyArray<{ digest: string }>): Promise<void> {
    await this.#io();
    for (const { digest } of blobs) {
      this.#data.blobs.delete(this.#digest(digest));
      this.#data.written.delete(`b:${digest}`);
    }
  }

  async *listBlobs(): AsyncGenerator<StoredBlob> {
    await this.#io();
    for (const [digest, content] of [...this.#data.blobs]) {
      yield { digest, size: content.length, modified: this.#data.written.get(`b:${digest}`) ?? 0 };
    }
  }

  async sweepUploads({ before, known }: SweepOptions): Promise<number> {
    await this.#io();
    const old = [...this.#data.uploads.keys()].filter((id) => (this.#data.written.get(`u:${id}`) ?? 0) < before);
    if (old.length === 0) return 0;
    const live = await known(old);
    let removed = 0;
    for (const id of old) {
      if (live.has(id) || !this.#data.uploads.delete(id)) continue;
      this.#data.written.delete(`u:${id}`);
      removed++;
    }
    return removed;
  }

  async createUpload(id: string): Promise<UploadState> {
    await this.#io();
    if (this.#data.uploads.has(this.#id(id))) throw new ConflictError(`upload ${id} already exists`, this.name);
    this.#data.uploads.set(id, []);
    this.#data.written.set(`u:${id}`, Date.now());
    return {};
  }

  async appendUpload(id: string, _state: UploadState, offset: number, body: Readable, _length?: number): Promise<AppendResult> {
    await this.#io();
    const chunks = this.#session(id);
    cut(chunks, offset, id, this.name);
    let written = 0;
    // Chunks land as they arrive: a failing body leaves them past `offset`, as in a file. A
    // session aborted meanwhile keeps taking bytes into its detached list (an unlinked file).
    for await (const chunk of body) {
      const bytes = Buffer.from(chunk as Uint8Array);
      chunks.push(bytes);
      written += bytes.length;
      this.#data.written.set(`u:${id}`, Date.now());
    }
    return { state: {}, written };
  }

  async commitUpload(id: string, _state: UploadState, size: number, digest: string, verify?: VerifyContent): Promise<void> {
    await this.#io();
    this.#digest(digest);
    const chunks = this.#session(id);
    cut(chunks, size, id, this.name);
    const content = Buffer.concat(chunks);
    if (verify !== undefined) {
      const stream = chunked(content);
      try {
        await verify(stream);
      } catch (error) {
        // As the fs store does: a rejected verify discards the session's bytes with it.
        this.#data.uploads.delete(id);
        throw error;
      } finally {
        stream.destroy();
      }
    }
    if (this.#data.uploads.get(id) !== chunks) throw new NotFoundError(`upload ${id} not found`, this.name);
    this.#data.uploads.delete(id);
    // Dedup: the same digest means the same bytes; the stored copy stays untouched.
    if (!this.#data.blobs.has(digest)) {
      this.#data.blobs.set(digest, content);
      this.#data.written.set(`b:${digest}`, Date.now());
    }
  }

  async abortUpload(id: string, _state: UploadState): Promise<void> {
    await this.#io();
    this.#data.uploads.delete(this.#id(id));
  }

  /** Answers like a usable backend; unavailable once closed. */
  async probe(): Promise<void> {
    await this.#io();
  }

  /**
   * The shared backend becomes unusable for this store and its replicas, as a lost volume would:
   * every call fails with UnavailableError until the returned function brings it back (for tests
   * of health checks and outage handling).
   */
  outage(): () => void {
    this.#data.down = true;
    return () => {
      this.#data.down = false;
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** Ids of the open upload sessions (for leak checks), sorted. */
  async listUploads(): Promise<string[]> {
    return [...this.#data.uploads.keys()].sort();
  }

  /** Copies of every blob and session, sorted by digest and id. */
  snapshot(): BlobStoreSnapshot {
    return {
      blobs: [...this.#data.blobs].sort(byKey).map(([digest, content]) => ({ digest, content: Buffer.from(content) })),
      uploads: [...this.#data.uploads].sort(byKey).map(([id, chunks]) => ({ id, content: Buffer.concat(chunks) })),
    };
  }

  /** Replace everything the store (and its replicas) holds with `snapshot`. */
  restore(snapshot: BlobStoreSnapshot): void {
    this.#data.blobs.clear();
    this.#data.uploads.clear();
    this.#data.written.clear();
    const now = Date.now();
    for (const { digest, content } of snapshot.blobs) {
      this.#data.blobs.set(digest, Buffer.from(content));
      this.#data.written.set(`b:${digest}`, now);
    }
    for (const { id, content } of snapshot.uploads) {
      this.#data.uploads.set(id, [Buffer.from(content)]);
      this.#data.written.set(`u:${id}`, now);
    }
  }

  /** Like real I/O, answer on a later turn of the event loop; a closed store is unavailable. */
  async #io(): Promise<void> {
    await yieldToLoop();
    if (this.#closed) throw new UnavailableError('store is closed', this.name);
    if (this.#data.down) throw new UnavailableError('backend unavailable', this.name);
  }

  #session(id: string): Buffer[] {
    const chunks = this.#data.uploads.get(this.#id(id));
    if (chunks === undefined) throw new NotFoundError(`upload ${id} not found`, this.name);
    return chunks;
  }

  #digest(digest: string): string {
    if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) {
      throw new StoreError(`invalid digest ${JSON.stringify(String(digest).slice(0, 200))}`, this.name);
    }
    return digest;
  }

  #id(id: string): string {
    if (typeof id !== 'string' || !UPLOAD_ID_RE.test(id)) {
      throw new StoreError(`invalid upload id ${JSON.stringify(String(id).slice(0, 200))}`, this.name);
    }
    return id;
  }
}

/** Make the session exactly `length` bytes, refusing to extend it (as FsBlobStore does). */
function cut(chunks: Buffer[], length: number, id: string, store: string): void {
  if (!Number.isSafeInteger(length) || length < 0) throw new StoreError(`invalid length ${length}`, store);
  const held = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  if (held < length) throw new IntegrityError(`upload ${id} holds ${held} bytes, expected at least ${length}`, store);
  if (held === length) return;
  const kept = Buffer.concat(chunks).subarray(0, length);
  chunks.length = 0;
  if (kept.length > 0) chunks.push(Buffer.from(kept));
}

/** A byte stream over `content` in file-sized pieces. */
function chunked(content: Buffer): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= content.length) {
        this.push(null);
        return;
      }
      const end = Math.min(at + READ_CHUNK, content.length);
      this.push(content.subarray(at, end));
      at = end;
    },
  });
}

function byKey<T>([a]: [string, T], [b]: [string, T]): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
