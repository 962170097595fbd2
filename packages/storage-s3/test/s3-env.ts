// Helpers of this package's S3 tests: a store on the test endpoint, blob data and hashes. The
// endpoint and bucket helpers are shared with test/ through `@berthjs/storage-s3/testing`.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { S3BlobStore, type S3BlobStoreOptions } from '../src/index.js';
import type { S3TestEnv } from '../src/testing.js';

export {
  createBucket,
  deleteBucket,
  emptyBucket,
  interceptPointerWrites,
  listKeys,
  listPartSizes,
  listUploads,
  requireS3,
  s3Client,
} from '../src/testing.js';

export const MiB = 1024 * 1024;

export function storeFor(env: S3TestEnv, bucket: string, options: Partial<S3BlobStoreOptions> = {}): S3BlobStore {
  return new S3BlobStore({
    bucket,
    endpoint: env.endpoint,
    region: env.region,
    forcePathStyle: true,
    credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
    partSize: 5 * MiB,
    ...options,
  });
}

export const newId = (): string => randomUUID();

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** SHA-256 and length of a stream, consumed chunk by chunk (never buffered whole). */
export async function hashStream(stream: Readable): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/**
 * A generated stream of `size` random bytes in `chunk`-sized pieces; `digest()` is valid once it
 * has ended. Optionally errors after `failAfter` bytes, like a client that drops mid-request.
 */
export function generated(size: number, options: { chunk?: number; failAfter?: number } = {}) {
  const hash = createHash('sha256');
  const chunk = options.chunk ?? 256 * 1024;
  let sent = 0;
  const stream = new Readable({
    read() {
      if (options.failAfter !== undefined && sent >= options.failAfter) {
        this.destroy(new Error('client went away'));
        return;
      }
      if (sent >= size) {
        this.push(null);
        return;
      }
      const piece = randomBytes(Math.min(chunk, size - sent));
      sent += piece.length;
      hash.update(piece);
      this.push(piece);
    },
  });
  return { stream, digest: () => `sha256:${hash.digest('hex')}` };
}
