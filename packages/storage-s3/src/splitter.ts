/**
 * The splitter: cuts a body of any length into S3 parts as it arrives (see the README, "Uploads").
 * Each part fills a buffer of its own size and goes up once full, from memory (so the SDK can
 * retry it), while the next ones fill: at most `concurrency` parts upload at once.
 */
import { MAX_PARTS, type PartRecord } from './multipart.js';

/**
 * Part-sized buffers kept for reuse: filling parts into these (instead of concatenating the
 * body's chunks into a fresh 8 MiB buffer per part) spares a copy's allocation and the full GCs
 * that so much short-lived external memory sets off. At most `maxIdleBytes` wait here, and all of
 * them are dropped after `trimAfterMs` without use. A buffer only comes back after S3 accepted
 * its part (the SDK is done with it), and only the bytes written into it are ever sent, so stale
 * bytes of an earlier blob never leave.
 */
export class PartBuffers {
  private idle: Buffer[] = [];
  private idleBytes = 0;
  private taken = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly maxIdleBytes: number,
    private readonly trimAfterMs = 10_000,
  ) {}

  take(size: number): Buffer {
    this.taken = true;
    const i = this.idle.findIndex((b) => b.length === size);
    if (i < 0) return Buffer.allocUnsafeSlow(size);
    const [buffer] = this.idle.splice(i, 1);
    this.idleBytes -= size;
    return buffer;
  }

  give(buffer: Buffer): void {
    if (this.idleBytes + buffer.length > this.maxIdleBytes) return;
    this.idle.push(buffer);
    this.idleBytes += buffer.length;
    this.timer ??= setTimeout(() => this.trim(), this.trimAfterMs).unref();
  }

  /** Bytes waiting for reuse. */
  get idleSize(): number {
    return this.idleBytes;
  }

  private trim(): void {
    this.timer = undefined;
    if (this.taken) {
      this.taken = false;
      this.timer = setTimeout(() => this.trim(), this.trimAfterMs).unref();
      return;
    }
    this.idle = [];
    this.idleBytes = 0;
  }
}

export interface SplitOptions {
  /** Number of the first part to produce. */
  firstPartNumber: number;
  /** Exact size of part `n`. */
  sizeOf: (partNumber: number) => number;
  /** Part uploads at once while the next part fills (memory ≈ (this + 1) × part size). */
  concurrency: number;
  /** Thrown (from the splitter) when a part number would exceed S3's limit. */
  tooManyParts: () => Error;
  /** Upload one full part; resolves with its ETag. */
  upload: (partNumber: number, data: Buffer) => Promise<string>;
  /** Reuse part buffers from here (default: a fresh one for each part). */
  buffers?: PartBuffers;
}

export interface SplitResult {
  /** Full parts uploaded, in part-number order. */
  parts: PartRecord[];
  /** Bytes after the last full part (shorter than that next part's size). */
  remainder: Buffer;
}

/** A part collects its first bytes as the chunks themselves below this (a remainder is often small). */
const COLLECT_BELOW = 1024 * 1024;

/** One part being filled: its first bytes as the chunks themselves, then in a buffer of its size. */
class Part {
  filled = 0;
  private chunks: Buffer[] = [];
  private buffer: Buffer | undefined;

  constructor(
    readonly number: number,
    readonly size: number,
    private readonly buffers: PartBuffers | undefined,
  ) {}

  get full(): boolean {
    return this.filled === this.size;
  }

  /** Take what fits of `chunk`; returns how many bytes it took. */
  add(chunk: Buffer): number {
    const take = Math.min(this.size - this.filled, chunk.length);
    const piece = take === chunk.length ? chunk : chunk.subarray(0, take);
    if (!this.buffer && (!this.buffers || this.filled + take < Math.min(COLLECT_BELOW, this.size))) this.chunks.push(piece);
    else this.allocate().set(piece, this.filled);
    this.filled += take;
    return take;
  }

  /** All bytes so far (of a part that never filled: the remainder). */
  bytes(): Buffer {
    if (this.buffer) return this.full ? this.buffer : this.buffer.subarray(0, this.filled);
    return this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.filled);
  }

  /** Hand the buffer back for reuse (once S3 holds the part). */
  release(): void {
    if (this.buffer && this.buffers) this.buffers.give(this.buffer);
    this.buffer = undefined;
  }

  private allocate(): Buffer {
    if (!this.buffer) {
      this.buffer = this.buffers ? this.buffers.take(this.size) : Buffer.allocUnsafe(this.size);
      let at = 0;
      for (const c of this.chunks) at += c.copy(this.buffer, at);
      this.chunks = [];
    }
    return this.buffer;
  }
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

  // Past S3's last part number no byte may arrive: the blob is too large for this session.
  const partAt = (n: number): Part | undefined => (n > MAX_PARTS ? undefined : new Part(n, options.sizeOf(n), options.buffers));
  let part = partAt(options.firstPartNumber);

  const launch = async (p: Part): Promise<void> => {
    while (inflight.size >= options.concurrency && !failure) await Promise.race(inflight);
    if (failure) throw failure.error;
    // The promise never rejects: a failure is recorded and surfaced at the next checkpoint, so no
    // rejection goes unhandled while we are busy reading the source.
    const tracked: Promise<void> = options.upload(p.number, p.bytes()).then(
      (ETag) => {
        inflight.delete(tracked);
        parts.push({ PartNumber: p.number, ETag, size: p.size });
        p.release();
      },
      (error: unknown) => {
        inflight.delete(tracked);
        failure ??= { error };
      },
    );
    inflight.add(tracked);
  };

  try {
    for await (const raw of source) {
      let chunk = toBuffer(raw);
      while (chunk.length > 0) {
        if (failure) throw failure.error;
        if (!part) throw options.tooManyParts();
        chunk = chunk.subarray(part.add(chunk));
        if (part.full) {
          await launch(part);
          part = partAt(part.number + 1);
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
  return { parts, remainder: part ? part.bytes() : Buffer.alloc(0) };
}

function toBuffer(raw: unknown): Buffer {
  if (Buffer.isBuffer(raw)) return raw;
  if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (typeof raw === 'string') return Buffer.from(raw);
  throw new TypeError('upload body must yield bytes');
}
