import { errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { formatScope, header, UnauthorizedError, type AuthHooks, type Scope } from '@berthjs/core';
import { quote } from './basic.js';
import { resolveKey, type ResolvedKey, type TokenKey } from './keys.js';
import { grants, type TokenAccess } from './scope.js';
import { DEFAULT_TOKEN_LIFETIME_SECONDS } from './token-endpoint.js';

export interface TokenAuthOptions {
  /**
   * Where clients fetch tokens: the absolute URL of the token endpoint, sent in the challenge. A
   * function is called per challenge (for a URL known only once the server listens).
   */
  realm: string | (() => string);
  /** The service name: sent in the challenge, required as the token's audience. */
  service: string;
  /** The issuer tokens must name (`iss`). */
  issuer: string;
  /**
   * Keys that verify tokens: the current signing key plus, during a rotation, the previous ones
   * (public keys suffice). A token is matched to a key by its `kid`.
   */
  keys: TokenKey[];
  /** Leeway for `exp`, `nbf` and `iat` against clock skew between replicas, in seconds. Default 30. */
  clockToleranceSeconds?: number;
  /**
   * Longest lifetime accepted, in seconds: a token whose `exp` minus `iat` is larger, or that was
   * issued longer ago than this (plus the tolerance), is refused, whatever key signed it. Set it
   * to the issuer's `expiresInSeconds`. Default 300 (`createTokenEndpoint`'s default lifetime)
   * plus `clockToleranceSeconds`.
   */
  maxLifetimeSeconds?: number;
}

/** A caller holding a verified token: its subject and exactly what the token grants. */
export class TokenPrincipal {
  constructor(
    readonly subject: string,
    readonly access: TokenAccess[],
    readonly claims: JWTPayload,
  ) {}
}

/**
 * Registry hooks for Bearer tokens from `createTokenEndpoint`: `authenticate` verifies signature,
 * expiry, audience and issuer (any failure, or a header that is not a Bearer token, is a 401 with
 * the challenge, never anonymous); `authorize` checks the token's `access` (a missing scope is a 401
 * with `error="insufficient_scope"`, so clients fetch a token for it); `pullableRepositories` lists
 * the token's pull grants (for `_catalog`); `challenge` names realm, service and scope. Spread the
 * result into `createRegistry`.
 */
export function tokenAuth(
  options: TokenAuthOptions,
): Required<Pick<AuthHooks, 'authenticate' | 'authorize' | 'challenge' | 'pullableRepositories'>> {
  if (options.keys.length === 0) throw new Error('tokenAuth: at least one verification key is needed');
  const keys = options.keys.map(resolveKey);
  const byKid = new Map<string, ResolvedKey>(keys.map((k) => [k.kid, k]));
  // A token names its key; the key fixes the algorithm, so an `alg` swap (none, HS with a public key) fails.
  const getKey: JWTVerifyGetKey = (protectedHeader) => {
    const key = protectedHeader.kid === undefined && keys.length === 1 ? keys[0] : byKid.get(protectedHeader.kid ?? '');
    if (!key || key.alg !== protectedHeader.alg) throw new UnauthorizedError('unknown token key', 'invalid_token');
    return key.verify;
  };
  const clockTolerance = options.clockToleranceSeconds ?? 30;
  const maxLifetime = options.maxLifetimeSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS + clockTolerance;
  if (!(maxLifetime > 0)) throw new Error('tokenAuth: maxLifetimeSeconds must be a positive number of seconds');
  const verifyOptions = {
    issuer: options.issuer,
    audience: options.service,
    clockTolerance,
    requiredClaims: ['exp', 'iat'],
    // Also refuses an `iat` in the future (beyond the tolerance), which would stretch the lifetime.
    maxTokenAge: maxLifetime,
  };
  const realm = typeof options.realm === 'function' ? options.realm : () => options.realm as string;

  return {
    async authenticate(request) {
      const value = header(request, 'authorization');
      if (value === undefined) return undefined;
      const match = /^Bearer +([A-Za-z0-9_.~+/-]+=*) *$/i.exec(value);
      if (!match) throw new UnauthorizedError('expected a Bearer token', 'invalid_token');
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(match[1], getKey, verifyOptions));
      } catch (error) {
        throw new UnauthorizedError(reasonOf(error), 'invalid_token');
      }
      // jose checked both are numbers.
      if ((payload.exp as number) - (payload.iat as number) > maxLifetime) {
        throw new UnauthorizedError(`the token's lifetime exceeds ${maxLifetime} s`, 'invalid_token');
      }
      return new TokenPrincipal(payload.sub ?? '', accessOf(payload.access), payload);
    },
    authorize({ principal, action, repository }) {
      if (!(principal instanceof TokenPrincipal)) return false;
      if (grants(principal.access, action, repository)) return true;
      throw new UnauthorizedError(`the token does not grant ${action} on ${repository}`, 'insufficient_scope');
    },
    // A token names everything it grants, so `_catalog` need not ask about every repository.
    pullableRepositories(principal) {
      if (!(principal instanceof TokenPrincipal)) return [];
      return principal.access.filter((a) => a.type === 'repository' && a.actions.includes('pull')).map((a) => a.name);
    },
    challenge(scopes: Scope[], error) {
      let value = `Bearer realm=${quote(realm())},service=${quote(options.service)}`;
      if (scopes.length > 0) value += `,scope=${quote(scopes.map(formatScope).join(' '))}`;
      if (error) value += `,error=${quote(error)}`;
      return value;
    },
  };
}

/** The `access` claim, keeping only well-formed entries (a token is data from the wire). */
function accessOf(claim: unknown): TokenAccess[] {
  if (!Array.isArray(claim)) return [];
  return claim.filter(
    (a): a is TokenAccess =>
      typeof a === 'object' &&
      a !== null &&
      typeof a.type === 'string' &&
      typeof a.name === 'string' &&
      Array.isArray(a.actions) &&
      a.actions.every((x: unknown) => typeof x === 'string'),
  );
}

/** A short, safe reason for the 401 body. */
function reasonOf(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) {
    return error.claim === 'iat' ? 'the token is older than the longest lifetime accepted' : 'the token has expired';
  }
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `the token's ${error.claim} claim is not accepted`;
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature is invalid';
  if (error instanceof UnauthorizedError) return error.message;
  return 'the token is malformed';
}
