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
  /** The repository's tenant (`tenantOf`, else `''`), whose usage and quota the upload counts against. */
  tenant: string;
  /** Bytes the session holds. */
  offset: number;
  /** The blob store's own state for this session. */
  state: UploadState;
  /** Hash algorithm announced at POST (`digest-algorithm`), if any. */
  algorithm?: string;
  /** Bytes of the tenant's quota this session holds (see reserveUpload); 0 without a quota. */
  reserved: number;
  /** Epoch milliseconds. */
  createdAt: number;
  updatedAt: number;
  /** Epoch ms until which a request holds the session (see claimUpload); 0 when free. */
  leaseUntil: number;
}

/** Stored bytes: blobs counted once each (per repository, or per tenant however many of its repositories link them). */
export interface UsageFigures {
  bytes: number;
  blobs: number;
}

export interface TenantUsage extends UsageFigures {
  /** Bytes reserved by uploads in progress (quotas). */
  reserved: number;
}

export interface RepositoryUsage extends UsageFigures {
  tenant: string;
}

/** A running figure that a recompute from scratch found different (and corrected). */
export interface UsageCorrection {
  scope: 'tenant' | 'repository';
  name: string;
  running: UsageFigures & { reserved?: number };
  recomputed: UsageFigures & { reserved?: number };
}

export interface UsageRecompute {
  tenants: number;
  repositories: number;
  corrections: UsageCorrection[];
}

/** Outcome of a quota reservation: refused with the tenant's figures, so the error can say them. */
export type Reservation = { granted: true } | { granted: false; usage: TenantUsage; needed: number };

/** Outcome of beginCommit. */
export type CommitStart =
  | { status: 'ready' }
  /** The digest's bytes are being deleted by a collection; `abandoned` when that collection no longer holds the `gc` lease. */
  | { status: 'deleting'; abandoned: boolean }
  | { status: 'over-quota'; usage: TenantUsage; needed: number };

/** A named lease (one collection, one sweep at a time across processes). */
export interface Lease {
  acquired: boolean;
  /** The current holder (us when acquired). */
  holder: string;
  until: number;
}

/** A manifest as garbage collection sees it: its edges, no content. */
export interface ManifestNode {
  digest: string;
  subject?: string;
  blobs: string[];
  children: string[];
  tagged: boolean;
  createdAt: number;
}

export interface LinkRecord {
  digest: string;
  size: number;
  /** Epoch ms of the last push or mount of the blob into the repository. */
  linkedAt: number;
}

export interface BlobRecord {
  digest: string;
  size: number;
}

/** A link garbage collection removed; `released` when the tenant no longer holds the blob at all. */
export interface UnlinkedBlob extends BlobRecord {
  released: boolean;
}

/**
 * Everything but bytes: repositories, blob links, manifests, tags, referrers, upload sessions,
 * usage, and the rows that make garbage collection safe. Every method is safe to call from
 * several processes sharing the same database.
 *
 * Safety rule (what garbage collection relies on; each write re-checks inside one transaction):
 * a link exists only while its blob is live; a manifest's references are stored only while the
 * repository links every blob and child manifest they name; an upload being committed pins its
 * digest; and a blob's bytes are marked for deletion only when no link, no manifest reference and
 * no committing upload names it. So once `putManifest` has stored a manifest, none of its blobs
 * can be collected, and deleting a digest's bytes never races a commit of the same digest.
 */
export interface MetadataStore {
  /** Short name for logs and errors, e.g. `sqlite`, `postgres`. */
  readonly name: string;

  // Repositories exist while anything (a blob link or a manifest) is in them; the last one to go takes the repository along.
  repositoryExists(repository: string): Promise<boolean>;
  /** Repository names in byte order. */
  listRepositories(page?: Page): Promise<string[]>;

  // Blobs: stored once globally; a repository sees a blob only through a link.
  /** The linked blob's size, or undefined when the repository has no link to it. */
  getBlob(repository: string, digest: string): Promise<{ size: number } | undefined>;
  /** Remove the link; false when there was none. */
  unlinkBlob(repository: string, digest: string): Promise<boolean>;
  /** Repositories linking `digest`, in byte order (for cross-repo mount without `from`). */
  listBlobRepositories(digest: string, page?: Page): Promise<string[]>;
  /**
   * Link `digest` into `to` if `from` links it and its bytes are not being deleted, in one
   * transaction; `to` is created with `tenant` if new. Undefined (nothing linked) otherwise.
   */
  mountBlob(from: string, to: string, digest: string, tenant: string): Promise<{ size: number } | undefined>;

  // Manifests and tags.
  /**
   * Store a manifest (idempotent for the same digest) and point `tags` at it, atomically, if the
   * repository links every blob in `manifest.blobs` and holds every manifest in
   * `manifest.children`; otherwise store nothing and return the digests that are missing.
   * Creates the repository (with `tenant`) if needed.
   */
  putManifest(manifest: ManifestRecord, tags: string[], tenant: string): Promise<string[]>;
  getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined>;
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
  createUpload(upload: Pick<UploadRecord, 'id' | 'repository' | 'tenant' | 'state' | 'algorithm'>): Promise<void>;
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
  /** Drop the session, releasing its reservation and its pin; false when it did not exist. */
  deleteUpload(id: string): Promise<boolean>;
  /** Sessions not updated since `updatedBefore` (epoch ms), for the sweeper. */
  listStaleUploads(updatedBefore: number, limit: number): Promise<UploadRecord[]>;
  /**
   * Reserve quota so that the session holds `total` bytes of it (no-op if it holds that much
   * already), refused when the tenant's usage plus reservations would pass `limit`. With `digest`
   * (known before the bytes arrive), a blob the tenant already holds needs no reservation.
   */
  reserveUpload(id: string, total: number, limit: number, digest?: string): Promise<Reservation>;
  /**
   * First step of committing a session as `digest`: pin the digest (its bytes cannot be deleted
   * until finishCommit or deleteUpload), unless a collection is deleting them. With `limit`, turn
   * the session's reservation into exactly what the blob costs the tenant (nothing if it holds
   * the blob already), or refuse.
   */
  beginCommit(id: string, digest: string, size: number, limit?: number): Promise<CommitStart>;
  /**
   * After the bytes are stored under `digest`: link them into the session's repository (creating
   * it), count the usage, release the reservation and drop the session, in one transaction.
   */
  finishCommit(id: string, digest: string, size: number): Promise<void>;

  // Usage, kept current by every link, unlink and collection.
  tenantUsage(tenant: string): Promise<TenantUsage>;
  /** Undefined for a repository that does not exist. */
  repositoryUsage(repository: string): Promise<RepositoryUsage | undefined>;
  /** Tenants with any usage or reservation, in byte order; `page.last` is a tenant. */
  listTenants(page?: Page): Promise<Array<TenantUsage & { tenant: string }>>;
  /**
   * Recompute every figure from the links and sessions, correct what differs, report it. With
   * `tenantOf`, first move repositories whose stored tenant differs from what it says now.
   */
  recomputeUsage(options?: {
    tenantOf?: (repository: string) => string;
    onProgress?: (done: number, total: number) => void;
  }): Promise<UsageRecompute>;

  // Garbage collection. The core decides what is unreachable; each method below re-checks its
  // own conditions inside one transaction, so a push racing it either wins or fails cleanly.
  /** Take or renew the named lease for `ttlMs`; refused while another holder's lease runs. */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease>;
  releaseLease(name: string, holder: string): Promise<void>;
  /** The manifests of a repository with their edges, ordered by digest; `page.last` is a digest. */
  listManifestNodes(repository: string, page?: Page): Promise<ManifestNode[]>;
  /** The repository's blob links, ordered by digest; `page.last` is a digest. */
  listLinks(repository: string, page?: Page): Promise<LinkRecord[]>;
  /**
   * Delete the manifest if, now, no tag points at it, no index of the repository lists it, its
   * subject (if any) is not in the repository, and it was pushed before `cutoff` (epoch ms).
   */
  deleteUnreachableManifest(repository: string, digest: string, cutoff: number): Promise<boolean>;
  /** Delete those links that, now, no manifest of the repository references and were linked before `cutoff`. */
  deleteUnreferencedLinks(repository: string, digests: string[], cutoff: number): Promise<UnlinkedBlob[]>;
  /**
   * Blobs whose bytes may go, ordered by digest: those left marked by an earlier collection, and
   * live ones with no link, no manifest reference and no committing upload, touched before `cutoff`.
   */
  listCollectableBlobs(cutoff: number, page?: Page): Promise<BlobRecord[]>;
  /**
   * Mark blobs for deletion by `run` (the holder of the `gc` lease), re-checking each as
   * listCollectableBlobs does; a digest with no row at all (bytes no row knows of, whose age the
   * caller checked) is marked too, with the given size. Returns the marked ones.
   */
  markBlobsDeleting(blobs: Array<{ digest: string; size?: number }>, run: string, cutoff: number): Promise<BlobRecord[]>;
  /** The digests among `digests` that have no blob row at all (bytes in the blob store that no metadata knows of). */
  unknownBlobs(digests: string[]): Promise<string[]>;
  /** Drop the rows of marked blobs once their bytes are gone. */
  forgetBlobs(digests: string[]): Promise<void>;

  /**
   * Optional, for the core's in-process read cache: a number that changes whenever another
   * process (replica) may have deleted a blob link, moved or deleted a tag or deleted a manifest
   * since it last changed. Called synchronously before every cached read, so it must be cheap.
   * With it, replicas never serve each other's deleted or moved data from their caches; without
   * it, cached entries live `readCacheTtlMs`.
   */
  changeVersion?(): number;

  /**
   * A cheap round trip to the backend (e.g. `select 1`), for readiness probes
   * (`registry.health()`). Rejects with an error naming the problem.
   */
  probe(): Promise<void>;

  close(): Promise<void>;
}
