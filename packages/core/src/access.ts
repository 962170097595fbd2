import { formatScope, UnauthorizedError, type Action, type AnonymousAccess, type AuthHooks, type Principal, type Scope } from './auth.js';
import { OciError } from './errors.js';
import type { BerthRequest } from './http.js';

/**
 * The auth hooks, run the same way for every request: who is calling, whether they may do what
 * the route needs (401 with a challenge, or 403), and the tenant rule for cross-repository reads.
 */
export class AccessControl {
  private readonly anonymous: AnonymousAccess;

  constructor(private readonly hooks: AuthHooks) {
    this.anonymous = hooks.anonymous ?? (hooks.authenticate ? 'none' : 'authorize');
  }

  /** The caller, or undefined; bad credentials and (with `anonymous: 'none'`) no credentials are 401. */
  async identify(request: BerthRequest, scopes: Scope[]): Promise<Principal | undefined> {
    let principal: Principal | undefined;
    try {
      principal = this.hooks.authenticate ? await this.hooks.authenticate(request) : undefined;
    } catch (error) {
      throw this.withChallenge(error, scopes);
    }
    if (principal === undefined && this.anonymous === 'none') throw this.unauthorized(scopes);
    return principal;
  }

  /** Throw 401 (anonymous, or the hook asked for a challenge) or 403 unless `action` is allowed. */
  async require(principal: Principal | undefined, action: Action, repository: string, scopes: Scope[]): Promise<void> {
    let allowed: boolean;
    try {
      allowed = await this.authorize(principal, action, repository);
    } catch (error) {
      throw this.withChallenge(error, scopes);
    }
    if (allowed) return;
    if (principal === undefined) throw this.unauthorized(scopes);
    throw new OciError('DENIED', { detail: scopes.map(formatScope) });
  }

  /** Whether `action` on another repository is allowed (mount source, catalog); a refusal of any kind is false. */
  async can(principal: Principal | undefined, action: Action, repository: string): Promise<boolean> {
    try {
      return await this.authorize(principal, action, repository);
    } catch (error) {
      if (error instanceof OciError && (error.code === 'UNAUTHORIZED' || error.code === 'DENIED')) return false;
      throw error;
    }
  }

  /** The repositories the caller may pull, if the hooks can name them (`pullableRepositories`); undefined means "scan". */
  async pullableRepositories(principal: Principal | undefined): Promise<Iterable<string> | undefined> {
    try {
      return await this.hooks.pullableRepositories?.(principal);
    } catch (error) {
      throw this.withChallenge(error, []);
    }
  }

  /** Whether content may move between the two repositories: same tenant (or no tenant hook). */
  sameTenant(a: string, b: string): boolean {
    return !this.hooks.tenantOf || this.hooks.tenantOf(a) === this.hooks.tenantOf(b);
  }

  /** The repository's tenant for usage and quotas: `tenantOf`, else `''` (the whole registry). */
  tenant(repository: string): string {
    return this.hooks.tenantOf?.(repository) ?? '';
  }

  private async authorize(principal: Principal | undefined, action: Action, repository: string): Promise<boolean> {
    if (!this.hooks.authorize) return true;
    return (await this.hooks.authorize({ principal, action, repository })) === true;
  }

  private unauthorized(scopes: Scope[], reason?: UnauthorizedError['reason'], message?: string): OciError {
    return new OciError('UNAUTHORIZED', {
      message,
      detail: scopes.map(formatScope),
      headers: { 'WWW-Authenticate': this.hooks.challenge ? this.hooks.challenge(scopes, reason) : 'Basic realm="berth"' },
    });
  }

  /** A hook's 401 gets the challenge for this request's scopes; other errors pass through. */
  private withChallenge(error: unknown, scopes: Scope[]): unknown {
    if (!(error instanceof OciError) || error.code !== 'UNAUTHORIZED' || error.headers['WWW-Authenticate']) return error;
    return this.unauthorized(scopes, error instanceof UnauthorizedError ? error.reason : undefined, error.message);
  }
}
