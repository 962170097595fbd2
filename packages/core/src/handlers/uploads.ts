import type { Readable } from 'node:stream';
import { isSupportedAlgorithm, parseDigest, type DigestAlgorithm } from '../digest.js';
import { OciError } from '../errors.js';
import { isRepositoryName } from '../names.js';
import type { ChunkInfo } from '../uploads.js';
import { rangeHeader, uploadLocation } from '../uploads.js';
import { assertEnabled, queryValue, requestHeader, respond, type Context } from './context.js';

/**
 * POST `/v2/<name>/blobs/uploads/`: cross-repository mount (`?mount=&from=`), single-request
 * monolithic push (`?digest=` with the body), or a new session (202).
 */
export async function startUpload(ctx: Context) {
  assertEnabled(ctx.options.push, 'pushing');
  const { repository } = ctx.route;
  const mount = queryValue(ctx, 'mount');
  if (mount !== undefined) {
    const mounted = await mountBlob(ctx, mount, queryValue(ctx, 'from'));
    if (mounted) return mounted;
  }

  const digestParam = queryValue(ctx, 'digest');
  const digest = digestParam === undefined ? undefined : parseDigest(digestParam);
  const algorithm = digestAlgorithm(ctx, digest?.algorithm);
  const chunk = digest && chunkInfo(ctx, false); // checked before a session exists
  const upload = await ctx.uploads.start(repository, algorithm, ctx.tenant(repository));
  if (digest && chunk) {
    try {
      const size = await ctx.uploads.complete(upload, digest, ctx.request.body, chunk);
      return blobCreated(repository, digest.digest, size);
    } catch (error) {
      // Nobody could resume this session: the client never learned its Location.
      await ctx.uploads.discard(upload);
      throw error;
    }
  }
  const headers = sessionHeaders(repository, upload.id, 0);
  const minChunk = ctx.options.blobs.capabilities.minChunkLength;
  if (minChunk) headers['OCI-Chunk-Min-Length'] = String(minChunk);
  return respond(202, headers);
}

/** PATCH `<location>`: append a chunk (with Content-Range) or a stream (without). */
export async function patchUpload(ctx: Context) {
  assertEnabled(ctx.options.push, 'pushing');
  const upload = await ctx.uploads.get(ctx.route.repository, ctx.route.reference);
  const offset = await ctx.uploads.append(upload, ctx.request.body, chunkInfo(ctx, true));
  return respond(202, sessionHeaders(upload.repository, upload.id, offset));
}

/** PUT `<location>?digest=`: close the session, optionally with the last chunk as body. */
export async function putUpload(ctx: Context) {
  assertEnabled(ctx.options.push, 'pushing');
  const digest = parseDigest(queryValue(ctx, 'digest'));
  const upload = await ctx.uploads.get(ctx.route.repository, ctx.route.reference);
  const chunk = chunkInfo(ctx, true);
  const size = await ctx.uploads.complete(upload, digest, hasBody(ctx) ? ctx.request.body : undefined, chunk);
  return blobCreated(upload.repository, digest.digest, size);
}

/** GET `<location>`: how much the session holds. */
export async function getUploadStatus(ctx: Context) {
  const upload = await ctx.uploads.get(ctx.route.repository, ctx.route.reference);
  return respond(204, sessionHeaders(upload.repository, upload.id, upload.offset));
}

/** DELETE `<location>`: cancel the session and free what it stored. */
export async function cancelUpload(ctx: Context) {
  const upload = await ctx.uploads.get(ctx.route.repository, ctx.route.reference);
  await ctx.uploads.cancel(upload, 'cancelled');
  return respond(204);
}

/**
 * Link `digest` into the target when the caller may pull a repository of the same tenant holding
 * it: `from` if given, else (automatic cross-mount) any repository linking it. Anything short of
 * that falls back to a normal upload session, as the spec asks (never 404), so the answer tells
 * nothing about other tenants' content.
 */
async function mountBlob(ctx: Context, mount: string, from: string | undefined) {
  const { repository } = ctx.route;
  let digest: string;
  try {
    digest = parseDigest(mount).digest;
  } catch {
    return undefined;
  }
  const { metadata } = ctx.options;
  let sources: AsyncIterable<string> | string[] = [];
  if (from !== undefined) sources = isRepositoryName(from) ? [from] : [];
  else if (ctx.options.automaticCrossMount) sources = linkingRepositories(ctx, digest);
  for await (const source of sources) {
    // Tenant first: it needs no hook call, and no permission makes another tenant's blob mountable.
    if (!ctx.sameTenant(source, repository) || !(await ctx.can('pull', source))) continue;
    // One transaction: the source still links it and its bytes are not being collected.
    const blob = await metadata.mountBlob(source, repository, digest, ctx.tenant(repository));
    if (!blob) continue;
    ctx.events.emit('blob.mounted', { repository, from: source, digest, size: blob.size });
    return blobCreated(repository, digest, blob.size);
  }
  return undefined;
}

/** Repositories linking `digest`, page by page, bounded so a popular blob cannot stall a POST. */
async function* linkingRepositories(ctx: Context, digest: string, pageSize = 100, maxPages = 10): AsyncGenerator<string> {
  let last: string | undefined;
  for (let page = 0; page < maxPages; page++) {
    const names = await ctx.options.metadata.listBlobRepositories(digest, { limit: pageSize, last });
    yield* names;
    if (names.length < pageSize) return;
    last = names[names.length - 1];
  }
}

function blobCreated(repository: string, digest: string, _size: number) {
  return respond(201, {
    Location: `/v2/${repository}/blobs/${digest}`,
    'Docker-Content-Digest': digest,
    'Content-Length': '0',
  });
}

function sessionHeaders(repository: string, id: string, offset: number): Record<string, string> {
  return {
    Location: uploadLocation(repository, id),
    Range: rangeHeader(offset),
    'Docker-Upload-UUID': id,
    'Content-Length': '0',
  };
}

/** `?digest-algorithm=` ([main]) or the algorithm of a monolithic `?digest=`. */
function digestAlgorithm(ctx: Context, fromDigest: DigestAlgorithm | undefined): DigestAlgorithm | undefined {
  const announced = queryValue(ctx, 'digest-algorithm');
  if (announced === undefined) return fromDigest;
  if (!isSupportedAlgorithm(announced)) {
    throw new OciError('DIGEST_INVALID', { message: `unsupported digest algorithm ${announced}` });
  }
  return announced;
}

/** Whether the request carries a body at all (a PUT may close a session without one). */
function hasBody(ctx: Context): boolean {
  const length = requestHeader(ctx, 'content-length');
  if (length !== undefined) return Number(length) > 0;
  return requestHeader(ctx, 'transfer-encoding') !== undefined;
}

/** Content-Range (`<start>-<end>`, inclusive) and Content-Length, checked against each other. */
function chunkInfo(ctx: Context, allowRange: boolean): ChunkInfo {
  const lengthHeader = requestHeader(ctx, 'content-length');
  const length = lengthHeader === undefined || lengthHeader === '' ? undefined : Number(lengthHeader);
  if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
    throw new OciError('SIZE_INVALID', { message: 'invalid Content-Length' });
  }
  const rangeValue = allowRange ? requestHeader(ctx, 'content-range') : undefined;
  if (rangeValue === undefined) return { length };
  const match = /^(?:bytes[= ])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(rangeValue.trim());
  if (!match) throw new OciError('BLOB_UPLOAD_INVALID', { status: 416, message: `malformed Content-Range ${rangeValue}` });
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end < start) throw new OciError('BLOB_UPLOAD_INVALID', { status: 416, message: `Content-Range ${rangeValue} ends before it starts` });
  const rangeLength = end - start + 1;
  if (length !== undefined && length !== rangeLength) {
    throw new OciError('SIZE_INVALID', { message: `Content-Length ${length} does not match Content-Range ${rangeValue}` });
  }
  return { start, length: rangeLength };
}

export type { Readable };
