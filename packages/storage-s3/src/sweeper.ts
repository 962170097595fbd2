/**
 * Leftovers of upload sessions the metadata store does not know (a crash between
 * CreateMultipartUpload and recording the session, a row lost): multipart uploads and staged
 * tails found by listing the bucket. Sessions the metadata store knows are the core's to expire.
 */
import { NotFoundError, type SweepOptions } from '@berthjs/core';
import type { Bucket } from './bucket.js';
import type { KeyLayout } from './keys.js';

/**
 * Abort multipart uploads of unknown sessions with no activity (creation, a part, a staged tail)
 * since `before`, and delete such sessions' staging objects. Returns how many things went.
 */
export async function sweepUploads(bucket: Bucket, layout: KeyLayout, { before, known }: SweepOptions): Promise<number> {
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
  return removed;
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
