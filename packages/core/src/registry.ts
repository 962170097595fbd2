import { AccessControl } from './access.js';
import type { Action, Scope } from './auth.js';
import { ERROR_CODES, OciError, OciErrors } from './errors.js';
import { RegistryEventEmitter } from './events.js';
import type { Context, Handler } from './handlers/context.js';
import { json } from './handlers/context.js';
import { deleteBlob, getBlob } from './handlers/blobs.js';
import { checkVersion, listRepositories } from './handlers/catalog.js';
import { deleteManifest, getManifest, putManifest } from './handlers/manifests.js';
import { listReferrers } from './handlers/referrers.js';
import { listTags } from './handlers/tags.js';
import { cancelUpload, getUploadStatus, patchUpload, putUpload, startUpload } from './handlers/uploads.js';
import type { BerthHandler, BerthRequest, BerthResponse } from './http.js';
import { ReadCache } from './read-cache.js';
import { resolveOptions, type RegistryOptions } from './options.js';
import { UnavailableError } from './ports/errors.js';
import { parseRoute, splitUrl, type RouteName } from './routes.js';
import { UploadSessions } from './uploads.js';
import { GarbageCollector, type CollectOptions, type CollectReport } from './gc.js';
import type { RepositoryUsage, TenantUsage, UsageRecompute } from './ports/metadata-store.js';

/** For each route and method: the handler and the action it needs on the route's repository. */
const DISPATCH: Record<RouteName, Record<string, [Handler, Action | undefined]>> = {
  base: { GET: [checkVersion, undefined] },
  catalog: { GET: [listRepositories, undefined] },
  tags: { GET: [listTags, 'pull'] },
  manifest: { GET: [getManifest, 'pull'], PUT: [putManifest, 'push'], DELETE: [deleteManifest, 'delete'] },
  blob: { GET: [getBlob, 'pull'], DELETE: [deleteBlob, 'delete'] },
  uploads: { POST: [startUpload, 'push'] },
  upload: { GET: [getUploadStatus, 'push'], PATCH: [patchUpload, 'push'], PUT: [putUpload, 'push'], DELETE: [cancelUpload, 'push'] },
  referrers: { GET: [listReferrers, 'pull'] },
};

export interface Registry extends BerthHandler {
  /**
   * Answer one request. Resolves to undefined when the path is not under `/v2` (the host app's
   * own routes); every protocol error is rendered here, never thrown.
   */
  handle(request: BerthRequest): Promise<BerthResponse | undefined>;
  events: RegistryEventEmitter;
  /**
   * Free what uploads left behind: sessions idle for longer than `uploadTtlMs`, and temp files,
   * staging objects or multipart uploads no session knows of. Returns how many.
   */
  sweepUploads(): Promise<number>;
  /**
   * Online garbage collection: delete what no tag or manifest keeps, while pushes go on (see the
   * README). Resolves with what was deleted, or `skipped` when another process is collecting.
   */
  collectGarbage(options?: CollectOptions): Promise<CollectReport>;
  /** Stored bytes of a tenant (each blob once) or of a repository (undefined if it does not exist). */
  usage(scope: { tenant: string }): Promise<TenantUsage>;
  usage(scope: { repository: string }): Promise<RepositoryUsage | undefined>;
  /** Recompute usage from scratch, correct the running figures where they differ, report what differed. */
  recomputeUsage(options?: { onProgress?: (done: number, total: number) => void }): Promise<UsageRecompute>;
  /** Close the stores. */
  close(): Promise<void>;
}

export function createRegistry(input: RegistryOptions): Registry {
  const options = resolveOptions(input);
  const events = new RegistryEventEmitter();
  const uploads = new UploadSessions(options.blobs, options.metadata, events, options.uploadLeaseMs, options.quotaOf);
  const sweepUploads = () => uploads.sweep(options.uploadTtlMs);
  const cache = new ReadCache(options.metadata, options.readCacheTtlMs);
  const collector = new GarbageCollector(options.blobs, options.metadata, sweepUploads, cache, events, options.gcLeaseMs);
  const access = new AccessControl(options);

  async function dispatch(request: BerthRequest): Promise<BerthResponse | undefined> {
    const { path, query } = splitUrl(request.url);
    const route = parseRoute(path);
    if (!route) return undefined;
    const method = request.method === 'HEAD' ? 'GET' : request.method;
    const entry = DISPATCH[route.name][method];
    if (!entry) {
      throw new OciError('UNSUPPORTED', {
        status: 405,
        message: `${request.method} is not allowed here`,
        headers: { Allow: allowed(route.name) },
      });
    }
    const [handler, action] = entry;
    const scopes: Scope[] = action ? [{ repository: route.repository, actions: scopeActions(action) }] : [];
    const principal = await access.identify(request, scopes);
    if (action) await access.require(principal, action, route.repository, scopes);
    const ctx: Context = {
      request,
      route,
      query,
      principal,
      options,
      uploads,
      cache,
      events,
      can: (act, repository) => access.can(principal, act, repository),
      pullableRepositories: () => access.pullableRepositories(principal),
      sameTenant: (a, b) => access.sameTenant(a, b),
      tenant: (repository) => access.tenant(repository),
    };
    return handler(ctx);
  }

  return {
    events,
    async handle(request) {
      let response: BerthResponse | undefined;
      try {
        response = await dispatch(request);
      } catch (error) {
        response = renderError(error, request, events);
      }
      if (response) response.headers['Docker-Distribution-API-Version'] = 'registry/2.0';
      return response;
    },
    sweepUploads,
    collectGarbage: (collectOptions) => collector.collect(collectOptions),
    usage: ((scope: { tenant: string } | { repository: string }) =>
      'tenant' in scope
        ? options.metadata.tenantUsage(scope.tenant)
        : options.metadata.repositoryUsage(scope.repository)) as Registry['usage'],
    recomputeUsage: (recompute) =>
      options.metadata.recomputeUsage({ tenantOf: (repository) => access.tenant(repository), onProgress: recompute?.onProgress }),
    async close() {
      await Promise.all([options.blobs.close?.(), options.metadata.close()]);
    },
  };
}

/** A pull needs pull; a push implies pull in Docker scopes (clients ask for `pull,push`). */
function scopeActions(action: Action): Action[] {
  return action === 'push' ? ['pull', 'push'] : [action];
}

function allowed(route: RouteName): string {
  const methods = Object.keys(DISPATCH[route]);
  if (methods.includes('GET')) methods.push('HEAD');
  return methods.join(', ');
}

/** The one place errors become responses: `{"errors":[...]}`; internals never leak. */
export function renderError(error: unknown, request: BerthRequest, events: RegistryEventEmitter): BerthResponse {
  let errors: OciError[];
  if (error instanceof OciErrors) errors = error.errors;
  else if (error instanceof OciError) errors = [error];
  else if (error instanceof UnavailableError) {
    events.emit('request.failed', { error, method: request.method, url: request.url });
    errors = [new OciError('UNAVAILABLE', { headers: { 'Retry-After': '5' } })];
  } else {
    events.emit('request.failed', { error, method: request.method, url: request.url });
    errors = [new OciError('UNKNOWN', { message: ERROR_CODES.UNKNOWN.message })];
  }
  const first = errors[0];
  const response = json(first.status, { errors: errors.map((e) => e.toJSON()) }, { ...first.headers });
  if (request.method === 'HEAD') response.body = undefined;
  return response;
}
