import { parseDigest } from '../digest.js';
import { OciError } from '../errors.js';
import type { ByteRange } from '../ports/blob-store.js';
import { NotFoundError } from '../ports/errors.js';
import { assertEnabled, requestHeader, respond, type Context } from './context.js';

/** GET and HEAD `/v2/<name>/blobs/<digest>`, with single byte ranges (RFC 9110). */
export async function getBlob(ctx: Context) {
  const { repository, reference } = ctx.route;
  const digest = parseDigest(reference).digest;
  const blob = await ctx.cache.getBlob(repository, digest);
  if (!blob) throw new OciError('BLOB_UNKNOWN', { detail: { digest } });

  const head = ctx.request.method === 'HEAD';
  const headers: Record<string, string> = {
    'Content-Type': 'application/octet-stream',
    'Docker-Content-Digest': digest,
    'Accept-Ranges': 'bytes',
    ETag: `"${digest}"`,
    'Cache-Control': 'max-age=31536000',
  };
  const range = parseRange(requestHeader(ctx, 'range'), blob.size);
  if (range === 'unsatisfiable') {
    throw new OciError('SIZE_INVALID', {
      status: 416,
      message: 'requested range not satisfiable',
      headers: { 'Content-Range': `bytes */${blob.size}` },
    });
  }
  if (range) {
    headers['Content-Range'] = `bytes ${range.start}-${range.end}/${blob.size}`;
    headers['Content-Length'] = String(range.end - range.start + 1);
  } else {
    headers['Content-Length'] = String(blob.size);
  }
  const status = range ? 206 : 200;
  if (head) return respond(status, headers);

  const { blobs } = ctx.options;
  if (ctx.options.redirectBlobs && blobs.capabilities.redirect && blobs.redirectUrl) {
    const url = await blobs.redirectUrl(digest, { expiresInSeconds: 900, range });
    if (url) return respond(307, { Location: url, 'Docker-Content-Digest': digest });
  }
  try {
    return respond(status, headers, await blobs.read(digest, range));
  } catch (error) {
    // Linked in metadata but gone from the store: report it as unknown rather than a 500.
    if (error instanceof NotFoundError) throw new OciError('BLOB_UNKNOWN', { detail: { digest } });
    throw error;
  }
}

/**
 * DELETE `/v2/<name>/blobs/<digest>`: removes the repository's link. The bytes stay until
 * garbage collection, because another repository may link the same digest at any moment.
 */
export async function deleteBlob(ctx: Context) {
  assertEnabled(ctx.options.delete, 'deleting');
  const { repository, reference } = ctx.route;
  const digest = parseDigest(reference).digest;
  if (!(await ctx.options.metadata.unlinkBlob(repository, digest))) {
    throw new OciError('BLOB_UNKNOWN', { detail: { digest } });
  }
  ctx.cache.forgetBlob(repository, digest);
  ctx.events.emit('blob.deleted', { repository, digest });
  return respond(202, { 'Docker-Content-Digest': digest, 'Content-Length': '0' });
}

/**
 * A single `bytes=` range: undefined means "send everything" (no header, or a form we do not
 * serve, such as several ranges); the spec's suite expects 416 for `500-0` and past-the-end starts.
 */
export function parseRange(value: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!value) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!match) return undefined;
  const [, first, last] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    // Suffix range: the last N bytes.
    const length = Number(last);
    if (length === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - length), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || (last !== '' && Number(last) < start)) return 'unsatisfiable';
  return { start, end };
}
