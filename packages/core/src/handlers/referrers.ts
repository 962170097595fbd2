import { parseDigest } from '../digest.js';
import { MEDIA_TYPES } from '../manifest.js';
import { OciError } from '../errors.js';
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
  const last = queryValue(ctx, 'last') || undefined;
  const found =
    limit === 0 ? [] : await ctx.options.metadata.listReferrers(repository, subject, { artifactType }, { limit: limit + 1, last });

  const headers: Record<string, string> = {};
  if (artifactType) headers['OCI-Filters-Applied'] = 'artifactType';
  if (found.length > limit) {
    found.length = limit;
    const params: Record<string, string> = { n: String(limit), last: found[limit - 1].digest };
    if (artifactType) params.artifactType = artifactType;
    headers.Link = nextLink(`/v2/${repository}/referrers/${subject}`, params);
  }
  const manifests = found.map((r) => ({
    mediaType: r.mediaType,
    digest: r.digest,
    size: r.size,
    ...(r.artifactType !== undefined ? { artifactType: r.artifactType } : {}),
    ...(r.annotations !== undefined ? { annotations: r.annotations } : {}),
  }));
  const index = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests };
  return json(200, index, { ...headers, 'Content-Type': MEDIA_TYPES.ociIndex });
}
