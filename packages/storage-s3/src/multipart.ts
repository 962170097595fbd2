/**
 * Part arithmetic (the splitter that cuts a body into parts is in splitter.ts).
 *
 * Part sizes are a pure function of (part number, base size, growth), so the upload state only
 * needs the base size: every part except the last is exactly `partSizeFor(n)` bytes, and the
 * remainder below that size is left to the caller (it becomes the staged tail).
 */

export const MiB = 1024 * 1024;
/** S3's minimum size of every part but the last. */
export const MIN_PART_SIZE = 5 * MiB;
/** S3's maximum part size. */
export const MAX_PART_SIZE = 5 * 1024 * MiB;
/** S3's maximum number of parts in one multipart upload. */
export const MAX_PARTS = 10_000;
/** With growth on, the part size doubles after every this many parts. */
export const PARTS_PER_TIER = 1_000;

/**
 * Size of part `partNumber` (1-based). With `grow`, part sizes double every 1,000 parts (capped
 * at 5 GiB): an 8 MiB base keeps 8 MiB parts up to 8 GB and still reaches S3's 5 TiB object limit
 * within 10,000 parts. Without it (providers such as R2 that need equal part sizes) every part
 * has the base size and the blob is capped at 10,000 × base.
 */
export function partSizeFor(partNumber: number, base: number, grow: boolean): number {
  if (!grow) return base;
  const tier = Math.min(Math.floor((partNumber - 1) / PARTS_PER_TIER), 30);
  return Math.min(base * 2 ** tier, MAX_PART_SIZE);
}

/**
 * Base part size for a session whose total length is known before its first part: the smallest
 * whole number of MiB (at least `base`) that fits the blob into 10,000 equal parts, so big blobs
 * with a Content-Length never need growth (and never need more memory than one such part).
 */
export function choosePartSize(base: number, length: number | undefined): number {
  if (length === undefined || length <= base * MAX_PARTS) return base;
  const needed = Math.ceil(length / MAX_PARTS / MiB) * MiB;
  return Math.min(Math.max(base, needed), MAX_PART_SIZE);
}

export interface PartRecord {
  PartNumber: number;
  ETag: string;
  size: number;
}
