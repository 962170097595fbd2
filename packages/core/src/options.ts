import type { AuthHooks, Principal } from './auth.js';
import type { Logger } from './observe.js';
import { defaultPrincipalName } from './observe.js';
import type { RateLimit } from './rate-limit.js';
import { DEFAULT_MANIFEST_LIMITS } from './manifest.js';
import type { BlobStore } from './ports/blob-store.js';
import type { MetadataStore } from './ports/metadata-store.js';

const MiB = 1024 * 1024;

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
  /** Memory the read cache may use in all, in bytes; least recently used entries leave first. Default 32 MiB. */
  readCacheMaxBytes?: number;
  /** Manifests larger than this (bytes) are never kept in the read cache. Default 256 KiB. */
  readCacheMaxManifestBytes?: number;
  /**
   * Manifest bytes all requests together may hold in memory at once: PUT bodies being read and
   * checked, and GET responses of manifests over 64 KiB until they are sent. A request that does not fit
   * gets 429 TOOMANYREQUESTS with Retry-After. Default 16 × `maxManifestBytes` (64 MiB); at least `maxManifestBytes`.
   */
  manifestMemoryBytes?: number;
  /** Deepest nesting of arrays and objects in a pushed manifest; deeper gets 400 MANIFEST_INVALID, checked before parsing. Default 64. */
  maxManifestDepth?: number;
  /** Most arrays, objects, and items and members inside them in a pushed manifest; more gets 400 MANIFEST_INVALID. Default 200,000. */
  maxManifestElements?: number;
  /**
   * A request body that sends no byte for this long (ms) is ended: 408, the connection closed, and
   * an upload session's lease freed (the session stays at its last good offset). Default 60 s; 0 disables.
   */
  bodyIdleTimeoutMs?: number;
  /**
   * A request body must also average this many bytes per second over each `bodyIdleTimeoutMs`
   * window, or it is ended the same way (a byte every few seconds would otherwise hold a
   * connection and an upload lease forever). Default 256; 0: any byte per window will do.
   */
  bodyMinBytesPerSecond?: number;
  /**
   * A response body the client reads nothing of for this long (ms) is ended and its connection
   * closed: a download nobody reads would hold its file or S3 stream, its socket and (for a
   * large manifest) `manifestMemoryBytes` forever. Enforced by the adapters' Node writer
   * (`writeResponse`). Default 60 s; 0 disables.
   */
  sendIdleTimeoutMs?: number;
  /** Upload requests (PATCH, PUT, monolithic POST) this process streams at once; more get 429 TOOMANYREQUESTS with Retry-After. Default 128. */
  maxConcurrentUploads?: number;
  /**
   * Where to log: pino, or anything with its `debug`/`info`/`warn`/`error` methods. With it,
   * every request gets one line (`info`, or `error` with `err` for a 5xx) with its request id,
   * method, route, repository, status, bytes in and out, duration, principal name and client
   * address. Default: no logging.
   */
  logger?: Logger;
  /**
   * Take the client's address from `X-Forwarded-For`, as written by the proxies in front: `true`
   * for one proxy (the address it saw, the header's last entry), a number for that many. Default
   * false: the socket's address (`BerthRequest.remoteAddress`).
   */
  trustProxy?: boolean | number;
  /** The name logs, facts and the rate limiter use for a principal. Default: a string principal, else its `username`, `subject`, `name` or `sub`. */
  principalName?: (principal: Principal) => string | undefined;
  /**
   * Asked before every `/v2` request is served, once the caller is known (or its credentials
   * failed); a number refuses it with 429 `TOOMANYREQUESTS` and that `Retry-After`. See
   * `tokenBucket` for the built-in. Default: no limit.
   */
  rateLimit?: RateLimit;
  /** How long `health()` waits for each store's probe (ms). Default 2000. */
  healthTimeoutMs?: number;
}

type OptionalHooks = 'logger' | 'rateLimit';
export type ResolvedOptions = Required<Omit<RegistryOptions, keyof AuthHooks | OptionalHooks>> &
  AuthHooks &
  Pick<RegistryOptions, OptionalHooks>;

export function resolveOptions(options: RegistryOptions): ResolvedOptions {
  if (!options.blobs) throw new TypeError('berth: options.blobs (a BlobStore) is required');
  if (!options.metadata) throw new TypeError('berth: options.metadata (a MetadataStore) is required');
  const resolved = {
    maxManifestBytes: 4 * MiB,
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
    readCacheMaxBytes: 32 * MiB,
    readCacheMaxManifestBytes: 256 * 1024,
    maxManifestDepth: DEFAULT_MANIFEST_LIMITS.maxDepth,
    maxManifestElements: DEFAULT_MANIFEST_LIMITS.maxElements,
    bodyIdleTimeoutMs: 60_000,
    bodyMinBytesPerSecond: 256,
    sendIdleTimeoutMs: 60_000,
    maxConcurrentUploads: 128,
    trustProxy: false,
    principalName: defaultPrincipalName,
    healthTimeoutMs: 2000,
    ...stripUndefined(options),
  } as ResolvedOptions;
  resolved.manifestMemoryBytes ??= 16 * resolved.maxManifestBytes;
  if (resolved.manifestMemoryBytes < resolved.maxManifestBytes) {
    throw new TypeError(
      'berth: options.manifestMemoryBytes must be at least maxManifestBytes (or no manifest of the largest size could be pushed)',
    );
  }
  return resolved;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
