import type { Readable } from 'node:stream';
import type { Action, Principal } from '../auth.js';
import { OciError } from '../errors.js';
import type { RegistryEventEmitter } from '../events.js';
import { header, type BerthRequest, type BerthResponse } from '../http.js';
import type { ResolvedOptions } from '../options.js';
import type { Route } from '../routes.js';
import type { UploadSessions } from '../uploads.js';
import type { ReadCache } from '../read-cache.js';
import type { Budget } from '../limits.js';

/** Everything a handler needs for one request. */
export interface Context {
  request: BerthRequest;
  route: Route;
  query: Map<string, string[]>;
  principal: Principal | undefined;
  options: ResolvedOptions;
  uploads: UploadSessions;
  cache: ReadCache;
  /** Manifest bytes held in memory by all requests (see `manifestMemoryBytes`). */
  manifestMemory: Budget;
  events: RegistryEventEmitter;
  /** Whether the caller may perform `action` on another repository (mount source, catalog). */
  can(action: Action, repository: string): Promise<boolean>;
  /** The repositories the caller may pull, when the auth hooks can name them; undefined: ask `can` about each. */
  pullableRepositories(): Promise<Iterable<string> | undefined>;
  /** Whether content may move between two repositories (same tenant, see `tenantOf`). */
  sameTenant(a: string, b: string): boolean;
  /** The repository's tenant: `tenantOf`, else `''` (one tenant for the whole registry). */
  tenant(repository: string): string;
}

export type Handler = (ctx: Context) => Promise<BerthResponse>;

export function queryValue(ctx: Context, name: string): string | undefined {
  return ctx.query.get(name)?.[0];
}

export function requestHeader(ctx: Context, name: string): string | undefined {
  return header(ctx.request, name);
}

export function respond(status: number, headers: Record<string, string> = {}, body?: Buffer | Readable): BerthResponse {
  return { status, headers, body };
}

export function json(status: number, value: unknown, headers: Record<string, string> = {}): BerthResponse {
  const body = Buffer.from(JSON.stringify(value));
  return respond(status, { 'Content-Type': 'application/json', 'Content-Length': String(body.length), ...headers }, body);
}

/** A page size from `?n=`: absent → the maximum; malformed → 400. */
export function pageSize(ctx: Context): { limit: number; explicit: boolean } {
  const n = queryValue(ctx, 'n');
  if (n === undefined || n === '') return { limit: ctx.options.maxPageSize, explicit: false };
  if (!/^\d{1,9}$/.test(n)) throw new OciError('UNSUPPORTED', { status: 400, message: 'n must be a non-negative integer', detail: { n } });
  return { limit: Math.min(Number(n), ctx.options.maxPageSize), explicit: true };
}

/** RFC 5988 `Link` to the next page. */
export function nextLink(path: string, params: Record<string, string>): string {
  const query = Object.entries(params)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&');
  return `<${path}?${query}>; rel="next"`;
}

/** Answer 405 UNSUPPORTED when an operation is switched off. */
export function assertEnabled(enabled: boolean, what: string): void {
  if (!enabled) throw new OciError('UNSUPPORTED', { status: 405, message: `${what} is disabled on this registry` });
}
