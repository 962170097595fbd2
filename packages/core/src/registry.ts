import { Readable } from 'node:stream';
import { AccessControl } from './access.js';
import type { Action, Scope } from './auth.js';
import { OciError, OciErrors, type OciErrorCode, type OciErrorOptions } from './errors.js';
import { RegistryEventEmitter } from './events.js';
import type { Context, Handler } from './handlers/context.js';
import { json } from './handlers/context.js';
import { deleteBlob, getBlob } from './handlers/blobs.js';
import { checkVersion, listRepositories } from './handlers/catalog.js';
import { deleteManifest, getManifest, putManifest } from './handlers/manifests.js';
import { listReferrers } from './handlers/referrers.js';
import { listTags } from './handlers/tags.js';
import { cancelUpload, getUploadStatus, patchUpload, putUpload, startUpload } from './handlers/uploads.js';
import { header, type BerthHandler, type BerthRequest, type BerthResponse } from './http.js';
import { StoreProbe, type HealthReport } from './health.js';
import { Budget, RETRY_AFTER_SECONDS } from './limits.js';
import { observeHandler, RequestTracker, type DrainReport } from './observe.js';
import { ReadCache, type CacheKind } from './read-cache.js';
import { resolveOptions, type RegistryOptions, type ResolvedOptions } from './options.js';
import { ConflictError, NotFoundError, StorageFullError, TooLargeError, UnavailableError, UnsupportedError } from './ports/errors.js';
import { BodyError, settleBody } from './request-body.js';
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
  /**
   * Readiness: both stores answer their probe within `healthTimeoutMs`. A failing store is named
   * (`blobs.store`, `metadata.store`) with the reason. Never rejects.
   */
  health(): Promise<HealthReport>;
  /** Counters for metrics: requests in flight, uploads streaming now, read cache hits and misses. */
  stats(): RegistryStats;
  /**
   * Wrap another handler (the token endpoint, the host's own routes) so that its requests get
   * request ids, log lines, `request.completed` facts under route name `route`, and are drained
   * by `close()` like the registry's own. `level: 'debug'` logs them at debug (health probes).
   */
  observe(handler: BerthHandler, route: string, options?: { level?: 'info' | 'debug' }): BerthHandler;
  /**
   * Drain, then close the stores: requests in flight (and any that arrive meanwhile) get up to
   * `timeoutMs` (default 30 s) to finish; the rest are cut (their streams destroyed, so an upload
   * stays resumable at its last complete chunk). Requests after that answer 503 UNAVAILABLE.
   * How many were in flight and how many were cut: `stats().closed`.
   */
  close(options?: { timeoutMs?: number }): Promise<void>;
}

export interface RegistryStats {
  /** Requests being served now. */
  inFlight: number;
  /** Of those, uploads streaming bytes into a session (POST, PATCH or PUT). */
  uploadsInProgress: number;
  /** Read cache lookups since the start, per kind. */
  cache: Record<CacheKind, { hits: number; misses: number }>;
  /** Once `close()` has drained: requests in flight when it began, and how many it had to cut. */
  closed?: DrainReport;
}

export function createRegistry(input: RegistryOptions): Registry {
  const options = resolveOptions(input);
  const events = new RegistryEventEmitter();
  const uploads = new UploadSessions(options.blobs, options.metadata, events, options.uploadLeaseMs, options.quotaOf, {
    bodyIdleTimeoutMs: options.bodyIdleTimeoutMs,
    bodyMinBytesPerSecond: options.bodyMinBytesPerSecond,
    maxConcurrent: options.maxConcurrentUploads,
  });
  const sweepUploads = () => uploads.sweep(options.uploadTtlMs);
  const cache = new ReadCache(options.metadata, {
    ttlMs: options.readCacheTtlMs,
    maxBytes: options.readCacheMaxBytes,
    maxManifestBytes: options.readCacheMaxManifestBytes,
  });
  const collector = new GarbageCollector(options.blobs, options.metadata, sweepUploads, cache, events, options.gcLeaseMs);
  const manifestMemory = new Budget(options.manifestMemoryBytes, 'manifest bytes in memory');
  const access = new AccessControl(options);
  const drain = { bytes: Math.max(16 * 1024 * 1024, 2 * options.maxManifestBytes), ms: 10_000 };
  const tracker = new RequestTracker({ ...options, events });
  const probes = { blobs: new StoreProbe(options.blobs), metadata: new StoreProbe(options.metadata) };
  let state: 'open' | 'closing' | 'closed' = 'open';
  let closed: DrainReport | undefined;

  async function dispatch(request: BerthRequest, tracked: ReturnType<RequestTracker['begin']>): Promise<BerthResponse | undefined> {
    const { path, query } = splitUrl(request.url);
    const route = parseRoute(path);
    if (!route) return undefined;
    tracked.facts.route = route.name;
    if (route.repository) tracked.facts.repository = route.repository;
    if (state === 'closed')
      throw new OciError('UNAVAILABLE', { message: 'the registry is shutting down', headers: { 'Retry-After': '5' } });
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
    let principal: unknown;
    let refused: unknown;
    try {
      principal = await access.identify(request, scopes);
      tracker.identify(tracked, principal);
    } catch (error) {
      refused = error; // rate-limited all the same (by address): failed logins count too
    }
    await limitRate(options, { request, principal, principalName: tracked.facts.principal, route, client: tracked.facts.client });
    if (refused) throw refused;
    if (action) await access.require(principal, action, route.repository, scopes);
    const ctx: Context = {
      request,
      route,
      query,
      principal,
      options,
      uploads,
      cache,
      manifestMemory,
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
      // Before any await: an 'error' nobody hears (a body stream that fails while auth runs)
      // would take the host's whole process down. Readers add their own listeners later.
      request.body.on('error', ignore);
      const tracked = tracker.begin(request);
      let response: BerthResponse | undefined;
      try {
        response = await dispatch(request, tracked);
      } catch (error) {
        tracked.facts.error = error;
        response = renderError(error, request, events, tracked.facts.route as RouteName | undefined, tracked.facts.requestId);
        // An early answer reaches a client still sending its body only once the body is read.
        if (
          response.headers.Connection !== 'close' &&
          hasBody(request) &&
          !(await settleBody(request.body, drain, header(request, 'content-length')))
        ) {
          response.headers.Connection = 'close';
        }
      }
      if (!response) {
        tracker.forget(tracked);
        return undefined;
      }
      response.headers['Docker-Distribution-API-Version'] = 'registry/2.0';
      if (response.body instanceof Readable) response.body.on('error', ignore);
      if (response.body && options.sendIdleTimeoutMs > 0) response.idleTimeoutMs = options.sendIdleTimeoutMs;
      tracker.respond(tracked, response);
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
    async health() {
      const [blobs, metadata] = await Promise.all([
        probes.blobs.check(options.healthTimeoutMs),
        probes.metadata.check(options.healthTimeoutMs),
      ]);
      const closing = state !== 'open';
      return { ok: blobs.ok && metadata.ok && !closing, blobs, metadata, ...(closing ? { closing } : {}) };
    },
    stats() {
      let inFlight = 0;
      let uploadsInProgress = 0;
      for (const { method, route } of tracker.current()) {
        inFlight++;
        if ((route === 'upload' || route === 'uploads') && method !== 'GET' && method !== 'DELETE') uploadsInProgress++;
      }
      return { inFlight, uploadsInProgress, cache: structuredClone(cache.counts), ...(closed ? { closed: { ...closed } } : {}) };
    },
    observe: (handler, route, { level = 'info' } = {}) => observeHandler(tracker, handler, route, level),
    async close({ timeoutMs = 30_000 } = {}) {
      if (state !== 'open') return;
      state = 'closing';
      closed = await tracker.drain(timeoutMs);
      state = 'closed';
      await Promise.all([options.blobs.close?.(), options.metadata.close()]);
    },
  };
}

/** 429 TOOMANYREQUESTS with Retry-After when the `rateLimit` hook says so. */
async function limitRate(options: ResolvedOptions, input: Parameters<NonNullable<ResolvedOptions['rateLimit']>>[0]): Promise<void> {
  if (!options.rateLimit) return;
  const wait = await options.rateLimit(input);
  if (wait === undefined || !(wait > 0)) return;
  const seconds = String(Math.ceil(wait));
  throw new OciError('TOOMANYREQUESTS', { detail: { retryAfterSeconds: Number(seconds) }, headers: { 'Retry-After': seconds } });
}

function ignore(): void {}

/** Whether the request announces a body (Node's parser has none to read otherwise). */
function hasBody(request: BerthRequest): boolean {
  const length = header(request, 'content-length');
  return (length !== undefined && length !== '0') || header(request, 'transfer-encoding') !== undefined;
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

/** The OCI error code for a request's body or content on each route. */
function contentCode(route: RouteName | undefined): OciErrorCode {
  return route === 'manifest' ? 'MANIFEST_INVALID' : 'BLOB_UPLOAD_INVALID';
}

const UNKNOWN_BY_ROUTE: Partial<Record<RouteName, OciErrorCode>> = {
  upload: 'BLOB_UPLOAD_UNKNOWN',
  blob: 'BLOB_UNKNOWN',
  manifest: 'MANIFEST_UNKNOWN',
};

/**
 * The one table from everything a request can fail with to the client's answer. Protocol errors
 * pass as they are; a body the client broke off, store errors and backend failures get the
 * status the spec gives them on that route. Only server-side failures (5xx) are reported on
 * `request.failed`; a client that hung up (499) is not a failure.
 */
function toOciErrors(error: unknown, route: RouteName | undefined): { errors: OciError[]; failed: boolean } {
  if (error instanceof OciErrors) return { errors: error.errors, failed: false };
  if (error instanceof OciError) return { errors: [error], failed: false };
  const one = (code: OciErrorCode, init: OciErrorOptions = {}, failed = false) => ({ errors: [new OciError(code, init)], failed });
  const body = causeOf(error, BodyError);
  if (body?.reason === 'aborted') return one(contentCode(route), { status: 499, message: body.message });
  if (body?.reason === 'idle') return one(contentCode(route), { status: 408, message: body.message, headers: { Connection: 'close' } });
  if (body) return one(contentCode(route), { message: body.message });
  const retry = { 'Retry-After': String(RETRY_AFTER_SECONDS) };
  if (causeOf(error, StorageFullError) || isDiskFull(error)) {
    return one('UNAVAILABLE', { message: 'storage is full: the registry cannot store more data now', headers: retry }, true);
  }
  if (error instanceof UnavailableError) return one('UNAVAILABLE', { headers: retry }, true);
  if (error instanceof NotFoundError) return one(UNKNOWN_BY_ROUTE[route ?? 'base'] ?? 'NAME_UNKNOWN');
  if (error instanceof ConflictError) {
    // A concurrent request won: a chunk's session moved on (416), the manifest or blob it touched
    // was deleted meanwhile (404 for that route), anything else is a 409 to retry.
    if (route === 'upload')
      return one('BLOB_UPLOAD_INVALID', { status: 416, message: 'the upload session was changed by another request' });
    const gone = UNKNOWN_BY_ROUTE[route ?? 'base'];
    if (gone) return one(gone, { message: 'it was changed or deleted by a concurrent request' });
    return one('UNKNOWN', { status: 409, message: 'a concurrent request changed the same data; retry' });
  }
  if (error instanceof TooLargeError) return one('SIZE_INVALID', { status: 413, message: 'larger than the storage backend can hold' });
  if (error instanceof UnsupportedError) return one('UNSUPPORTED', { message: 'the storage backend does not support this operation' });
  return one('UNKNOWN', {}, true);
}

/** The error or one of its causes, if it is a `type`. */
function causeOf<T>(error: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) if (e instanceof type) return e;
  return undefined;
}

/** ENOSPC or EDQUOT anywhere in the chain (a store that did not translate it). */
function isDiskFull(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  }
  return false;
}

/** The one place errors become responses: `{"errors":[...]}`; internals never leak. */
export function renderError(
  error: unknown,
  request: BerthRequest,
  events: RegistryEventEmitter,
  route?: RouteName,
  requestId?: string,
): BerthResponse {
  const { errors, failed } = toOciErrors(error, route);
  if (failed) events.emit('request.failed', { error, method: request.method, url: request.url, requestId });
  const first = errors[0];
  const response = json(first.status, { errors: errors.map((e) => e.toJSON()) }, { ...first.headers });
  if (request.method === 'HEAD') response.body = undefined;
  return response;
}
