/**
 * Part arithmetic and the streaming splitter that turns a body of any length into S3 parts.
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

export interface SplitOptions {
  /** Number of the first part to produce. */
  firstPartNumber: number;
  /** Exact size of part `n`. */
  sizeOf: (partNumber: number) => number;
  /** Upload one full part; resolves with its ETag. */
  upload: (partNumber: number, data: Buffer) => Promise<string>;
  /** Part uploads allowed in flight while the next part fills (memory ≈ (this + 1) × part size). */
  concurrency: number;
  /** Thrown (from the splitter) when a part number would exceed S3's limit. */
  tooManyParts: () => Error;
}

export interface SplitResult {
  /** Full parts uploaded, in part-number order. */
  parts: PartRecord[];
  /** Bytes after the last full part (shorter than that next part's size). */
  remainder: Buffer;
}

/**
 * Cut `source` into parts of exactly `sizeOf(n)` bytes as the data arrives and upload each one,
 * keeping at most `concurrency` uploads in flight plus the part being filled. Not pulling from
 * `source` while uploads are saturated is the backpressure. On any failure (source or upload) it
 * waits for the in-flight uploads to settle before rejecting, so a retry never races a stale
 * UploadPart of this call for the same part number.
 */
export async function splitIntoParts(source: AsyncIterable<unknown>, options: SplitOptions): Promise<SplitResult> {
  const parts: PartRecord[] = [];
  const inflight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;

  let partNumber = options.firstPartNumber;
  // Past S3's last part number no byte may arrive: the blob is too large for this session.
  const sizeAt = (n: number): number => (n > MAX_PARTS ? Infinity : options.sizeOf(n));
  let want = sizeAt(partNumber);
  let chunks: Buffer[] = [];
  let filled = 0;

  const launch = async (n: number, data: Buffer): Promise<void> => {
    while (inflight.size >= options.concurrency && !failure) await Promise.race(inflight);
    if (failure) throw failure.error;
    // The promise never rejects: a failure is recorded and surfaced at the next checkpoint, so no
    // rejection goes unhandled while we are busy reading the source.
    const p: Promise<void> = options.upload(n, data).then(
      (ETag) => {
        parts.push({ PartNumber: n, ETag, size: data.length });
      },
      (error: unknown) => {
        failure ??= { error };
      },
    );
    const tracked = p.finally(() => inflight.delete(tracked));
    inflight.add(tracked);
  };

  try {
    for await (const raw of source) {
      let chunk = toBuffer(raw);
      if (failure) throw failure.error;
      while (chunk.length > 0) {
        if (want === Infinity) throw options.tooManyParts();
        const take = Math.min(want - filled, chunk.length);
        chunks.push(take === chunk.length ? chunk : chunk.subarray(0, take));
        filled += take;
        chunk = chunk.subarray(take);
        if (filled === want) {
          const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, want);
          chunks = [];
          filled = 0;
          await launch(partNumber, data);
          partNumber++;
          want = sizeAt(partNumber);
        }
      }
    }
  } finally {
    while (inflight.size > 0) await Promise.all(inflight);
  }
  // TS narrows `failure` to undefined after the loop; the callbacks may have set it since.
  const failed = failure as { error: unknown } | undefined;
  if (failed) throw failed.error;
  parts.sort((a, b) => a.PartNumber - b.PartNumber);
  return { parts, remainder: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, filled) };
}

function toBuffer(raw: unknown): Buffer {
  if (Buffer.isBuffer(raw)) return raw;
  if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (typeof raw === 'string') return Buffer.from(raw);
  throw new TypeError('upload body must yield bytes');
}
