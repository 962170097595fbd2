import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import type { OciError, AuthorizeRequest, BerthRequest, BerthResponse } from '@berthjs/core';
import { basicAuth } from '../src/basic.js';
import { resolveKey } from '../src/keys.js';
import { parseScopes } from '../src/scope.js';
import { tokenAuth, TokenPrincipal } from '../src/token-auth.js';
import { createTokenEndpoint } from '../src/token-endpoint.js';

const request = (url: string, headers: Record<string, string> = {}, method = 'GET'): BerthRequest => ({
  method,
  url,
  headers,
  body: Readable.from([]),
});
const basic = (user: string, pass: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` });
const body = (res: BerthResponse | undefined) => JSON.parse(String(res!.body));

const USERS: Record<string, string> = { alice: 'wonderland', bob: 'builder' };
/** alice may do anything in acme/; bob may pull acme/app; anonymous may pull public/. */
function authorize({ principal, action, repository }: AuthorizeRequest) {
  const user = (principal as { username?: string } | undefined)?.username;
  if (repository.startsWith('public/') && action === 'pull') return true;
  if (user === 'alice') return repository.startsWith('acme/');
  if (user === 'bob') return repository === 'acme/app' && action === 'pull';
  return false;
}

function setup(extra: { anonymous?: boolean; expiresInSeconds?: number } = {}) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const endpoint = createTokenEndpoint({
    signingKey: { key: privateKey },
    service: 'berth.test',
    issuer: 'berth-issuer',
    authenticate: basicAuth({ verifyPassword: (u, p) => USERS[u] === p }).authenticate,
    authorize,
    ...extra,
  });
  const hooks = tokenAuth({ realm: 'http://x/token', service: 'berth.test', issuer: 'berth-issuer', keys: [{ key: privateKey }] });
  return { endpoint, hooks, privateKey };
}

async function tokenFor(endpoint: ReturnType<typeof setup>['endpoint'], query: string, headers = {}) {
  const res = await endpoint.handle(request(`/token?${query}`, headers));
  assert.equal(res?.status, 200, res && String(res.body));
  return body(res).token as string;
}

describe('token endpoint', () => {
  it('answers the Docker token spec shape with exactly the granted scopes', async () => {
    const { endpoint } = setup();
    const res = await endpoint.handle(
      request('/token?service=berth.test&scope=repository:acme/app:pull,push&scope=repository:other/x:pull', basic('alice', 'wonderland')),
    );
    assert.equal(res?.status, 200);
    assert.equal(res.headers['Cache-Control'], 'no-store');
    const json = body(res);
    assert.deepEqual(Object.keys(json).sort(), ['access_token', 'expires_in', 'issued_at', 'token']);
    assert.equal(json.token, json.access_token);
    assert.equal(json.expires_in, 300);
    assert.ok(Math.abs(Date.parse(json.issued_at) - Date.now()) < 5000);
    const claims = decodeJwt(json.token);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.aud, 'berth.test');
    assert.equal(claims.iss, 'berth-issuer');
    assert.equal((claims.exp as number) - (claims.iat as number), 300);
    assert.deepEqual(claims.access, [{ type: 'repository', name: 'acme/app', actions: ['pull', 'push'] }]);
    assert.equal(decodeProtectedHeader(json.token).alg, 'ES256');
  });

  it('narrows to what authorize allows, merges repeated and space-separated scopes, expands *', async () => {
    const { endpoint } = setup();
    const bob = decodeJwt(await tokenFor(endpoint, 'scope=repository:acme/app:pull,push,delete', basic('bob', 'builder')));
    assert.deepEqual(bob.access, [{ type: 'repository', name: 'acme/app', actions: ['pull'] }]);
    const alice = decodeJwt(
      await tokenFor(
        endpoint,
        `scope=${encodeURIComponent('repository:acme/a:pull repository:acme/a:push')}&scope=repository:acme/b:*&scope=registry:catalog:*&scope=bogus`,
        basic('alice', 'wonderland'),
      ),
    );
    assert.deepEqual(alice.access, [
      { type: 'repository', name: 'acme/a', actions: ['pull', 'push'] },
      { type: 'repository', name: 'acme/b', actions: ['pull', 'push', 'delete'] },
    ]);
  });

  it('issues a login token without scopes, and anonymous tokens with anonymous grants', async () => {
    const { endpoint } = setup();
    assert.deepEqual(decodeJwt(await tokenFor(endpoint, 'service=berth.test&account=alice', basic('alice', 'wonderland'))).access, []);
    const anon = decodeJwt(await tokenFor(endpoint, 'scope=repository:public/x:pull,push&scope=repository:acme/app:pull'));
    assert.equal(anon.sub, '');
    assert.deepEqual(anon.access, [{ type: 'repository', name: 'public/x', actions: ['pull'] }]);
  });

  it('refuses a wrong password, other schemes and (when configured) anonymous callers with 401 Basic', async () => {
    const { endpoint } = setup({ anonymous: false });
    for (const headers of [
      basic('alice', 'nope'),
      basic('mallory', 'x'),
      { authorization: 'Bearer abc' },
      { authorization: 'Basic !!!' },
      {},
    ]) {
      const res = await endpoint.handle(request('/token?service=berth.test&scope=repository:acme/app:pull', headers));
      assert.equal(res?.status, 401, JSON.stringify(headers));
      assert.equal(res.headers['WWW-Authenticate'], 'Basic realm="berth.test"');
      assert.equal(body(res).errors[0].code, 'UNAUTHORIZED');
    }
  });

  it('answers only its own path, GET only, and refuses another service', async () => {
    const { endpoint } = setup();
    assert.equal(await endpoint.handle(request('/v2/')), undefined);
    assert.equal(await endpoint.handle(request('/tokens')), undefined);
    const post = await endpoint.handle(request('/token', {}, 'POST'));
    assert.equal(post?.status, 405);
    assert.equal(post.headers.Allow, 'GET');
    const other = await endpoint.handle(request('/token?service=elsewhere'));
    assert.equal(other?.status, 400);
  });

  it('answers 500 without internals when the host hook fails', async () => {
    const endpoint = createTokenEndpoint({
      signingKey: { key: randomBytes(32) },
      service: 's',
      issuer: 'i',
      authenticate: () => {
        throw new Error('db password is hunter2');
      },
      authorize: () => true,
    });
    const res = await endpoint.handle(request('/token'));
    assert.equal(res?.status, 500);
    assert.doesNotMatch(String(res.body), /hunter2/);
  });
});

describe('tokenAuth hooks', () => {
  const authenticate = (hooks: ReturnType<typeof tokenAuth>, authorization?: string) =>
    hooks.authenticate(request('/v2/', authorization === undefined ? {} : { authorization }));

  it('verifies a token from the endpoint and authorizes exactly its scopes', async () => {
    const { endpoint, hooks } = setup();
    const token = await tokenFor(endpoint, 'scope=repository:acme/app:pull', basic('alice', 'wonderland'));
    const principal = await authenticate(hooks, `Bearer ${token}`);
    assert.ok(principal instanceof TokenPrincipal);
    assert.equal(principal.subject, 'alice');
    assert.equal(await hooks.authorize({ principal, action: 'pull', repository: 'acme/app' }), true);
    for (const [action, repository] of [
      ['push', 'acme/app'],
      ['pull', 'acme/app2'],
      ['pull', 'acme'],
    ] as const) {
      assert.throws(
        () => hooks.authorize({ principal, action, repository }),
        (e: OciError) => e.code === 'UNAUTHORIZED' && (e as { reason?: string }).reason === 'insufficient_scope',
      );
    }
    assert.equal(await hooks.authorize({ principal: undefined, action: 'pull', repository: 'acme/app' }), false);
    assert.equal(await hooks.authorize({ principal: { username: 'alice' }, action: 'pull', repository: 'acme/app' }), false);
    assert.equal(await authenticate(hooks), undefined);
  });

  it('rejects expired, foreign, mis-addressed and malformed tokens as invalid_token', async () => {
    const { hooks, privateKey } = setup();
    const kid = resolveKey({ key: privateKey }).kid;
    const sign = (claims: Record<string, unknown>, key = privateKey, header: { alg: string; kid: string } = { alg: 'ES256', kid }) =>
      new SignJWT({ access: [{ type: 'repository', name: 'acme/app', actions: ['pull'] }], ...claims })
        .setProtectedHeader(header)
        .sign(key);
    const now = Math.floor(Date.now() / 1000);
    const good = { iss: 'berth-issuer', aud: 'berth.test', sub: 'alice', iat: now, exp: now + 60 };
    assert.ok((await authenticate(hooks, `Bearer ${await sign(good)}`)) instanceof TokenPrincipal);
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const cases: Record<string, string> = {
      expired: `Bearer ${await sign({ ...good, iat: now - 600, exp: now - 300 })}`,
      'not yet valid': `Bearer ${await sign({ ...good, nbf: now + 300 })}`,
      'no expiry': `Bearer ${await sign({ ...good, exp: undefined })}`,
      'wrong signature': `Bearer ${await sign(good, other)}`,
      'unknown kid': `Bearer ${await sign(good, other, { alg: 'ES256', kid: 'someone-else' })}`,
      'wrong audience': `Bearer ${await sign({ ...good, aud: 'another-registry' })}`,
      'wrong issuer': `Bearer ${await sign({ ...good, iss: 'mallory' })}`,
      'alg none': `Bearer ${Buffer.from(`{"alg":"none","kid":"${kid}"}`).toString('base64url')}.${Buffer.from(JSON.stringify(good)).toString('base64url')}.`,
      'HS256 with the public key': `Bearer ${await new SignJWT(good).setProtectedHeader({ alg: 'HS256', kid }).sign(new Uint8Array(32))}`,
      garbage: 'Bearer abc.def.ghi',
      'no token': 'Bearer',
      'basic instead': 'Basic YWxpY2U6d29uZGVybGFuZA==',
      'two tokens': 'Bearer a b',
    };
    for (const [name, value] of Object.entries(cases)) {
      await assert.rejects(
        authenticate(hooks, value) as Promise<unknown>,
        (e: OciError) => e.code === 'UNAUTHORIZED' && (e as { reason?: string }).reason === 'invalid_token',
        name,
      );
    }
  });

  it('rejects tokens living longer than maxLifetimeSeconds (default 300 s + tolerance), without iat, or issued in the future', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const base = { realm: 'r', service: 's', issuer: 'i', keys: [{ key: privateKey }] };
    const now = Math.floor(Date.now() / 1000);
    const sign = (claims: Record<string, unknown>) =>
      new SignJWT({ iss: 'i', aud: 's', sub: 'u', access: [], ...claims }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
    const verdict = async (hooks: ReturnType<typeof tokenAuth>, claims: Record<string, unknown>) => {
      try {
        return (await authenticate(hooks, `Bearer ${await sign(claims)}`)) instanceof TokenPrincipal ? 'ok' : 'anonymous';
      } catch (error) {
        const e = error as OciError & { reason?: string };
        assert.equal(e.code, 'UNAUTHORIZED');
        assert.equal(e.reason, 'invalid_token');
        return e.message;
      }
    };
    const byDefault = tokenAuth(base);
    assert.equal(await verdict(byDefault, { iat: now, exp: now + 330 }), 'ok');
    assert.equal(await verdict(byDefault, { iat: now - 100, exp: now + 230 }), 'ok');
    assert.match(await verdict(byDefault, { iat: now, exp: now + 331 }), /lifetime/);
    assert.match(await verdict(byDefault, { iat: now, exp: now + 10 * 365 * 86400 }), /lifetime/);
    assert.match(await verdict(byDefault, { exp: now + 60 }), /iat/);
    assert.match(await verdict(byDefault, { iat: now + 3600, exp: now + 3900 }), /iat/);
    // Older than the maximum lifetime, whatever its exp says: expired as far as we are concerned.
    assert.match(await verdict(byDefault, { iat: now - 1000, exp: now + 60 }), /lifetime|expired/);
    const hourly = tokenAuth({ ...base, maxLifetimeSeconds: 3600 });
    assert.equal(await verdict(hourly, { iat: now, exp: now + 3600 }), 'ok');
    assert.match(await verdict(hourly, { iat: now, exp: now + 3601 }), /lifetime/);
    const strict = tokenAuth({ ...base, maxLifetimeSeconds: 60, clockToleranceSeconds: 0 });
    assert.equal(await verdict(strict, { iat: now, exp: now + 60 }), 'ok');
    assert.match(await verdict(strict, { iat: now, exp: now + 61 }), /lifetime/);
    assert.throws(() => tokenAuth({ ...base, maxLifetimeSeconds: 0 }), /maxLifetimeSeconds/);
  });

  it('accepts tokens of every listed key (rotation) and routes by kid', async () => {
    const oldKey = generateKeyPairSync('ed25519').privateKey;
    const newKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const options = { service: 's', issuer: 'i', authenticate: () => ({ username: 'u' }), authorize: () => true };
    const oldEndpoint = createTokenEndpoint({ ...options, signingKey: { key: oldKey } });
    const newEndpoint = createTokenEndpoint({ ...options, signingKey: { key: newKey.export({ type: 'pkcs8', format: 'pem' }) as string } });
    const oldToken = await tokenFor(oldEndpoint, 'scope=repository:a/b:pull');
    const newToken = await tokenFor(newEndpoint, 'scope=repository:a/b:pull');
    assert.equal(decodeProtectedHeader(newToken).alg, 'RS256');
    const both = tokenAuth({
      realm: 'r',
      service: 's',
      issuer: 'i',
      keys: [{ key: createPublicKey(newKey).export({ type: 'spki', format: 'pem' }) as string }, { key: createPublicKey(oldKey) }],
    });
    assert.ok((await authenticate(both, `Bearer ${oldToken}`)) instanceof TokenPrincipal);
    assert.ok((await authenticate(both, `Bearer ${newToken}`)) instanceof TokenPrincipal);
    const rotated = tokenAuth({ realm: 'r', service: 's', issuer: 'i', keys: [{ key: createPublicKey(newKey) }] });
    await assert.rejects(authenticate(rotated, `Bearer ${oldToken}`) as Promise<unknown>, /token key/);
    assert.ok((await authenticate(rotated, `Bearer ${newToken}`)) instanceof TokenPrincipal);
  });

  it('builds RFC 6750 challenges with realm, service, scope and error', () => {
    const { hooks } = setup();
    assert.equal(hooks.challenge([], undefined), 'Bearer realm="http://x/token",service="berth.test"');
    assert.equal(
      hooks.challenge([{ repository: 'acme/app', actions: ['pull', 'push'] }], 'insufficient_scope'),
      'Bearer realm="http://x/token",service="berth.test",scope="repository:acme/app:pull,push",error="insufficient_scope"',
    );
  });
});

describe('parseScopes', () => {
  it('keeps repository scopes with known actions and valid names', () => {
    assert.deepEqual(
      parseScopes([
        'repository:a/b:pull,push',
        'repository(plugin):c:pull',
        'repository:Bad:pull',
        'repository:d:fly',
        'registry:catalog:*',
        'x',
      ]),
      [
        { name: 'a/b', actions: ['pull', 'push'] },
        { name: 'c', actions: ['pull'] },
      ],
    );
  });
});

describe('resolveKey', () => {
  it('derives stable kids and algorithms, and refuses short secrets', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    assert.equal(resolveKey({ key: privateKey }).kid, resolveKey({ key: publicKey }).kid);
    assert.equal(resolveKey({ key: privateKey }).alg, 'ES384');
    assert.equal(resolveKey({ key: publicKey }).sign, undefined);
    assert.equal(resolveKey({ key: 'x'.repeat(32) }).alg, 'HS256');
    assert.equal(resolveKey({ kid: 'k1', key: privateKey }).kid, 'k1');
    assert.throws(() => resolveKey({ key: 'short' }), /32 bytes/);
  });
});
