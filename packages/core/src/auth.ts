import type { BerthRequest } from './http.js';
import { OciError } from './errors.js';

export type Action = 'pull' | 'push' | 'delete';

/** Whoever the host says is calling; Berth never looks inside. */
export type Principal = unknown;

export interface AuthorizeRequest {
  principal: Principal | undefined;
  action: Action;
  repository: string;
}

/**
 * What anonymous callers (no principal) may do:
 * - `'none'`: every `/v2` request, `GET /v2/` included, answers 401 with the challenge before any
 *   hook runs, so clients prompt for credentials; `authorize` never sees an anonymous caller.
 * - `'authorize'`: `GET /v2/` answers 200 and `authorize` decides per repository with
 *   `principal: undefined` (public repositories).
 */
export type AnonymousAccess = 'none' | 'authorize';

/**
 * Why a 401 was sent, as RFC 6750 spells it in a Bearer challenge: `invalid_token` (bad
 * signature, expired, wrong audience...), `insufficient_scope` (a valid token that lacks the scope).
 */
export type ChallengeError = 'invalid_token' | 'insufficient_scope';

export interface AuthHooks {
  /**
   * Identify the caller from the request (its Authorization header, a session cookie...).
   * Return undefined for an anonymous caller; throw an `UnauthorizedError` for credentials that
   * are present but wrong (never silently treated as anonymous). Sync or async.
   */
  authenticate?: (request: BerthRequest) => Principal | undefined | Promise<Principal | undefined>;
  /**
   * Decide whether the caller may perform `action` on `repository`. Sync or async. Default: allow
   * everything. Throwing an `UnauthorizedError` answers 401 with the challenge instead of 403
   * (token auth does that for a token lacking the scope, so the client fetches a better one); in a
   * cross-repository check (mount source, catalog filter) a throw counts as "no".
   */
  authorize?: (request: AuthorizeRequest) => boolean | Promise<boolean>;
  /**
   * The `WWW-Authenticate` value sent with a 401, given the scopes that were needed and, for
   * token auth, why the presented token failed. E.g.
   * `Bearer realm="https://host/token",service="registry",scope="repository:a/b:pull"`.
   * Default: `Basic realm="berth"`.
   */
  challenge?: (scopes: Scope[], error?: ChallengeError) => string;
  /**
   * Every repository the caller may pull, when the auth layer can name them without asking
   * `authorize` about each repository in the store (a token lists its repositories; `tokenAuth`
   * implements this). `_catalog` then looks up only these names, so its cost follows the caller's
   * grants rather than the registry's size. The list must include every repository `authorize`
   * lets the caller pull: one left out is never listed. Names that do not exist, or that
   * `authorize` refuses, are dropped, so a superset is fine. Return undefined to have `_catalog`
   * scan the store instead (bounded per request by `catalogScanLimit`). Sync or async.
   */
  pullableRepositories?: (principal: Principal | undefined) => Iterable<string> | undefined | Promise<Iterable<string> | undefined>;
  /** What callers without a principal may do; see `AnonymousAccess`. Default `'none'` when `authenticate` is set, else `'authorize'`. */
  anonymous?: AnonymousAccess;
  /**
   * The tenant a repository belongs to (e.g. its first path segment), or undefined for none.
   * Content never crosses a tenant boundary through content addressing: a mount (with or without
   * `from`) only links from a repository of the same tenant, whatever the caller may pull.
   * Who may act on a tenant's repositories stays `authorize`'s decision.
   */
  tenantOf?: (repository: string) => string | undefined;
}

export interface Scope {
  repository: string;
  actions: Action[];
}

/** `repository:<name>:<a>,<b>` as in the Docker token spec. */
export function formatScope(scope: Scope): string {
  return `repository:${scope.repository}:${scope.actions.join(',')}`;
}

/**
 * Thrown by `authenticate` (bad credentials) or `authorize` (a token lacking the scope): Berth
 * answers 401 UNAUTHORIZED with the `challenge` for the request's scopes.
 */
export class UnauthorizedError extends OciError {
  constructor(
    message = 'authentication required',
    readonly reason?: ChallengeError,
  ) {
    super('UNAUTHORIZED', { message });
  }
}
