import type { ManifestRecord, MetadataStore } from './ports/metadata-store.js';

interface Entry<T> {
  value: T;
  expires: number;
}

/**
 * In-process cache of the hot read path (tag → digest, digest → manifest, repository → blob
 * link), so a manifest GET by tag or a blob HEAD does not touch the database on every request.
 * Misses are never cached, so anything just pushed (on any replica) is visible at once. Writes
 * through this process invalidate at once. Writes by another replica: when the metadata store
 * offers `changeVersion()`, a changed version empties the cache before the next cached read, so
 * no replica serves what another one deleted or moved; otherwise entries live at most `ttlMs`
 * (set 0 to disable caching).
 */
export class ReadCache {
  private readonly tags = new Map<string, Entry<string>>();
  private readonly manifests = new Map<string, Entry<ManifestRecord>>();
  private readonly blobs = new Map<string, Entry<{ size: number }>>();
  /** The metadata store's change version when the entries were loaded. */
  private version: number | undefined;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly ttlMs: number,
    private readonly maxEntries = 10_000,
  ) {}

  async resolveTag(repository: string, tag: string): Promise<string | undefined> {
    return this.cached(this.tags, `${repository}:${tag}`, () => this.metadata.resolveTag(repository, tag));
  }

  async getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    return this.cached(this.manifests, `${repository}@${digest}`, () => this.metadata.getManifest(repository, digest));
  }

  /** A repository's link to a blob (blob HEAD and GET, the hottest read after manifests). */
  async getBlob(repository: string, digest: string): Promise<{ size: number } | undefined> {
    return this.cached(this.blobs, `${repository}@${digest}`, () => this.metadata.getBlob(repository, digest));
  }

  /** Forget a blob link (after this process unlinked it). */
  forgetBlob(repository: string, digest: string): void {
    this.blobs.delete(`${repository}@${digest}`);
  }

  /** Forget everything about `repository` (after any manifest or tag write to it). */
  invalidate(repository: string): void {
    for (const map of [this.tags, this.manifests] as Map<string, unknown>[]) {
      for (const key of map.keys()) {
        if (key.startsWith(repository) && (key[repository.length] === ':' || key[repository.length] === '@')) map.delete(key);
      }
    }
  }

  private async cached<T>(map: Map<string, Entry<T>>, key: string, load: () => Promise<T | undefined>): Promise<T | undefined> {
    const version = this.followChanges();
    const now = Date.now();
    const hit = map.get(key);
    if (hit && hit.expires > now) return hit.value;
    const value = await load();
    // Loaded across a change (another request may have emptied the cache meanwhile): the value
    // may predate the change, so it is served but not kept.
    if (value === undefined || this.ttlMs <= 0 || this.metadata.changeVersion?.() !== version) {
      map.delete(key);
      return value;
    }
    if (map.size >= this.maxEntries) map.delete(map.keys().next().value as string);
    map.set(key, { value, expires: now + this.ttlMs });
    return value;
  }

  /** Empty the cache if another process changed data since the entries were loaded; the current version. */
  private followChanges(): number | undefined {
    const version = this.metadata.changeVersion?.();
    if (version === this.version) return version;
    this.version = version;
    this.tags.clear();
    this.manifests.clear();
    this.blobs.clear();
    return version;
  }
}
