import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import Koa from 'koa';
import { SignJWT } from 'jose';
import { basicAuth, createTokenEndpoint, resolveKey, tokenAuth, type BasicPrincipal } from '@berthjs/auth';
import { createRegistry, type AuthorizeRequest, type BerthHandler, type Registry } from '@berthjs/core';
import { berth as berthExpress } from '@berthjs/express';
import { berth as berthKoa } from '@berthjs/koa';
import { assertError, rawRequest, sha256, TestClient, type RawResponse } from './support/client.js';
import { embeddedStores, type StoreSet } from './support/stores.js';

const SERVICE = 'berth.test';
const ISSUER = 'test-issuer';
const USERS: Record<string, string> = { alice: 'wonderland', bob: 'builder' };
/** alice owns acme/; bob may pull acme/app. */
const authorize = ({ principal, action, repository }: AuthorizeRequest) => {
  const user = (principal as BasicPrincipal | undefined)?.username;
  if (user === 'alice') return repository.startsWith('acme/');
  return user === 'bob' && repository === 'acme/app' && action === 'pull';
};
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

/** A host app of either framework with the token endpoint and the registry mounted by the same adapter. */
async function startHost(adapter: 'koa' | 'express', stores: StoreSet) {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const tokens = createTokenEndpoint({
    signingKey: { key: privateKey },
    service: SERVICE,
    issuer: ISSUER,
    authenticate: basicAuth({ verifyPassword: (u, p) => USERS[u] === p }).authenticate,
    authorize,
  });
  const registry = createRegistry({
    ...(await stores.open()),
    ...tokenAuth({ realm: `${url}/token`, service: SERVICE, issuer: ISSUER, keys: [{ key: privateKey }] }),
  });
  server.on('request', adapter === 'koa' ? koaHost(tokens, registry) : expressHost(tokens, registry));
  return {
    url,
    privateKey,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await registry.close();
    },
  };
}

function koaHost(tokens: BerthHandler, registry: Registry) {
  const app = new Koa();
  app.use(berthKoa(tokens));
  app.use(berthKoa(registry));
  app.use(async (ctx) => {
    if (ctx.path === '/health') ctx.body = { ok: true };
  });
  return app.callback();
}

function expressHost(tokens: BerthHandler, registry: Registry) {
  const app = express();
  app.use(berthExpress(tokens));
  app.use(berthExpress(registry));
  app.get('/health', (_req, res) => {
    res.json({ ok: true });
  });
  return app;
}

/** What a client does on a 401: parse the Bearer challenge and fetch a token from its realm. */
async function fetchToken(challenge: string, authorization?: string): Promise<string> {
  const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  const realm = new URL(params.realm);
  const query = new URLSearchParams({ service: params.service });
  if (params.scope) query.set('scope', params.scope);
  const res = await rawRequest(realm.origin, `${realm.pathname}?${query}`, {
    headers: authorization ? { Authorization: authorization } : {},
  });
  assert.equal(res.status, 200, res.text);
  assert.match(res.header('content-type') ?? '', /^application\/json/);
  return res.json().token;
}

for (const adapter of ['koa', 'express'] as const) {
  describe(`token auth mounted in ${adapter}`, () => {
    let stores: StoreSet;
    let host: Awaited<ReturnType<typeof startHost>>;
    before(async () => {
      stores = await embeddedStores();
      host = await startHost(adapter, stores);
    });
    after(async () => {
      await host?.stop();
      await stores?.destroy();
    });

    it('logs in, pushes and pulls following the challenges, like docker and skopeo do', async () => {
      const anon = new TestClient(host.url);
      const ping = await anon.req('/v2/');
      assertError(ping, 401, 'UNAUTHORIZED');
      const challenge = ping.header('www-authenticate')!;
      assert.equal(challenge, `Bearer realm="${host.url}/token",service="${SERVICE}"`);
      // Login: a token without scopes opens /v2/ only.
      const login = await fetchToken(challenge, basic('alice', 'wonderland'));
      assert.equal((await new TestClient(host.url, { Authorization: `Bearer ${login}` }).req('/v2/')).status, 200);
      const denied = await new TestClient(host.url, { Authorization: `Bearer ${login}` }).req('/v2/acme/app/blobs/uploads/', {
        method: 'POST',
      });
      assertError(denied, 401, 'UNAUTHORIZED');
      const pushChallenge = denied.header('www-authenticate')!;
      assert.equal(
        pushChallenge,
        `Bearer realm="${host.url}/token",service="${SERVICE}",scope="repository:acme/app:pull,push",error="insufficient_scope"`,
      );

      const pusher = new TestClient(host.url, { Authorization: `Bearer ${await fetchToken(pushChallenge, basic('alice', 'wonderland'))}` });
      const { digest, bytes } = await pusher.pushImage('acme/app', 'v1');

      // bob asks for pull and push, and gets a token for pull only.
      const bobToken = await fetchToken(pushChallenge, basic('bob', 'builder'));
      const bob = new TestClient(host.url, { Authorization: `Bearer ${bobToken}` });
      assert.ok((await bob.req('/v2/acme/app/manifests/v1')).body.equals(bytes));
      assert.equal((await bob.req(`/v2/acme/app/manifests/${digest}`, { method: 'HEAD' })).status, 200);
      const bobPush = await bob.req('/v2/acme/app/blobs/uploads/', { method: 'POST' });
      assertError(bobPush, 401, 'UNAUTHORIZED');
      assert.match(bobPush.header('www-authenticate')!, /error="insufficient_scope"/);
    });

    it('mounts only from repositories the token may pull; otherwise a plain session, not a 401', async () => {
      const token = async (...scopes: string[]) => {
        const query = scopes.map((scope) => `scope=${scope}`).join('&');
        const res = await rawRequest(host.url, `/token?service=${SERVICE}&${query}`, {
          headers: { Authorization: basic('alice', 'wonderland') },
        });
        return { Authorization: `Bearer ${res.json().token}` };
      };
      const source = new TestClient(host.url, await token('repository:acme/src:pull,push'));
      const digest = await source.pushBlob('acme/src', Buffer.from('mount me'));
      const pushOnly = new TestClient(host.url, await token('repository:acme/dst:pull,push'));
      for (const query of [`mount=${digest}&from=acme/src`, `mount=${digest}`]) {
        assert.equal((await pushOnly.req(`/v2/acme/dst/blobs/uploads/?${query}`, { method: 'POST' })).status, 202, query);
      }
      const both = new TestClient(host.url, await token('repository:acme/dst:pull,push', 'repository:acme/src:pull'));
      const mounted = await both.req(`/v2/acme/dst/blobs/uploads/?mount=${digest}&from=acme/src`, { method: 'POST' });
      assert.equal(mounted.status, 201);
      assert.equal(mounted.header('location'), `/v2/acme/dst/blobs/${digest}`);
    });

    it('refuses a wrong password at the token endpoint with 401 and a Basic challenge', async () => {
      const res = await rawRequest(host.url, `/token?service=${SERVICE}&scope=repository:acme/app:pull`, {
        headers: { Authorization: basic('alice', 'nope') },
      });
      assertError(res, 401, 'UNAUTHORIZED');
      assert.equal(res.header('www-authenticate'), `Basic realm="${SERVICE}"`);
    });

    it('answers every bad token with 401 and a Bearer challenge, never 500', async () => {
      const now = Math.floor(Date.now() / 1000);
      const kid = resolveKey({ key: host.privateKey }).kid;
      const claims = {
        iss: ISSUER,
        aud: SERVICE,
        sub: 'alice',
        iat: now,
        exp: now + 300,
        access: [{ type: 'repository', name: 'acme/app', actions: ['pull', 'push'] }],
      };
      const sign = (c: Record<string, unknown>, key = host.privateKey) =>
        new SignJWT(c).setProtectedHeader({ alg: 'ES256', kid }).sign(key);
      const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const bad: Record<string, string> = {
        expired: `Bearer ${await sign({ ...claims, iat: now - 900, exp: now - 600 })}`,
        'lifetime beyond the maximum': `Bearer ${await sign({ ...claims, exp: now + 365 * 86400 })}`,
        'issued long ago, still unexpired': `Bearer ${await sign({ ...claims, iat: now - 3600 })}`,
        'no iat': `Bearer ${await sign({ ...claims, iat: undefined })}`,
        'issued in the future': `Bearer ${await sign({ ...claims, iat: now + 3600, exp: now + 3900 })}`,
        'wrong signature': `Bearer ${await sign(claims, stranger)}`,
        'wrong audience': `Bearer ${await sign({ ...claims, aud: 'other-registry' })}`,
        'wrong issuer': `Bearer ${await sign({ ...claims, iss: 'mallory' })}`,
        'scope for another repository': `Bearer ${await sign({ ...claims, access: [{ type: 'repository', name: 'acme/other', actions: ['pull', 'push'] }] })}`,
        'malformed access claim': `Bearer ${await sign({ ...claims, access: 'everything' })}`,
        'truncated token': `Bearer ${(await sign(claims)).slice(0, -10)}`,
        'not a JWT': 'Bearer not-a-jwt',
        'empty Bearer': 'Bearer ',
        'unknown scheme': 'Token abc',
        'Basic to a Bearer registry': basic('alice', 'wonderland'),
        'non-ASCII junk': 'Bearer \u00e9t\u00e9',
        oversized: `Bearer ${'a'.repeat(8000)}.b.c`,
      };
      const valid = `Bearer ${await sign(claims)}`;
      const requests: [string, string][] = [
        ['GET', '/v2/acme/app/tags/list'],
        ['HEAD', `/v2/acme/app/blobs/${sha256('x')}`],
        ['GET', '/v2/acme/app/manifests/v1'],
        ['POST', '/v2/acme/app/blobs/uploads/'],
        ['GET', `/v2/acme/app/referrers/${sha256('x')}`],
      ];
      const check = (res: RawResponse, what: string) => {
        assert.equal(res.status, 401, `${what}: ${res.status} ${res.text}`);
        const challenge = res.header('www-authenticate') ?? '';
        assert.match(
          challenge,
          new RegExp(
            `^Bearer realm="${host.url}/token",service="${SERVICE}",scope="repository:acme/app:pull(,push)?",error="(invalid_token|insufficient_scope)"$`,
          ),
          what,
        );
        if (res.body.length > 0) assert.equal(res.json().errors[0].code, 'UNAUTHORIZED', what);
      };
      for (const [name, authorization] of Object.entries(bad)) {
        for (const [method, path] of requests) {
          // Raw headers: some of these values are not legal for fetch-style clients.
          check(await rawRequest(host.url, path, { method, headers: { Authorization: authorization } }), `${name} ${method} ${path}`);
        }
      }
      // The valid token passes the same requests (404s and 202 are fine), so the 401s are the token's doing.
      for (const [method, path] of requests) {
        const res = await rawRequest(host.url, path, { method, headers: { Authorization: valid } });
        assert.notEqual(res.status, 401, `${method} ${path}: ${res.text}`);
        assert.ok(res.status < 500);
      }
    });

    it('leaves host routes to the host', async () => {
      const res = await rawRequest(host.url, '/health');
      assert.deepEqual(res.json(), { ok: true });
    });
  });
}
