import type { MetadataStore } from './ports/index.js';

/** One tag as a host app shows it. */
export interface TagSummary {
  tag: string;
  /** The manifest the tag points at. */
  digest: string;
  mediaType: string;
  /**
   * Bytes a pull of the tag transfers, as registries' UIs show it: the manifest, its config and
   * its layers (compressed, as stored); for an index, itself and each of its manifests' totals.
   */
  size: number;
}

export interface RepositorySummary {
  repository: string;
  tags: TagSummary[];
}

export interface InventoryOptions {
  /** Only repositories whose names start with this, e.g. a tenant's `acme/`. */
  prefix: string;
  /** At most this many repositories (default 100) and tags per repository (default 100). */
  limit?: number;
}

/** An index inside an index is legal; deeper nesting is not followed (its descriptor size counts). */
const MAX_DEPTH = 2;

/**
 * What a tenant holds, for the host app's own pages: the repositories under `prefix` with their
 * tags and sizes. It reads the metadata store directly and runs no auth hooks, so the app decides
 * whom it shows this to (its signed-in user's tenant, say).
 */
export async function inventory(metadata: MetadataStore, { prefix, limit = 100 }: InventoryOptions): Promise<RepositorySummary[]> {
  const repositories: string[] = [];
  // Names come in byte order, so the prefix's repositories are one run starting right after it.
  let last = prefix;
  while (repositories.length < limit) {
    const page = await metadata.listRepositories({ last, limit: Math.min(limit, 100) });
    const matching = page.filter((name) => name.startsWith(prefix));
    repositories.push(...matching.slice(0, limit - repositories.length));
    if (page.length === 0 || matching.length < page.length) break;
    last = page[page.length - 1];
  }
  return Promise.all(repositories.map(async (repository) => ({ repository, tags: await tagsOf(metadata, repository, limit) })));
}

async function tagsOf(metadata: MetadataStore, repository: string, limit: number): Promise<TagSummary[]> {
  const tags = await metadata.listTags(repository, { limit });
  const summaries = await Promise.all(
    tags.map(async (tag) => {
      const digest = await metadata.resolveTag(repository, tag);
      const manifest = digest === undefined ? undefined : await metadata.getManifest(repository, digest);
      if (!digest || !manifest) return undefined; // untagged meanwhile
      return { tag, digest, mediaType: manifest.mediaType, size: await sizeOf(metadata, repository, manifest.content, 1) };
    }),
  );
  return summaries.filter((summary) => summary !== undefined);
}

interface Descriptor {
  digest?: unknown;
  size?: unknown;
}

async function sizeOf(metadata: MetadataStore, repository: string, content: Buffer, depth: number): Promise<number> {
  let parsed: { config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[] };
  try {
    parsed = JSON.parse(content.toString('utf8'));
  } catch {
    return content.length;
  }
  const sizeField = (d: Descriptor | undefined) => (typeof d?.size === 'number' && d.size >= 0 ? d.size : 0);
  let total = content.length + sizeField(parsed.config);
  for (const layer of Array.isArray(parsed.layers) ? parsed.layers : []) total += sizeField(layer);
  for (const child of Array.isArray(parsed.manifests) ? parsed.manifests : []) {
    const record = depth < MAX_DEPTH && typeof child.digest === 'string' ? await metadata.getManifest(repository, child.digest) : undefined;
    total += record ? await sizeOf(metadata, repository, record.content, depth + 1) : sizeField(child);
  }
  return total;
}
