import { header, UnauthorizedError, type AuthHooks, type BerthRequest } from '@berthjs/core';

/** The principal `basicAuth` hands to `authorize`: the user whose password checked out. */
export interface BasicPrincipal {
  username: string;
}

export interface BasicAuthOptions {
  /** The host's password check, sync or async; true lets the caller in as `{ username }`. */
  verifyPassword: (username: string, password: string) => boolean | Promise<boolean>;
  /** The realm named in the `Basic` challenge. Default `berth`. */
  realm?: string;
}

/**
 * Registry hooks for HTTP Basic auth: `authenticate` (no header → anonymous; a wrong password or a
 * malformed header → 401, never anonymous) and `challenge`. Spread them into `createRegistry`
 * next to your own `authorize`.
 */
export function basicAuth(options: BasicAuthOptions): Required<Pick<AuthHooks, 'authenticate' | 'challenge'>> {
  const challenge = basicChallenge(options.realm ?? 'berth');
  return {
    async authenticate(request) {
      const credentials = readBasic(request);
      if (!credentials) return undefined;
      if (!(await options.verifyPassword(credentials.username, credentials.password))) {
        throw new UnauthorizedError('invalid username or password');
      }
      return { username: credentials.username } satisfies BasicPrincipal;
    },
    challenge: () => challenge,
  };
}

/** `Basic realm="..."`, quoting as RFC 9110 asks. */
export function basicChallenge(realm: string): string {
  return `Basic realm=${quote(realm)}`;
}

/**
 * The `Authorization: Basic` credentials of a request: undefined without the header; a 401
 * `UnauthorizedError` for another scheme or a malformed value.
 */
export function readBasic(request: Pick<BerthRequest, 'headers'>): { username: string; password: string } | undefined {
  const value = header(request, 'authorization');
  if (value === undefined) return undefined;
  const match = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(value);
  if (!match) throw new UnauthorizedError('expected Basic credentials');
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw new UnauthorizedError('malformed Basic credentials');
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** A quoted-string: backslash-escape `"` and `\`. */
export function quote(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}
