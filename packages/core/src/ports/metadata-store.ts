import type { UploadState } from './blob-store.js';

/** Pagination of a sorted listing: items strictly after `last`, at most `limit` of them. */
export interface Page {
  limit?: number;
  last?: string;
}

export interface ManifestRecord {
  repository: string;
  digest: string;
  /** The media type the manifest was pushed with (Content-Type, else its `mediaType` field). */
  mediaType: string;
  /** The exact bytes as pushed; never re-serialized. */
  content: Buffer;
  /** `subject.digest`, for the referrers API. */
  subject?: string;
  /** `artifactType`, else `config.mediaType` for an image manifest; absent for an index without one. */
  artifactType?: string;
  /** Top-level annotations, copied to referrer descriptors. */
  annotations?: Record<string, string>;
  /** Blob digests this manifest references (config, layers), for garbage collection. */
  blobs: string[];
  /** Manifest digests this index references, for garbage collection. */
  children: string[];
}

export interface ReferrerRecord {
  digest: string;
  mediaType: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface UploadRecord {
  id: string;
  repository: string;
  /** Bytes the session holds. */
  offset: number;
  /** The blob store's own state for this session. */
  state: UploadState;
  /** Hash algorithm announced at POST (`digest-algorithm`), if any. */
  algorithm?: string;
  /** Epoch milliseconds. */
  createdAt: number;
  updatedAt: number;
  /** Epoch ms until which a request holds the session (see claimUpload); 0 when free. */
  leaseUntil: number;
}

/**
 * Everything but bytes: repositories, blob links, manifests, tags, referrers and upload sessions.
 * Every method is safe to call from several processes sharing the same database.
 */
export interface MetadataStore {
  /** Short name for logs and errors, e.g. `sqlite`, `postgres`. */
  readonly name: string;

  // Repositories exist once anything (a blob link or a manifest) was pushed to them.
  repositoryExists(repository: string): Promise<boolean>;
  /** Repository names in byte order. */
  listRepositories(page?: Page): Promise<string[]>;

  // Blobs: stored once globally; a repository sees a blob only through a link.
  /** Record that `repository` may see `digest` (creating the repository if needed). Idempotent. */
  linkBlob(repository: string, digest: string, size: number): Promise<void>;
  /** The linked blob's size, or undefined when the repository has no link to it. */
  getBlob(repository: string, digest: string): Promise<{ size: number } | undefined>;
  /** Remove the link; false when there was none. */
  unlinkBlob(repository: string, digest: string): Promise<boolean>;
  /** Repositories linking `digest`, in byte order (for cross-repo mount without `from`). */
  listBlobRepositories(digest: string, page?: Page): Promise<string[]>;
  /** The digests among `digests` that `repository` has no link to. */
  missingBlobs(repository: string, digests: string[]): Promise<string[]>;
  /** Whether any repository still links the blob (for deleting unreferenced bytes). */
  isBlobLinked(digest: string): Promise<boolean>;

  // Manifests and tags.
  /**
   * Store a manifest (idempotent for the same digest) and point `tags` at it, atomically.
   * Linking a repository to the manifest creates the repository.
   */
  putManifest(manifest: ManifestRecord, tags: string[]): Promise<void>;
  getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined>;
  /** The digests among `digests` that are not manifests of `repository`. */
  missingManifests(repository: string, digests: string[]): Promise<string[]>;
  /** Delete the manifest and every tag pointing at it; false when it did not exist. */
  deleteManifest(repository: string, digest: string): Promise<boolean>;
  resolveTag(repository: string, tag: string): Promise<string | undefined>;
  /** Remove only the tag (the pointer); false when it did not exist. */
  deleteTag(repository: string, tag: string): Promise<boolean>;
  /** Tag names in byte order. */
  listTags(repository: string, page?: Page): Promise<string[]>;
  /** Manifests of `repository` whose subject is `subject`, ordered by digest; `page.last` is a digest. */
  listReferrers(repository: string, subject: string, filter?: { artifactType?: string }, page?: Page): Promise<ReferrerRecord[]>;

  // Upload sessions, shared by every process.
  createUpload(upload: Pick<UploadRecord, 'id' | 'repository' | 'state' | 'algorithm'>): Promise<void>;
  getUpload(id: string): Promise<UploadRecord | undefined>;
  /**
   * Take the session for one request: succeeds only if it exists, holds exactly `offset` bytes and
   * no other request holds an unexpired lease. Compare-and-set, so of two concurrent callers at
   * most one wins. `token` identifies the holder for advance/renew/release.
   */
  claimUpload(id: string, offset: number, token: string, leaseUntil: number): Promise<boolean>;
  /** Extend a held lease; false if the lease is no longer ours. */
  renewUpload(id: string, token: string, leaseUntil: number): Promise<boolean>;
  /** Record new progress and free the lease; false if the lease is no longer ours. */
  advanceUpload(id: string, token: string, offset: number, state: UploadState): Promise<boolean>;
  /** Free the lease without progress (the request failed). */
  releaseUpload(id: string, token: string): Promise<void>;
  deleteUpload(id: string): Promise<boolean>;
  /** Sessions not updated since `updatedBefore` (epoch ms), for the sweeper. */
  listStaleUploads(updatedBefore: number, limit: number): Promise<UploadRecord[]>;

  /**
   * Optional, for the core's in-process read cache: a number that changes whenever another
   * process (replica) may have deleted a blob link, moved or deleted a tag or deleted a manifest
   * since it last changed. Called synchronously before every cached read, so it must be cheap.
   * With it, replicas never serve each other's deleted or moved data from their caches; without
   * it, cached entries live `readCacheTtlMs`.
   */
  changeVersion?(): number;

  close(): Promise<void>;
}
