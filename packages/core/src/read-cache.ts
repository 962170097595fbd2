import type { ManifestRecord, MetadataStore } from './ports/metadata-store.js';

interface Entry<T> {
  value: T;
  expires: number;
}

/**
 * In-process cache of the hot read path (tag → digest, digest → manifest, repository → blob
 * link), so a manifest GET by tag or a blob HEAD does not touch the database on every request.
 * Writes through this process invalidate at once; writes made by another replica show after at
 * most `ttlMs` (the price of keeping the database off the hot path; set 0 to disable). Misses are
 * never cached, so anything just pushed (on any replica) is visible at once.
 */
export class ReadCache {
  private readonly tags = new Map<string, Entry<string>>();
  private readonly manifests = new Map<string, Entry<ManifestRecord>>();
  private readonly blobs = new Map<string, Entry<{ size: number }>>();

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
    const now = Date.now();
    const hit = map.get(key);
    if (hit && hit.expires > now) return hit.value;
    const value = await load();
    if (value === undefined || this.ttlMs <= 0) {
      map.delete(key);
      return value;
    }
    if (map.size >= this.maxEntries) map.delete(map.keys().next().value as string);
    map.set(key, { value, expires: now + this.ttlMs });
    return value;
  }
}
