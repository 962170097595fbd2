import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import {
  OciError,
  type Action,
  type AuthHooks,
  type BerthHandler,
  type BerthRequest,
  type BerthResponse,
  type Principal,
} from '@berthjs/core';
import { basicChallenge } from './basic.js';
import { resolveKey, type TokenKey } from './keys.js';
import { parseScopes, type RequestedScope, type TokenAccess } from './scope.js';

/** Longest query string read (characters); real token requests are a few hundred. */
const MAX_QUERY_LENGTH = 8192;

/** Token lifetime unless `expiresInSeconds` says otherwise; `tokenAuth`'s default maximum follows it. */
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 300;

export interface TokenEndpointOptions {
  /** The key that signs tokens: a private key (EC, RSA, Ed25519) or an HMAC secret; see `TokenKey`. */
  signingKey: TokenKey;
  /** The registry's service name: checked against `?service=` and written as the token's audience. */
  service: string;
  /** The token's `iss`; the registry's verifier checks it. */
  issuer: string;
  /**
   * Who is asking, from the token request (e.g. `basicAuth({ verifyPassword }).authenticate`).
   * Undefined means anonymous; an `UnauthorizedError` answers 401 with a Basic challenge.
   */
  authenticate: NonNullable<AuthHooks['authenticate']>;
  /** The host's permission check; each requested action is granted only if it says yes. */
  authorize: NonNullable<AuthHooks['authorize']>;
  /** Issue tokens to callers without credentials (their grants come from `authorize` with `principal: undefined`). Default true. */
  anonymous?: boolean;
  /** The token's `sub` for a principal. Default: its `username` property, else `''`. */
  subject?: (principal: Principal | undefined) => string;
  /** Token lifetime in seconds. Default 300. */
  expiresInSeconds?: number;
  /**
   * Most scopes one request may ask for (`scope` values, counting each space-separated item);
   * more answer 400 before any `authorize` call. Each one costs an `authorize` call and grows the
   * token, which clients send back in a header. Default 50.
   */
  maxScopes?: number;
  /** The path this endpoint answers. Default `/token`. */
  path?: string;
  /** The realm named in the Basic challenge of a refused token request. Default: `service`. */
  realm?: string;
}

/**
 * A Docker token spec endpoint, `GET /token?service=...&scope=...`, as a framework-free handler:
 * mount it with the Koa or Express adapter (`app.use(berth(tokens))`) or call `handle` yourself.
 * It answers `{token, access_token, expires_in, issued_at}` with a short-lived JWT whose `access`
 * holds exactly the requested actions the host's `authorize` allowed (possibly none: a login
 * check without scope gets a token with no grants).
 */
export function createTokenEndpoint(options: TokenEndpointOptions): BerthHandler {
  const key = resolveKey(options.signingKey);
  if (!key.sign) throw new Error('token endpoint: signingKey must be a private key or a secret');
  const signWith = key.sign;
  const path = options.path ?? '/token';
  const ttl = options.expiresInSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS;
  const challenge = basicChallenge(options.realm ?? options.service);
  const subjectOf = options.subject ?? defaultSubject;
  const maxScopes = options.maxScopes ?? 50;

  async function issue(request: BerthRequest, query: URLSearchParams): Promise<BerthResponse> {
    const service = query.get('service');
    if (service !== null && service !== options.service) {
      return errorResponse(400, new OciError('UNSUPPORTED', { message: `unknown service ${service}` }));
    }
    const scopes = query.getAll('scope').flatMap((value) => value.split(' ').filter((item) => item !== ''));
    if (scopes.length > maxScopes) {
      return errorResponse(
        400,
        new OciError('UNSUPPORTED', { message: `too many scopes: ${scopes.length} (at most ${maxScopes} per request)` }),
      );
    }
    const principal = await options.authenticate(request);
    if (principal === undefined && options.anonymous === false) throw new OciError('UNAUTHORIZED', { message: 'credentials required' });
    const access = await granted(principal, parseScopes(scopes));
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(options.issuer)
      .setSubject(subjectOf(principal))
      .setAudience(options.service)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + ttl)
      .setJti(randomUUID())
      .sign(signWith);
    const body = { token, access_token: token, expires_in: ttl, issued_at: new Date(now * 1000).toISOString() };
    return json(200, body, { 'Cache-Control': 'no-store' });
  }

  /** The requested actions `authorize` allows, one entry per repository. */
  async function granted(principal: Principal | undefined, requested: RequestedScope[]): Promise<TokenAccess[]> {
    const byName = new Map<string, Set<Action>>();
    for (const scope of requested) {
      const actions = byName.get(scope.name) ?? new Set<Action>();
      for (const action of scope.actions) actions.add(action);
      byName.set(scope.name, actions);
    }
    const access: TokenAccess[] = [];
    for (const [name, actions] of byName) {
      const allowed: Action[] = [];
      for (const action of actions) {
        if (await allows(principal, action, name)) allowed.push(action);
      }
      if (allowed.length > 0) access.push({ type: 'repository', name, actions: allowed });
    }
    return access;
  }

  /** Only a literal true grants: a sloppy hook returning a truthy object grants nothing. */
  async function allows(principal: Principal | undefined, action: Action, repository: string): Promise<boolean> {
    return (await options.authorize({ principal, action, repository })) === true;
  }

  return {
    async handle(request) {
      const q = request.url.indexOf('?');
      if ((q < 0 ? request.url : request.url.slice(0, q)) !== path) return undefined;
      if (request.method !== 'GET') {
        return errorResponse(405, new OciError('UNSUPPORTED', { status: 405, message: `${request.method} is not allowed here` }), {
          Allow: 'GET',
        });
      }
      const search = q < 0 ? '' : request.url.slice(q + 1);
      if (search.length > MAX_QUERY_LENGTH) {
        return errorResponse(400, new OciError('UNSUPPORTED', { message: `the query is longer than ${MAX_QUERY_LENGTH} characters` }));
      }
      try {
        return await issue(request, new URLSearchParams(search));
      } catch (error) {
        if (error instanceof OciError && error.code === 'UNAUTHORIZED') {
          return errorResponse(401, error, { 'WWW-Authenticate': challenge });
        }
        // The host's own refusals (429 from a login flood, 403...) keep their status.
        if (error instanceof OciError && error.status < 500) return errorResponse(error.status, error, error.headers);
        // Never leak internals (a store or user-database failure) to whoever asks for a token.
        return errorResponse(500, new OciError('UNKNOWN'));
      }
    },
  };
}

function defaultSubject(principal: Principal | undefined): string {
  const username = (principal as { username?: unknown } | undefined)?.username;
  return typeof username === 'string' ? username : '';
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): BerthResponse {
  const body = Buffer.from(JSON.stringify(value));
  return { status, headers: { 'Content-Type': 'application/json', 'Content-Length': String(body.length), ...headers }, body };
}

function errorResponse(status: number, error: OciError, headers: Record<string, string> = {}): BerthResponse {
  return json(status, { errors: [error.toJSON()] }, headers);
}
