/**
 * The read side: where a digest's bytes are (its address, or the data object its pointer names),
 * cached because that mapping never changes while the blob exists, and the reads built on it.
 */
import type { Readable } from 'node:stream';
import { type ByteRange, NotFoundError } from '@berthjs/core';
import { LRUCache } from 'lru-cache';
import type { Bucket } from './bucket.js';
import type { KeyLayout, Location } from './keys.js';

/** Bytes of location cache: ~20,000 entries of a sha256 digest and a data key. */
const CACHE_BYTES = 4 * 1024 * 1024;
/** What one entry costs besides its strings (object, list node). */
const ENTRY_OVERHEAD = 100;

export class BlobReader {
  /** digest → location. A stale entry (a delete by another process) is caught by the failing GET. */
  private readonly locations = new LRUCache<string, Location>({
    maxSize: CACHE_BYTES,
    sizeCalculation: (location, digest) => digest.length + location.key.length + ENTRY_OVERHEAD,
  });

  constructor(
    private readonly bucket: Bucket,
    private readonly layout: KeyLayout,
    private readonly store: string,
  ) {}

  /** HEAD the digest's address: where its bytes are and how many, or undefined when absent. */
  async resolve(digest: string): Promise<Location | undefined> {
    const key = this.layout.blob(digest);
    const head = await this.bucket.head(key);
    if (!head) {
      this.locations.delete(digest);
      return undefined;
    }
    const location = this.layout.locate(key, head.metadata, head.size, digest);
    this.locations.set(digest, location);
    return location;
  }

  /** The cached location, else a fresh one. */
  async locate(digest: string): Promise<Location | undefined> {
    return this.locations.get(digest) ?? (await this.resolve(digest));
  }

  /** The cached location, if any, without touching its recency (for scans). */
  cached(digest: string): Location | undefined {
    return this.locations.peek(digest);
  }

  remember(digest: string, location: Location): void {
    this.locations.set(digest, location);
  }

  forget(digest: string): void {
    this.locations.delete(digest);
  }

  async stat(digest: string): Promise<{ size: number } | undefined> {
    const location = await this.resolve(digest);
    return location && { size: location.size };
  }

  async read(digest: string, range?: ByteRange): Promise<Readable> {
    for (let attempt = 0; ; attempt++) {
      const cached = this.locations.get(digest);
      const location = cached ?? (await this.resolve(digest));
      if (!location) throw new NotFoundError(`blob ${digest} not found`, this.store);
      try {
        return await this.bucket.get(location.key, httpRange(range, location.size, digest, this.store));
      } catch (error) {
        // A cached location can outlive a delete (or a delete + re-push) by another process.
        if (!(cached && attempt === 0 && error instanceof NotFoundError)) throw error;
        this.locations.delete(digest);
      }
    }
  }

  async redirectUrl(digest: string, options: { expiresInSeconds: number; range?: ByteRange }): Promise<string> {
    const location = await this.locate(digest);
    if (!location) throw new NotFoundError(`blob ${digest} not found`, this.store);
    // The range is signed as a header: the client must send this same Range, which it does when
    // following the redirect of its own ranged request.
    const range = options.range && httpRange(options.range, location.size, digest, this.store);
    return this.bucket.presignGet(location.key, options.expiresInSeconds, range);
  }
}

/** `Range` header for an inclusive range, validated against the blob's size. */
function httpRange(range: ByteRange | undefined, size: number, digest: string, store: string): string | undefined {
  if (!range) return undefined;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end >= size)
    throw new RangeError(`${store}: range ${start}-${end} is not satisfiable for blob ${digest} of ${size} bytes`);
  return `bytes=${start}-${end}`;
}
