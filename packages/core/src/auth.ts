import type { BerthRequest } from './http.js';

export type Action = 'pull' | 'push' | 'delete';

/** Whoever the host says is calling; Berth never looks inside. */
export type Principal = unknown;

export interface AuthorizeRequest {
  principal: Principal | undefined;
  action: Action;
  repository: string;
}

export interface AuthHooks {
  /**
   * Identify the caller from the request (its Authorization header, a session cookie...).
   * Return undefined for an anonymous caller. Throwing an OciError('UNAUTHORIZED') rejects bad
   * credentials outright.
   */
  authenticate?: (request: BerthRequest) => Principal | undefined | Promise<Principal | undefined>;
  /** Decide whether the caller may perform `action` on `repository`. Default: allow everything. */
  authorize?: (request: AuthorizeRequest) => boolean | Promise<boolean>;
  /**
   * The `WWW-Authenticate` value sent with a 401, given the scopes that were refused (e.g.
   * `Bearer realm="https://host/token",service="registry",scope="repository:a/b:pull"`).
   * Default: `Basic realm="berth"`.
   */
  challenge?: (scopes: Scope[]) => string;
}

export interface Scope {
  repository: string;
  actions: Action[];
}

/** `repository:<name>:<a>,<b>` as in the Docker token spec. */
export function formatScope(scope: Scope): string {
  return `repository:${scope.repository}:${scope.actions.join(',')}`;
}
