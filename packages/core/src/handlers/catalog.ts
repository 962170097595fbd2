import { isRepositoryName } from '../names.js';
import { json, nextLink, pageSize, queryValue, type Context } from './context.js';

/** Largest read of the store's repository list while scanning: batches start at the page size and double up to this. */
const MAX_BATCH = 512;

/** GET `/v2/`: the API version check; auth has already run, so a 200 means "you may talk to me". */
export async function checkVersion(_ctx: Context) {
  return json(200, {});
}

/**
 * GET `/v2/_catalog[?n=&last=]` (Docker extension): repositories in byte order, only those the
 * caller may pull, paginated with `Link`.
 *
 * A request costs at most `catalogScanLimit` (or `n`) checks, however many repositories the
 * registry holds: when the auth hooks name the caller's repositories (`pullableRepositories`),
 * only those are looked up; otherwise the store is read in order and each name is put to
 * `authorize`. A request that reaches its limit answers what it found, possibly fewer than `n`
 * names (the spec allows it), with a `Link` resuming after the last name it checked: across
 * pages every visible repository appears once and no other ever does.
 */
export async function listRepositories(ctx: Context) {
  const { limit } = pageSize(ctx);
  const after = queryValue(ctx, 'last') || undefined;
  const page: string[] = [];
  let resume: string | undefined;
  if (limit > 0) {
    const named = await ctx.pullableRepositories();
    // Names from the hooks may not exist; the store's do.
    const mustExist = named !== undefined;
    let budget = Math.max(limit, ctx.options.catalogScanLimit);
    let checked: string | undefined;
    scan: for await (const batch of named ? namedBatch(named, after) : storedBatches(ctx, after, limit)) {
      for (const name of batch) {
        if (budget-- === 0) {
          resume = checked;
          break scan;
        }
        if ((!mustExist || (await ctx.options.metadata.repositoryExists(name))) && (await ctx.can('pull', name))) {
          if (page.length === limit) {
            resume = page[limit - 1];
            break scan;
          }
          page.push(name);
        }
        checked = name;
      }
    }
  }
  const headers: Record<string, string> = {};
  if (resume !== undefined) headers.Link = nextLink('/v2/_catalog', { n: String(limit), last: resume });
  return json(200, { repositories: page }, headers);
}

/** The names the auth hooks gave that sort after `after`, in byte order. */
async function* namedBatch(names: Iterable<string>, after: string | undefined): AsyncGenerator<string[]> {
  yield [...new Set(names)].filter((name) => isRepositoryName(name) && (after === undefined || name > after)).sort();
}

/** The store's repositories after `after`, read in growing batches. */
async function* storedBatches(ctx: Context, after: string | undefined, limit: number): AsyncGenerator<string[]> {
  let last = after;
  // One more than the page: a caller who may see everything is answered in one read.
  let size = limit + 1;
  for (;;) {
    const batch = await ctx.options.metadata.listRepositories({ limit: size, last });
    yield batch;
    if (batch.length < size) return;
    last = batch[batch.length - 1];
    size = Math.max(size, Math.min(size * 2, MAX_BATCH));
  }
}
