import { json, nextLink, pageSize, queryValue, type Context } from './context.js';

/** GET `/v2/`: the API version check; auth has already run, so a 200 means "you may talk to me". */
export async function checkVersion(_ctx: Context) {
  return json(200, {});
}

/**
 * GET `/v2/_catalog[?n=&last=]` (Docker extension): repositories in byte order, only those the
 * caller may pull, paginated with `Link`.
 */
export async function listRepositories(ctx: Context) {
  const { limit } = pageSize(ctx);
  let last = queryValue(ctx, 'last') || undefined;
  const visible: string[] = [];
  let more = false;
  // Filtering by permission means a page of the store may yield fewer names: keep reading.
  while (limit > 0 && !more) {
    const batch = await ctx.options.metadata.listRepositories({ limit: limit + 1, last });
    for (const name of batch) {
      if (!(await ctx.can('pull', name))) continue;
      if (visible.length === limit) {
        more = true;
        break;
      }
      visible.push(name);
    }
    if (batch.length <= limit) break;
    last = batch[batch.length - 1];
  }
  const headers: Record<string, string> = {};
  if (more) headers.Link = nextLink('/v2/_catalog', { n: String(limit), last: visible[visible.length - 1] });
  return json(200, { repositories: visible }, headers);
}
