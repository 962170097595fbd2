// Blob contents for the push benchmarks: a pseudo-random stream cheap enough that the client is
// never the bottleneck. One 32 MiB pool of random bytes is made once; piece i of blob `seed` is a
// 16-byte header (seed, i) followed by a pool slice at an offset derived from (seed, i), so every
// blob is distinct (no dedup on the server) and nothing of blob size is ever held in memory.
import { createHash, randomBytes } from 'node:crypto';

export const MiB = 1024 * 1024;
const PIECE = MiB;
const POOL = randomBytes(32 * MiB);
const HEADER = 16;
// Random per run, so blobs of two runs against the same data dir never collide either.
const NONCE = randomBytes(4).readUInt32LE(0);

function piece(seed, index) {
  const header = Buffer.allocUnsafe(HEADER);
  header.writeUInt32LE(NONCE, 0);
  header.writeUInt32LE(seed >>> 0, 4);
  header.writeUInt32LE(index >>> 0, 8);
  header.writeUInt32LE(0x62657274, 12);
  // Knuth multiplicative hashing spreads the offsets over the pool.
  const offset = (Math.imul(seed + 1, 2654435761) ^ Math.imul(index + 1, 40503)) >>> 0;
  const start = offset % (POOL.length - PIECE);
  return [header, POOL.subarray(start, start + PIECE - HEADER)];
}

/** The pieces (Buffers) of bytes [start, end) of blob `seed`; start and end are multiples of 1 MiB. */
export function* pieces(seed, start, end) {
  for (let i = start / PIECE; i < end / PIECE; i++) yield* piece(seed, i);
}

/** sha256 digest of blob `seed` of `size` bytes (a multiple of 1 MiB). */
export function digestOf(seed, size) {
  const hash = createHash('sha256');
  for (const p of pieces(seed, 0, size)) hash.update(p);
  return `sha256:${hash.digest('hex')}`;
}

let nextSeed = 1;
/** A fresh blob description: { seed, size, digest } (the digest is computed up front, untimed). */
export function newBlob(size) {
  if (size % PIECE !== 0) throw new Error(`blob size must be a multiple of 1 MiB, got ${size}`);
  const seed = nextSeed++;
  return { seed, size, digest: digestOf(seed, size) };
}
