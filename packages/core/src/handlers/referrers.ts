import { parseDigest } from '../digest.js';
import { MEDIA_TYPES } from '../manifest.js';
import { OciError } from '../errors.js';
import type { ReferrerRecord } from '../ports/metadata-store.js';
import { json, nextLink, pageSize, queryValue, type Context } from './context.js';

/**
 * GET `/v2/<name>/referrers/<digest>[?artifactType=]`: an image index of the manifests whose
 * subject is `<digest>`. Never 404 (that means "no referrers API" to clients): an unknown
 * repository or digest gives an empty list.
 */
export async function listReferrers(ctx: Context) {
  // 404 is how clients detect a registry without the API (they fall back to the tag schema).
  if (!ctx.options.referrers) throw new OciError('UNSUPPORTED', { status: 404, message: 'the referrers API is disabled' });
  const { repository, reference } = ctx.route;
  const subject = parseDigest(reference).digest;
  const artifactType = queryValue(ctx, 'artifactType') || undefined;
  const { limit } = pageSize(ctx);
  const { manifests, next } = await referrersPage(ctx, repository, subject, artifactType, limit, queryValue(ctx, 'last') || undefined);

  const headers: Record<string, string> = {};
  if (artifactType) headers['OCI-Filters-Applied'] = 'artifactType';
  if (next !== undefined) {
    const params: Record<string, string> = { n: String(limit), last: next };
    if (artifactType) params.artifactType = artifactType;
    headers.Link = nextLink(`/v2/${repository}/referrers/${subject}`, params);
  }
  const index = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests };
  return json(200, index, { ...headers, 'Content-Type': MEDIA_TYPES.ociIndex });
}

/** Referrer rows read from the metadata store at a time: each may carry a manifest's worth of annotations. */
const BATCH = 16;

/**
 * Up to `limit` descriptors after `last`, and the cursor of the next page when there is one. The
 * page also ends before its JSON would pass `maxManifestBytes` (it is an image index, which clients
 * may refuse above that size), so a subject with many annotated referrers never builds a huge body.
 */
async function referrersPage(
  ctx: Context,
  repository: string,
  subject: string,
  artifactType: string | undefined,
  limit: number,
  last: string | undefined,
): Promise<{ manifests: ReferrerRecord[]; next?: string }> {
  const manifests: ReferrerRecord[] = [];
  if (limit === 0) return { manifests };
  let bytes = 0;
  let cursor = last;
  while (manifests.length < limit) {
    const want = Math.min(BATCH, limit - manifests.length);
    // One row more than wanted tells whether anything follows.
    const rows = await ctx.options.metadata.listReferrers(repository, subject, { artifactType }, { limit: want + 1, last: cursor });
    for (const r of rows.slice(0, want)) {
      const descriptor: ReferrerRecord = {
        mediaType: r.mediaType,
        digest: r.digest,
        size: r.size,
        ...(r.artifactType !== undefined ? { artifactType: r.artifactType } : {}),
        ...(r.annotations !== undefined ? { annotations: r.annotations } : {}),
      };
      bytes += Buffer.byteLength(JSON.stringify(descriptor)) + 1;
      if (manifests.length > 0 && bytes > ctx.options.maxManifestBytes) return { manifests, next: cursor };
      manifests.push(descriptor);
      cursor = r.digest;
    }
    if (rows.length <= want) return { manifests };
  }
  return { manifests, next: cursor };
}
