/**
 * Garbage collection's side of the store: deleting blobs in batches and listing them.
 *
 * Deletion order: data objects first, then the addresses (pointers and inline blobs). The core
 * only deletes blobs the metadata store marked for deletion, which nothing links or reads any
 * more, and it repeats a deletion that was cut short; so a crash in between leaves a pointer
 * whose data is gone, and the repeat finds the pointer, deletes its data key (already absent)
 * and then the pointer. The other order could strand a data object that nothing names.
 */
import type { StoredBlob } from '@berthjs/core';
import type { Bucket } from './bucket.js';
import type { KeyLayout } from './keys.js';
import { MIN_PART_SIZE } from './multipart.js';
import type { BlobReader } from './reads.js';

/** HEADs in flight while resolving pointers. */
const RESOLVE_CONCURRENCY = 16;

export async function deleteBlobs(
  bucket: Bucket,
  layout: KeyLayout,
  reader: BlobReader,
  blobs: ReadonlyArray<{ digest: string; size?: number }>,
): Promise<void> {
  const addresses = blobs.map((b) => layout.blob(b.digest));
  const dataKeys: string[] = [];
  // A blob below S3's smallest part never filled one, so it is stored inline at its address:
  // no HEAD needed. Anything else may be a pointer, whose data object must go too.
  const unknown = blobs.filter((b) => b.size === undefined || b.size >= MIN_PART_SIZE);
  for (let i = 0; i < unknown.length; i += RESOLVE_CONCURRENCY) {
    const located = await Promise.all(unknown.slice(i, i + RESOLVE_CONCURRENCY).map((b) => reader.resolve(b.digest)));
    unknown.slice(i, i + RESOLVE_CONCURRENCY).forEach((b, j) => {
      const location = located[j];
      if (location && location.key !== layout.blob(b.digest)) dataKeys.push(location.key);
    });
  }
  for (const b of blobs) reader.forget(b.digest);
  await bucket.deleteMany(dataKeys);
  await bucket.deleteMany(addresses);
}

/** Every object under `blobs/` that is a digest's address. A 0-byte object may be a pointer: its size is left to `stat`. */
export async function* listBlobs(bucket: Bucket, layout: KeyLayout): AsyncGenerator<StoredBlob> {
  for await (const object of bucket.list(layout.blobsRoot)) {
    const digest = layout.digestOf(object.key);
    if (digest) yield { digest, size: object.size > 0 ? object.size : undefined, modified: object.modified };
  }
}
