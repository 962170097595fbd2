import { Readable } from 'node:stream';
import { digestOf, isDigest, parseDigest, type DigestAlgorithm } from '../digest.js';
import { OciError, OciErrors } from '../errors.js';
import { parseManifest } from '../manifest.js';
import { isTag } from '../names.js';
import type { ManifestRecord } from '../ports/metadata-store.js';
import { readBody } from '../request-body.js';
import { assertEnabled, requestHeader, respond, type Context } from './context.js';

/** Manifests up to this size are answered from a Buffer; larger ones hold manifest memory until sent. */
const SMALL_MANIFEST = 64 * 1024;

/** GET and HEAD `/v2/<name>/manifests/<tag-or-digest>`. */
export async function getManifest(ctx: Context) {
  const manifest = await findManifest(ctx);
  const headers = {
    'Content-Type': manifest.mediaType,
    'Content-Length': String(manifest.content.length),
    'Docker-Content-Digest': manifest.digest,
    ETag: `"${manifest.digest}"`,
  };
  const { content } = manifest;
  if (ctx.request.method === 'HEAD') return respond(200, headers);
  if (content.length <= SMALL_MANIFEST) return respond(200, headers, content);
  // A slow reader of large manifests must not pin unbounded memory: each one counts against the
  // manifest memory budget until its response is sent (or the client goes away).
  const release = ctx.manifestMemory.take(content.length);
  // Handed out in slices as the socket drains, so the bytes stay here (and counted) until sent.
  let sent = 0;
  const body = new Readable({
    read() {
      const end = Math.min(sent + SMALL_MANIFEST, content.length);
      this.push(content.subarray(sent, end));
      sent = end;
      if (sent === content.length) this.push(null);
    },
  });
  body.once('close', release);
  return respond(200, headers, body);
}

/**
 * PUT `/v2/<name>/manifests/<tag-or-digest>[?tag=...]`: validate, check that everything it
 * references is in the repository, store the exact bytes and move the tags, atomically.
 */
export async function putManifest(ctx: Context) {
  assertEnabled(ctx.options.push, 'pushing');
  const { reference } = ctx.route;
  const byDigest = reference.includes(':');
  if (!byDigest && !isTag(reference)) throw new OciError('MANIFEST_INVALID', { message: 'invalid tag', detail: { tag: reference } });
  const algorithm: DigestAlgorithm = byDigest ? parseDigest(reference).algorithm : 'sha256';
  const tags = requestedTags(ctx, byDigest ? [] : [reference]);

  const { maxManifestBytes, bodyIdleTimeoutMs: idleMs, bodyMinBytesPerSecond: minBytesPerSecond } = ctx.options;
  const contentLength = requestHeader(ctx, 'content-length');
  // Hold the body's bytes in the budget (the whole limit while its length is unknown) until the
  // manifest is stored; a flood of concurrent manifest PUTs gets 429 instead of the heap.
  // (A length over the limit takes nothing: readBody answers 413 before reading.)
  const announced = contentLength === undefined ? maxManifestBytes : Number(contentLength);
  const release =
    announced > maxManifestBytes ? () => {} : ctx.manifestMemory.take(Number.isSafeInteger(announced) ? announced : maxManifestBytes);
  try {
    return await storeManifest(
      ctx,
      await readBody(ctx.request.body, maxManifestBytes, { idleMs, minBytesPerSecond }, contentLength),
      algorithm,
      tags,
    );
  } finally {
    release();
  }
}

async function storeManifest(ctx: Context, content: Buffer, algorithm: DigestAlgorithm, tags: string[]) {
  const { repository, reference } = ctx.route;
  const byDigest = reference.includes(':');
  const digest = digestOf(algorithm, content);
  if (byDigest && digest !== reference) {
    throw new OciError('DIGEST_INVALID', {
      message: 'manifest content does not match its digest',
      detail: { expected: reference, computed: digest },
    });
  }
  const parsed = parseManifest(content, requestHeader(ctx, 'content-type'), {
    maxDepth: ctx.options.maxManifestDepth,
    maxElements: ctx.options.maxManifestElements,
  });
  const record: ManifestRecord = {
    repository,
    digest,
    mediaType: parsed.mediaType,
    content,
    subject: parsed.subject?.digest,
    artifactType: parsed.artifactType,
    annotations: parsed.annotations,
    blobs: parsed.blobs,
    children: parsed.children,
  };
  // The store checks, in the transaction that stores it, that the repository holds every blob
  // and child: so a collection racing this PUT either keeps them or the PUT fails here.
  const missing = await ctx.options.metadata.putManifest(record, tags, ctx.tenant(repository));
  if (missing.length > 0) {
    throw new OciErrors(missing.map((d) => new OciError('MANIFEST_BLOB_UNKNOWN', { detail: { digest: d } })));
  }
  ctx.cache.invalidate(repository);
  ctx.events.emit('manifest.pushed', {
    repository,
    digest,
    mediaType: parsed.mediaType,
    size: content.length,
    tags,
    subject: record.subject,
  });
  for (const tag of tags) ctx.events.emit('tag.updated', { repository, tag, digest });

  const headers: Record<string, string> = {
    Location: `/v2/${repository}/manifests/${digest}`,
    'Docker-Content-Digest': digest,
    'Content-Length': '0',
  };
  if (record.subject && ctx.options.referrers) headers['OCI-Subject'] = record.subject;
  if (byDigest && tags.length > 0) headers['OCI-Tag'] = tags.join(', ');
  return respond(201, headers);
}

/** DELETE by digest removes the manifest and its tags; by tag, only the tag. */
export async function deleteManifest(ctx: Context) {
  assertEnabled(ctx.options.delete, 'deleting');
  const { repository, reference } = ctx.route;
  const { metadata } = ctx.options;
  if (!(await metadata.repositoryExists(repository))) throw new OciError('NAME_UNKNOWN', { detail: { name: repository } });
  if (reference.includes(':')) {
    const digest = parseDigest(reference).digest;
    if (!(await metadata.deleteManifest(repository, digest))) throw new OciError('MANIFEST_UNKNOWN', { detail: { digest } });
    ctx.cache.invalidate(repository);
    ctx.events.emit('manifest.deleted', { repository, digest });
  } else {
    if (!isTag(reference) || !(await metadata.deleteTag(repository, reference))) {
      throw new OciError('MANIFEST_UNKNOWN', { detail: { tag: reference } });
    }
    ctx.cache.invalidate(repository);
    ctx.events.emit('tag.deleted', { repository, tag: reference });
  }
  return respond(202, { 'Content-Length': '0' });
}

/** Resolve a tag or digest; anything unknown or malformed is 404 MANIFEST_UNKNOWN, as the suites expect. */
async function findManifest(ctx: Context): Promise<ManifestRecord> {
  const { repository, reference } = ctx.route;
  let digest: string | undefined;
  if (reference.includes(':')) digest = isDigest(reference) ? reference : undefined;
  else if (isTag(reference)) digest = await ctx.cache.resolveTag(repository, reference);
  const manifest = digest && (await ctx.cache.getManifest(repository, digest));
  if (!manifest) throw new OciError('MANIFEST_UNKNOWN', { detail: { reference } });
  return manifest;
}

/** Tags to point at the manifest: the reference itself and any `?tag=` (multi-tag push). */
function requestedTags(ctx: Context, tags: string[]): string[] {
  const extra = ctx.query.get('tag') ?? [];
  if (extra.length > ctx.options.maxTagsPerPush) {
    throw new OciError('MANIFEST_INVALID', { status: 414, message: `at most ${ctx.options.maxTagsPerPush} tags per push` });
  }
  for (const tag of extra) {
    if (!isTag(tag)) throw new OciError('MANIFEST_INVALID', { message: 'invalid tag', detail: { tag } });
  }
  return [...new Set([...tags, ...extra])];
}
