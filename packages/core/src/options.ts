import type { AuthHooks } from './auth.js';
import type { BlobStore } from './ports/blob-store.js';
import type { MetadataStore } from './ports/metadata-store.js';

export interface RegistryOptions extends AuthHooks {
  /** Where blob bytes live (fs, S3...). */
  blobs: BlobStore;
  /** Where everything else lives (SQLite, Postgres...). */
  metadata: MetadataStore;
  /** Largest manifest accepted, in bytes; larger pushes get 413. Default 4 MiB (the spec asks for at least 4 MB). */
  maxManifestBytes?: number;
  /** Accept pushes (uploads, manifest PUTs, mounts). Default true; false answers 405 UNSUPPORTED. */
  push?: boolean;
  /** Accept DELETE of manifests, tags and blobs. Default true; false answers 405 UNSUPPORTED. */
  delete?: boolean;
  /** Serve the referrers API. Default true. */
  referrers?: boolean;
  /** Mount a blob on `POST ?mount=` without `from` when the caller may pull a repository that has it. Default true. */
  automaticCrossMount?: boolean;
  /** Largest page of tags, repositories or referrers per response; longer lists get a `Link`. Default 1000. */
  maxPageSize?: number;
  /**
   * Most repositories one `_catalog` request checks with `authorize` (or `n`, when larger) before
   * it answers the names found so far with a `Link` to continue; bounds a catalog request's cost
   * when `authorize` hides most repositories. Callers whose repositories `pullableRepositories`
   * names are checked only against those. Default 1000.
   */
  catalogScanLimit?: number;
  /** How long one request may hold an upload session before another may take it over (ms). Renewed while streaming. Default 60 s. */
  uploadLeaseMs?: number;
  /** Upload sessions untouched for this long are aborted by `sweepUploads()`. Default 24 h. */
  uploadTtlMs?: number;
  /**
   * The tenant's storage quota in bytes (`tenantOf` names tenants; without it the whole registry
   * is tenant `''`), or undefined for none. Sync or async, asked before an upload accepts bytes. A push
   * that would take the tenant's usage (each blob counted once) past it answers 403 `DENIED`
   * with usage and limit, and leaves nothing behind. Default: no quotas.
   */
  quotaOf?: (tenant: string) => number | undefined | Promise<number | undefined>;
  /**
   * How long a garbage collection holds its lease (ms), renewed while it runs: how long a
   * collection that was killed keeps the next one from starting. Default 60 s.
   */
  gcLeaseMs?: number;
  /** Redirect blob GETs to the store's presigned URLs when it supports them. Default false. */
  redirectBlobs?: boolean;
  /** Largest number of `?tag=` values on one manifest PUT. Default 100. */
  maxTagsPerPush?: number;
  /**
   * How long this process may serve a tag, a manifest or a blob link from memory (ms). Writes
   * through the same process invalidate at once, and so do another replica's tag moves and
   * deletes when the metadata store offers `changeVersion()`; without it they show within this
   * window. Default 1000; 0 disables.
   */
  readCacheTtlMs?: number;
}

export type ResolvedOptions = Required<Omit<RegistryOptions, keyof AuthHooks>> & AuthHooks;

export function resolveOptions(options: RegistryOptions): ResolvedOptions {
  if (!options.blobs) throw new TypeError('berth: options.blobs (a BlobStore) is required');
  if (!options.metadata) throw new TypeError('berth: options.metadata (a MetadataStore) is required');
  return {
    maxManifestBytes: 4 * 1024 * 1024,
    push: true,
    delete: true,
    referrers: true,
    automaticCrossMount: true,
    maxPageSize: 1000,
    catalogScanLimit: 1000,
    uploadLeaseMs: 60_000,
    uploadTtlMs: 24 * 60 * 60 * 1000,
    gcLeaseMs: 60_000,
    quotaOf: () => undefined,
    redirectBlobs: false,
    maxTagsPerPush: 100,
    readCacheTtlMs: 1000,
    ...stripUndefined(options),
  } as ResolvedOptions;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
