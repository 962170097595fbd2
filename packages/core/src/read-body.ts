import type { Readable } from 'node:stream';
import { OciError } from './errors.js';

/**
 * Read a small body (a manifest) into memory, refusing more than `limit` bytes with 413 (before
 * reading any of it when Content-Length already says so). Excess bytes are drained, not kept, so
 * the connection stays usable and the error reaches the client.
 */
export function readLimited(body: Readable, limit: number, contentLength?: string): Promise<Buffer> {
  const tooLarge = new OciError('SIZE_INVALID', { status: 413, message: `manifest exceeds the ${limit}-byte limit`, detail: { limit } });
  if (contentLength !== undefined && Number(contentLength) > limit) {
    body.resume();
    return Promise.reject(tooLarge);
  }
  return new Promise((resolve, reject) => {
    // Closed while the request waited (e.g. on an auth hook): no event will ever come.
    if (body.destroyed && !body.readableEnded) {
      reject(new OciError('MANIFEST_INVALID', { message: 'request body ended early' }));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      body.off('data', onData).off('end', onEnd);
      body.resume();
      reject(tooLarge);
    };
    const onEnd = () => resolve(Buffer.concat(chunks, size));
    // A client that hangs up mid-body ends in 'error' or a bare 'close'; never wait forever.
    const onClose = () => reject(new OciError('MANIFEST_INVALID', { message: 'request body ended early' }));
    body.on('data', onData).once('end', onEnd).on('error', reject).once('close', onClose);
  });
}
