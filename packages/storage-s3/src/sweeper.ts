/**
 * Leftovers of upload sessions the metadata store does not know, found by listing the bucket:
 * multipart uploads and staged tails (a crash between CreateMultipartUpload and recording the
 * session, a row lost), and data objects no pointer names (a commit that stored its bytes and
 * then failed or died before its pointer, its session since ended). Sessions the metadata store
 * knows are the core's to expire.
 */
import { createHash } from 'node:crypto';
import { NotFoundError, type SweepOptions } from '@berthjs/core';
import type { Bucket } from './bucket.js';
import type { KeyLayout } from './keys.js';
import type { BlobReader } from './reads.js';

/** HEADs in flight while reading which data objects pointers name. */
const HEAD_CONCURRENCY = 16;

/**
 * Abort multipart uploads of unknown sessions with no activity (creation, a part, a staged tail)
 * since `before`, and delete such sessions' staging objects. Returns how many things went.
 */
export async function sweepUploads(
  bucket: Bucket,
  layout: KeyLayout,
  reader: BlobReader,
  { before, known }: SweepOptions,
): Promise<number> {
  // Staging objects by upload id, with their latest modification.
  const staging = new Map<string, { keys: string[]; latest: number }>();
  for await (const object of bucket.list(layout.stagingRoot)) {
    const id = layout.idOf(layout.stagingRoot, object.key);
    const entry = staging.get(id) ?? { keys: [], latest: 0 };
    entry.keys.push(object.key);
    entry.latest = Math.max(entry.latest, object.modified);
    staging.set(id, entry);
  }
  const uploads: Array<{ id: string; key: string; uploadId: string; initiated: number }> = [];
  for await (const upload of bucket.listMultipart(layout.dataRoot))
    uploads.push({ id: layout.idOf(layout.dataRoot, upload.key), ...upload });
  const ids = [...new Set([...staging.keys(), ...uploads.map((u) => u.id)])];
  const live = ids.length === 0 ? new Set<string>() : await known(ids);

  let removed = 0;
  const active = new Set<string>();
  for (const upload of uploads) {
    if (live.has(upload.id)) continue;
    let latest = Math.max(upload.initiated, staging.get(upload.id)?.latest ?? 0);
    if (latest < before) latest = Math.max(latest, await latestPart(bucket, upload.key, upload.uploadId));
    if (latest >= before) {
      active.add(upload.id);
      continue;
    }
    // An open upload was never committed: a single-PUT object at its key is no blob.
    if (await bucket.abortMultipart(upload.key, upload.uploadId)) await bucket.deleteQuietly(upload.key);
    removed++;
  }
  for (const [id, entry] of staging) {
    if (live.has(id) || active.has(id) || entry.latest >= before) continue;
    for (const key of entry.keys) {
      await bucket.deleteQuietly(key);
      removed++;
    }
  }
  return removed + (await sweepData(bucket, layout, reader, before, known, new Set(uploads.map((u) => u.key))));
}

/**
 * Delete data objects under `data/` that no pointer names, last written before `before`, of
 * sessions the metadata store does not know. Objects at an open multipart upload's key are not
 * blobs yet (the part above handles them).
 *
 * Safety: a commit writes its pointer and only then ends its session (`finishCommit`), so while
 * its pointer is being written its session is known. The pointers are therefore read twice: once
 * to find the unnamed candidates, and again after `known` answered, by HEADs that bypass the
 * location cache. A candidate whose session was unknown at that moment either had its pointer
 * written before it (the second read finds it) or lost its session without a commit finishing;
 * the latter (a commit that outlived its lease, cancelled meanwhile) only `before` protects.
 *
 * Cost (README, "Uploads"): two LISTs, of `data/` and `blobs/`. Only when there are more data
 * objects than pointers does it read which data object each pointer names (a HEAD per pointer
 * not in the location cache, 16 at a time), ask `known` about the unnamed ones, and list
 * `blobs/` again.
 */
async function sweepData(
  bucket: Bucket,
  layout: KeyLayout,
  reader: BlobReader,
  before: number,
  known: SweepOptions['known'],
  open: Set<string>,
): Promise<number> {
  let stored = 0;
  const candidates = new Map<string, string>(); // data key → session id
  for await (const object of bucket.list(layout.dataRoot)) {
    if (open.has(object.key)) continue;
    stored++;
    const id = layout.idOf(layout.dataRoot, object.key);
    if (object.modified < before && layout.isDataKey(object.key)) candidates.set(object.key, id);
  }
  if (candidates.size === 0) return 0;
  const pointers = await listPointers(bucket, layout);
  // Each pointer names one data object; as many pointers as data objects is the steady state. (A
  // pointer whose data is gone, a deletion cut short, can hide an unnamed object until the
  // collection that repeats it.)
  if (stored <= pointers.size) return 0;

  const resolved = new Map<string, number>(); // pointer digest → modified, as HEADed
  await nameCandidates(bucket, layout, reader, pointers, candidates, resolved, true);
  if (candidates.size === 0) return 0;
  const live = await known([...new Set(candidates.values())]);
  for (const [key, id] of candidates) if (live.has(id)) candidates.delete(key);
  if (candidates.size === 0) return 0;
  // Pointers written since, or only seen through the cache, or rewritten: HEAD them now.
  const again = await listPointers(bucket, layout);
  for (const [digest, modified] of again) if (resolved.get(digest) === modified) again.delete(digest);
  await nameCandidates(bucket, layout, reader, again, candidates, resolved, false);
  await bucket.deleteMany([...candidates.keys()]);
  return candidates.size;
}

/** The empty blob's addresses: 0-byte objects that are no pointers. */
const EMPTY = new Set(['sha256', 'sha512'].map((alg) => `${alg}:${createHash(alg).digest('hex')}`));

/** Digests of every 0-byte address (a pointer) but the empty blob's, with their modification time. */
async function listPointers(bucket: Bucket, layout: KeyLayout): Promise<Map<string, number>> {
  const pointers = new Map<string, number>();
  for await (const object of bucket.list(layout.blobsRoot)) {
    const digest = object.size === 0 ? layout.digestOf(object.key) : undefined;
    if (digest && !EMPTY.has(digest)) pointers.set(digest, object.modified);
  }
  return pointers;
}

/**
 * Drop from `candidates` every data key one of `pointers` names: from the location cache when
 * `cached` allows (no HEAD), else by a HEAD, recorded in `resolved`.
 */
async function nameCandidates(
  bucket: Bucket,
  layout: KeyLayout,
  reader: BlobReader,
  pointers: Map<string, number>,
  candidates: Map<string, string>,
  resolved: Map<string, number>,
  cached: boolean,
): Promise<void> {
  const toHead: string[] = [];
  for (const digest of pointers.keys()) {
    const location = cached ? reader.cached(digest) : undefined;
    if (location) candidates.delete(location.key);
    else toHead.push(digest);
  }
  for (let i = 0; i < toHead.length && candidates.size > 0; i += HEAD_CONCURRENCY) {
    const batch = toHead.slice(i, i + HEAD_CONCURRENCY);
    const heads = await Promise.all(batch.map((digest) => bucket.head(layout.blob(digest))));
    batch.forEach((digest, j) => {
      const named = layout.namedDataKey(heads[j]?.metadata);
      if (named) candidates.delete(named);
      if (heads[j]) resolved.set(digest, pointers.get(digest) as number);
    });
  }
}

/** Latest LastModified among an upload's parts (0 when none, or when it vanished meanwhile). */
async function latestPart(bucket: Bucket, key: string, uploadId: string): Promise<number> {
  let latest = 0;
  try {
    for await (const part of bucket.listParts(key, uploadId)) latest = Math.max(latest, part.modified);
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
  }
  return latest;
}
