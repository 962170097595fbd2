import { LRUCache } from 'lru-cache';
import type { ManifestRecord, MetadataStore } from './ports/metadata-store.js';

export type CacheKind = 'tags' | 'manifests' | 'blobs';

const KINDS: Record<string, CacheKind> = { t: 'tags', m: 'manifests', b: 'blobs' };

export interface ReadCacheLimits {
  /** How long an entry may be served (ms); 0 disables the cache. */
  ttlMs: number;
  /** Bytes the entries may take in all (an estimate: manifest bytes count twice, for their parsed fields). */
  maxBytes: number;
  /** Manifests larger than this are never cached (each would push out hundreds of small ones). */
  maxManifestBytes: number;
}

type Value = string | ManifestRecord | { size: number };

/** Bookkeeping per entry (key, map node, timers), on top of what the value holds. */
const ENTRY_OVERHEAD = 200;

/**
 * In-process cache of the hot read path (tag → digest, digest → manifest, repository → blob
 * link), so a manifest GET by tag or a blob HEAD does not touch the database on every request.
 * Bounded in bytes (least recently used entries leave first); entries expire after `ttlMs` and
 * are then removed, not merely ignored. Misses are never cached, so anything just pushed (on any
 * replica) is visible at once. Writes through this process invalidate at once. Writes by another
 * replica: when the metadata store offers `changeVersion()`, a changed version empties the cache
 * before the next cached read, so no replica serves what another one deleted or moved; otherwise
 * entries live at most `ttlMs`.
 */
export class ReadCache {
  private readonly entries: LRUCache<string, Value> | undefined;
  /** Lookups answered from memory (hits) or loaded from the metadata store (misses), per kind. */
  readonly counts: Record<CacheKind, { hits: number; misses: number }> = {
    tags: { hits: 0, misses: 0 },
    manifests: { hits: 0, misses: 0 },
    blobs: { hits: 0, misses: 0 },
  };
  /** Keys of each repository's tag and manifest entries, for `invalidate`. */
  private readonly byRepository = new Map<string, Set<string>>();
  /** The metadata store's change version when the entries were loaded. */
  private version: number | undefined;

  constructor(
    private readonly metadata: MetadataStore,
    private readonly limits: ReadCacheLimits,
  ) {
    if (limits.ttlMs <= 0 || limits.maxBytes <= 0) return;
    this.entries = new LRUCache<string, Value>({
      maxSize: limits.maxBytes,
      sizeCalculation: (value, key) => ENTRY_OVERHEAD + key.length + sizeOf(value),
      ttl: limits.ttlMs,
      ttlAutopurge: true,
      noDisposeOnSet: true,
      dispose: (_value, key) => this.unindex(key),
    });
  }

  async resolveTag(repository: string, tag: string): Promise<string | undefined> {
    return this.cached(`t ${repository}:${tag}`, repository, () => this.metadata.resolveTag(repository, tag));
  }

  async getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    return this.cached(`m ${repository}@${digest}`, repository, () => this.metadata.getManifest(repository, digest));
  }

  /** A repository's link to a blob (blob HEAD and GET, the hottest read after manifests). */
  async getBlob(repository: string, digest: string): Promise<{ size: number } | undefined> {
    return this.cached(`b ${repository}@${digest}`, undefined, () => this.metadata.getBlob(repository, digest));
  }

  /** Forget a blob link (after this process unlinked it). */
  forgetBlob(repository: string, digest: string): void {
    this.entries?.delete(`b ${repository}@${digest}`);
  }

  /** Forget everything about `repository`'s tags and manifests (after any manifest or tag write to it). */
  invalidate(repository: string): void {
    const keys = this.byRepository.get(repository);
    if (!keys) return;
    this.byRepository.delete(repository);
    for (const key of keys) this.entries?.delete(key);
  }

  /** Bytes the entries take now (as estimated for `maxBytes`). */
  get size(): number {
    return this.entries?.calculatedSize ?? 0;
  }

  private async cached<T extends Value>(key: string, repository: string | undefined, load: () => Promise<T | undefined>) {
    const entries = this.entries;
    const counts = this.counts[KINDS[key[0]]];
    if (!entries) {
      counts.misses++;
      return load();
    }
    const version = this.followChanges(entries);
    const hit = entries.get(key) as T | undefined;
    if (hit !== undefined) {
      counts.hits++;
      return hit;
    }
    counts.misses++;
    const value = await load();
    // Loaded across a change (another request may have emptied the cache meanwhile): the value
    // may predate the change, so it is served but not kept.
    if (value === undefined || this.metadata.changeVersion?.() !== version || !this.fits(value)) return value;
    entries.set(key, value);
    if (repository !== undefined && entries.has(key)) {
      let keys = this.byRepository.get(repository);
      if (!keys) this.byRepository.set(repository, (keys = new Set()));
      keys.add(key);
    }
    return value;
  }

  private fits(value: Value): boolean {
    return !(typeof value === 'object' && 'content' in value && value.content.length > this.limits.maxManifestBytes);
  }

  private unindex(key: string): void {
    if (key[0] === 'b') return;
    // Repository names hold neither `:` nor `@`: the first one ends the name.
    const repository = key.slice(2, key.indexOf(key[0] === 't' ? ':' : '@'));
    const keys = this.byRepository.get(repository);
    if (!keys) return;
    keys.delete(key);
    if (keys.size === 0) this.byRepository.delete(repository);
  }

  /** Empty the cache if another process changed data since the entries were loaded; the current version. */
  private followChanges(entries: LRUCache<string, Value>): number | undefined {
    const version = this.metadata.changeVersion?.();
    if (version === this.version) return version;
    this.version = version;
    entries.clear();
    this.byRepository.clear();
    return version;
  }
}

function sizeOf(value: Value): number {
  if (typeof value === 'string') return value.length;
  if ('content' in value) return 2 * value.content.length;
  return 16;
}
