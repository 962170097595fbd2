import { OciError } from './errors.js';
import { assertRepositoryName } from './names.js';

export type RouteName = 'base' | 'catalog' | 'tags' | 'manifest' | 'blob' | 'uploads' | 'upload' | 'referrers';

export interface Route {
  name: RouteName;
  /** Repository name, for every route but `base` and `catalog`. */
  repository: string;
  /** Tag or digest (manifest), digest (blob, referrers) or session id (upload). */
  reference: string;
}

/**
 * Split a `/v2/...` path into a route. Repository names contain `/` and a component may itself be
 * `blobs` or `manifests`, so the path is matched from the right (as olareg's matchV2 does) and
 * everything left of the matched suffix is the repository name. Returns undefined when the path is
 * not under /v2 at all (the host app may serve it).
 */
export function parseRoute(path: string): Route | undefined {
  if (path !== '/v2' && !path.startsWith('/v2/')) return undefined;
  const rest = path.slice(3);
  if (rest === '' || rest === '/') return { name: 'base', repository: '', reference: '' };
  if (rest === '/_catalog') return { name: 'catalog', repository: '', reference: '' };

  const segments = rest.slice(1).split('/').map(decodeSegment);
  const n = segments.length;
  const at = (i: number) => segments[n + i];
  const name = (drop: number) => repository(segments.slice(0, n - drop));

  if (n >= 3 && at(-2) === 'tags' && at(-1) === 'list') return { name: 'tags', repository: name(2), reference: '' };
  if (n >= 3 && at(-2) === 'manifests') return { name: 'manifest', repository: name(2), reference: at(-1) };
  if (n >= 3 && at(-2) === 'referrers') return { name: 'referrers', repository: name(2), reference: at(-1) };
  // `/blobs/uploads/` (trailing slash gives an empty last segment) or `/blobs/uploads`.
  if (n >= 4 && at(-3) === 'blobs' && at(-2) === 'uploads' && at(-1) === '') {
    return { name: 'uploads', repository: name(3), reference: '' };
  }
  if (n >= 3 && at(-2) === 'blobs' && at(-1) === 'uploads') return { name: 'uploads', repository: name(2), reference: '' };
  if (n >= 4 && at(-3) === 'blobs' && at(-2) === 'uploads') return { name: 'upload', repository: name(3), reference: at(-1) };
  if (n >= 3 && at(-2) === 'blobs') return { name: 'blob', repository: name(2), reference: at(-1) };
  throw new OciError('NAME_UNKNOWN', { status: 404, message: 'no such endpoint', detail: { path } });
}

function repository(segments: string[]): string {
  const name = segments.join('/');
  assertRepositoryName(name);
  return name;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new OciError('NAME_INVALID', { message: 'malformed percent-encoding in path' });
  }
}

/**
 * Parse a raw query string. Unlike URLSearchParams, a literal `+` stays a `+`: media types such
 * as `application/vnd.oci.image.manifest.v1+json` arrive unencoded from some clients.
 */
export function parseQuery(raw: string): Map<string, string[]> {
  const query = new Map<string, string[]>();
  for (const pair of raw.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const key = safeDecode(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? '' : safeDecode(pair.slice(eq + 1));
    const values = query.get(key);
    if (values) values.push(value);
    else query.set(key, [value]);
  }
  return query;
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Split `url` into its path and parsed query. */
export function splitUrl(url: string): { path: string; query: Map<string, string[]> } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: new Map() } : { path: url.slice(0, q), query: parseQuery(url.slice(q + 1)) };
}
