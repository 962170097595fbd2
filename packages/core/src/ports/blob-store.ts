import type { Readable } from 'node:stream';

/** An inclusive byte range, as in HTTP: `start` and `end` are both byte offsets inside the blob. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Bytes of an open file: what a file-range body can be sent as instead of being read. */
export interface FileSpan {
  /** The open file's descriptor: valid until the body ends or is destroyed. */
  fd: number;
  /** Offset of the first byte in the file. */
  start: number;
  /** Bytes in the span. */
  length: number;
}

/**
 * What a file-range body offers its writer: to take the bytes as a span of an open file (to send
 * them with sendfile(2)) instead of reading them through the stream.
 */
export interface FileRange {
  /**
   * Take the body as a span of its file. Undefined when it cannot be (the stream was read from
   * already, the file is not as long as the range): stream it then. Once taken, the stream reads
   * nothing until `sent` or `release`; destroying it still closes the file.
   */
  take(): FileSpan | undefined;
  /** Every byte of the span went out: the stream ends (and closes its file) as if it had been read. */
  sent(): void;
  /** Nothing of the span went out after all: the stream can be read as usual. */
  release(): void;
}

/**
 * A blob body that is both a stream of the bytes (what every consumer may read) and a range of a
 * file (what a Node writer may hand to sendfile(2); see `writeResponse`). The core passes it
 * through untouched into `BerthResponse.body`.
 */
export interface FileRangeBody extends Readable {
  readonly fileRange: FileRange;
}

/** Whether a response body is also a file range. */
export function isFileRangeBody(body: unknown): body is FileRangeBody {
  const range = (body as { fileRange?: Partial<FileRange> } | undefined)?.fileRange;
  return typeof range?.take === 'function' && typeof range.sent === 'function' && typeof range.release === 'function';
}

/**
 * Driver-owned state of an upload session: JSON-serializable, persisted by the core in the
 * metadata store after every successful call, handed back on the next call (possibly on another
 * process). Keep it small: the fs store needs nothing, S3 keeps its UploadId and part ETags.
 */
export type UploadState = { [key: string]: unknown };

export interface BlobStoreCapabilities {
  /** Smallest chunk the store handles without extra copying; advertised as `OCI-Chunk-Min-Length`. */
  minChunkLength?: number;
  /** The store can answer `redirectUrl` with a presigned URL. */
  redirect?: boolean;
}

export interface AppendResult {
  /** New driver state to persist. */
  state: UploadState;
  /** Bytes taken from `body` (the caller checks it against Content-Length / Content-Range). */
  written: number;
}

/**
 * Called by `commitUpload` when the core could not hash the upload while it streamed in (the
 * session moved between processes). The store passes a stream of the whole upload *before* the
 * data becomes readable under the digest; `verify` rejects with an error if it does not match,
 * in which case the store must leave no blob behind.
 */
export type VerifyContent = (content: Readable) => Promise<void>;

/** A blob as a listing of the store finds it. */
export interface StoredBlob {
  digest: string;
  /** Undefined when the listing cannot tell (then `stat` can). */
  size?: number;
  /** Epoch ms of the last write. */
  modified: number;
}

/** What `sweepUploads` may remove: leftovers of sessions the metadata store does not know. */
export interface SweepOptions {
  /** Only leftovers last written before this (epoch ms). */
  before: number;
  /** Of these session ids, the ones the metadata store still holds. */
  known(ids: string[]): Promise<Set<string>>;
}

/**
 * Bytes only, addressed by digest (`sha256:<hex>`). Which repository may see a blob is the
 * metadata store's business; a BlobStore stores each digest once.
 *
 * Digests reaching a store are already validated by the core (`store-guard.ts`), but a store
 * must still never build a path or key that escapes its root from its inputs.
 */
export interface BlobStore {
  /** Short name for logs and errors, e.g. `fs`, `s3`. */
  readonly name: string;
  readonly capabilities: BlobStoreCapabilities;

  /** Size of a stored blob, or undefined when absent. */
  stat(digest: string): Promise<{ size: number } | undefined>;
  /**
   * Stream a blob or an inclusive range of it. Throws NotFoundError when absent. A store whose
   * bytes are in local files may return a FileRangeBody, so that plain-HTTP downloads skip the copy.
   */
  read(digest: string, range?: ByteRange): Promise<Readable | FileRangeBody>;
  /**
   * Remove blobs, in batches where the backend has them. Absent blobs are not an error; a call
   * interrupted midway may be repeated. `size`, when given, is the blob's true size (the store
   * may use it to skip a lookup). Only garbage collection calls this, after the metadata store
   * marked each blob for deletion.
   */
  delete(blobs: ReadonlyArray<{ digest: string; size?: number }>): Promise<void>;
  /** Every stored blob, in no particular order (garbage collection looks for bytes no metadata knows). */
  listBlobs(): AsyncIterable<StoredBlob>;
  /** A short-lived URL from which a client can download the blob directly, if supported. */
  redirectUrl?(digest: string, options: { expiresInSeconds: number; range?: ByteRange }): Promise<string | undefined>;

  /** Open an upload session with a caller-chosen id (a UUID). */
  createUpload(id: string): Promise<UploadState>;
  /**
   * Append `body` at `offset` (the number of bytes the session already holds, as the metadata
   * store last recorded it). Anything the store holds past `offset` (a write that failed or a
   * process that died mid-request) is discarded first. `length` is the expected size when known.
   * `last`: the session is committed right after this append and takes no more (a closing PUT
   * with a body), so the store may keep these bytes in a form that cannot grow (S3: one PutObject
   * instead of parts); a failed commit leaves the session where it stood before this append.
   */
  appendUpload(id: string, state: UploadState, offset: number, body: Readable, length?: number, last?: boolean): Promise<AppendResult>;
  /**
   * Make the `size` bytes of the session readable under `digest` and drop the session. When the
   * blob already exists the session data is simply discarded (dedup). `verify`, when given, must
   * accept the whole content before it becomes visible (see VerifyContent).
   */
  commitUpload(id: string, state: UploadState, size: number, digest: string, verify?: VerifyContent): Promise<void>;
  /** Drop the session and everything it stored. Unknown sessions are not an error. */
  abortUpload(id: string, state: UploadState): Promise<void>;
  /**
   * Remove what upload sessions left behind that no session knows of (temp files, staging
   * objects, multipart uploads: a process killed between creating them and recording the
   * session; bytes a commit stored but never made readable under a digest). Never what a commit
   * in progress is about to make readable: its session is known until `finishCommit`. Returns
   * how many leftovers were removed.
   */
  sweepUploads(options: SweepOptions): Promise<number>;
  /**
   * A cheap check that the store can serve now (the blob directory exists and takes a write; the
   * bucket answers), for readiness probes (`registry.health()`). Rejects with an error naming
   * the problem. Called every few seconds: it must not leave anything behind.
   */
  probe(): Promise<void>;
  /** Release connections, timers. */
  close?(): Promise<void>;
}
