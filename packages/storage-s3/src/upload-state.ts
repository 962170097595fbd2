/**
 * The state of an upload session that the core persists between calls (possibly handing it to
 * another replica): what the multipart session needs, validated on the way back in, because the
 * store must never act on keys outside the session it names.
 */
import { NotFoundError, StoreError, type UploadState } from '@berthjs/core';
import type { KeyLayout } from './keys.js';
import { MAX_PART_SIZE, MIN_PART_SIZE, type PartRecord, partSizeFor } from './multipart.js';

/** What `appendUpload` hands the core to persist; JSON only. */
export type S3UploadState = {
  v: 1;
  /** Multipart key: `P data/<id>/<random>`. */
  key: string;
  uploadId: string;
  /** Base part size of this session (see `partSizeFor`). */
  partSize: number;
  /** Whether part sizes grow every 1,000 parts. */
  grow: boolean;
  /** Full parts uploaded, in order, numbered from 1. */
  parts: PartRecord[];
  /** The first `size` bytes, when they went up as one PutObject at `key` (then no parts, no tail). */
  object?: { size: number };
  /** Staged bytes after the last part, if any. */
  tail?: { key: string; size: number };
  /** A tail superseded by this state; deleted by the next successful append. */
  garbage?: string;
};

/** Bytes the session holds: its parts and its staged tail. */
export function heldBytes(st: S3UploadState): number {
  return (st.object?.size ?? 0) + st.parts.reduce((sum, p) => sum + p.size, 0) + (st.tail?.size ?? 0);
}

/** Validate a state from the metadata store: it only ever names keys of session `id`. */
export function parseState(layout: KeyLayout, store: string, id: string, state: UploadState): S3UploadState {
  const s = state as Partial<S3UploadState>;
  const bad = (why: string) => new StoreError(`upload ${id}: invalid state (${why})`, store);
  // No state of ours at all (`{}`): the session was never created here, or is gone.
  if (s === null || typeof s !== 'object' || s.uploadId === undefined) throw new NotFoundError(`upload ${id} not found`, store);
  if (s.v !== 1) throw bad('version');
  if (typeof s.key !== 'string' || !layout.isDataKeyOf(id, s.key)) throw bad('key');
  if (typeof s.uploadId !== 'string' || !s.uploadId) throw bad('uploadId');
  const partSize = s.partSize;
  if (partSize === undefined || !Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE)
    throw bad('partSize');
  if (typeof s.grow !== 'boolean') throw bad('grow');
  const grow = s.grow;
  if (!Array.isArray(s.parts)) throw bad('parts');
  s.parts.forEach((p, i) => {
    if (p?.PartNumber !== i + 1 || typeof p.ETag !== 'string' || p.size !== partSizeFor(i + 1, partSize, grow)) throw bad(`part ${i + 1}`);
  });
  const staging = layout.staging(id);
  if (s.tail !== undefined) {
    if (s.tail === null || typeof s.tail !== 'object') throw bad('tail');
    const { key, size } = s.tail;
    if (typeof key !== 'string' || !key.startsWith(staging) || !Number.isSafeInteger(size) || size <= 0) throw bad('tail');
    if (size >= partSizeFor(s.parts.length + 1, partSize, grow)) throw bad('tail size');
  }
  if (s.object !== undefined) {
    if (s.object === null || typeof s.object !== 'object' || !Number.isSafeInteger(s.object.size) || s.object.size <= 0)
      throw bad('object');
    if (s.parts.length > 0 || s.tail !== undefined || s.garbage !== undefined) throw bad('object with parts');
  }
  if (s.garbage !== undefined && (typeof s.garbage !== 'string' || !s.garbage.startsWith(staging))) throw bad('garbage');
  return s as S3UploadState;
}
