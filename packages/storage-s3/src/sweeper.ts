/**
 * The backstop for abandoned sessions the core's own sweeper cannot see (a crash between
 * CreateMultipartUpload and persisting the session, a lost metadata row): multipart uploads and
 * staged tails found by listing the bucket.
 */
import { NotFoundError } from '@berthjs/core';
import type { Bucket } from './bucket.js';
import type { KeyLayout } from './keys.js';

export interface SweepResult {
  /** Multipart uploads aborted. */
  aborted: number;
  /** Staging objects deleted. */
  deleted: number;
}

/**
 * Abort multipart uploads under the layout's prefix with no activity (creation, a part, a staged
 * tail) for `olderThanMs`, and delete staging objects that old whose upload is gone.
 */
export async function sweepUploads(bucket: Bucket, layout: KeyLayout, olderThanMs: number): Promise<SweepResult> {
  const cutoff = Date.now() - olderThanMs;
  const result: SweepResult = { aborted: 0, deleted: 0 };

  // Staging objects by upload id, with their latest modification.
  const staging = new Map<string, { keys: string[]; latest: number }>();
  for await (const object of bucket.list(layout.stagingRoot)) {
    const id = layout.idOf(layout.stagingRoot, object.key);
    const entry = staging.get(id) ?? { keys: [], latest: 0 };
    entry.keys.push(object.key);
    entry.latest = Math.max(entry.latest, object.modified);
    staging.set(id, entry);
  }

  const live = new Set<string>();
  for await (const upload of bucket.listMultipart(layout.dataRoot)) {
    const id = layout.idOf(layout.dataRoot, upload.key);
    let latest = Math.max(upload.initiated, staging.get(id)?.latest ?? 0);
    if (latest < cutoff) latest = Math.max(latest, await latestPart(bucket, upload.key, upload.uploadId));
    if (latest >= cutoff) {
      live.add(id);
      continue;
    }
    await bucket.abortMultipart(upload.key, upload.uploadId);
    result.aborted++;
  }

  for (const [id, entry] of staging) {
    if (live.has(id) || entry.latest >= cutoff) continue;
    for (const key of entry.keys) {
      await bucket.deleteQuietly(key);
      result.deleted++;
    }
  }
  return result;
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
