import { OciError } from '../errors.js';
import { json, nextLink, pageSize, queryValue, type Context } from './context.js';

/** GET `/v2/<name>/tags/list[?n=&last=]`: tags in byte order, paginated with `Link`. */
export async function listTags(ctx: Context) {
  const { repository } = ctx.route;
  const { metadata } = ctx.options;
  if (!(await metadata.repositoryExists(repository))) throw new OciError('NAME_UNKNOWN', { detail: { name: repository } });
  const { limit } = pageSize(ctx);
  const last = queryValue(ctx, 'last') || undefined;
  if (limit === 0) return json(200, { name: repository, tags: [] });
  // One extra row tells whether a next page exists, so Link is only sent when it leads somewhere.
  const tags = await metadata.listTags(repository, { limit: limit + 1, last });
  const headers: Record<string, string> = {};
  if (tags.length > limit) {
    tags.length = limit;
    headers.Link = nextLink(`/v2/${repository}/tags/list`, { n: String(limit), last: tags[limit - 1] });
  }
  return json(200, { name: repository, tags }, headers);
}
