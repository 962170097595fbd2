import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { basicAuth, createTokenEndpoint, Htpasswd, htpasswdLine, tokenAuth } from '@berthjs/auth';
import { parseServeConfig, serve } from '@berthjs/cli';
import {
  createRegistry,
  OciError,
  UnauthorizedError,
  type AuthHooks,
  type AuthorizeRequest,
  type BerthResponse,
  type MetadataStore,
  type Page,
} from '@berthjs/core';
import { berth } from '@berthjs/koa';
import { FsBlobStore } from '@berthjs/storage-fs';
import { assertError, rawRequest } from './support/client.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-hostile-auth-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const get = (url: string, headers: Record<string, string> = {}) => ({ method: 'GET', url, headers, body: Readable.from([]) });

/**
 * Just what `_catalog` reads of a MetadataStore, over a sorted list of names, counting the names
 * it hands out and the existence checks. Any other call fails the test.
 */
function catalogStore(names: string[]) {
  const sorted = [...new Set(names)].sort();
  const present = new Set(sorted);
  const reads = { names: 0, exists: 0 };
  const store = {
    name: 'catalog-test',
    async listRepositories(page: Page = {}) {
      const start = page.last === undefined ? 0 : sorted.findIndex((n) => n > page.last!);
      const out = start < 0 ? [] : sorted.slice(start, start + (page.limit ?? sorted.length));
      reads.names += out.length;
      return out;
    },
    async repositoryExists(name: string) {
      reads.exists++;
      return present.has(name);
    },
    async close() {},
  };
  const metadata = new Proxy(store, {
    get: (target, key) =>
      key in target
        ? target[key as keyof typeof target]
        : typeof key === 'string' && key !== 'changeVersion' && key !== 'then'
          ? () => assert.fail(`_catalog called metadata.${key}`)
          : undefined,
  }) as unknown as MetadataStore;
  return { metadata, reads, sorted };
}

function registryOn(metadata: MetadataStore, auth: AuthHooks & { catalogScanLimit?: number }) {
  return createRegistry({ blobs: new FsBlobStore({ root: join(dir, 'blobs') }), metadata, ...auth });
}

const body = (res: BerthResponse | undefined) => JSON.parse(String(res!.body)) as { repositories: string[] };
const nextUrl = (res: BerthResponse | undefined) => /^<([^>]+)>; rel="next"$/.exec(res!.headers.Link ?? '')?.[1];

/** Follow `Link`s from `url`: every page, and the cost of each request. */
async function walk(
  registry: ReturnType<typeof registryOn>,
  reads: { names: number; exists: number },
  url: string,
  headers: Record<string, string> = {},
  calls?: { n: number },
) {
  const pages: { names: string[]; read: number; exists: number; authorized: number }[] = [];
  for (let next: string | undefined = url; next; ) {
    const before = { ...reads, authorized: calls?.n ?? 0 };
    const res = await registry.handle(get(next, headers));
    assert.equal(res?.status, 200, String(res?.body));
    pages.push({
      names: body(res).repositories,
      read: reads.names - before.names,
      exists: reads.exists - before.exists,
      authorized: (calls?.n ?? 0) - before.authorized,
    });
    next = nextUrl(res);
    assert.ok(pages.length < 10_000, 'the Links never end');
  }
  return pages;
}

function tokenSigner() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const hooks = tokenAuth({ realm: 'http://x/token', service: 's', issuer: 'i', keys: [{ key: privateKey }] });
  const bearer = async (pull: string[], key: KeyObject = privateKey) => {
    const now = Math.floor(Date.now() / 1000);
    const access = pull.map((name) => ({ type: 'repository', name, actions: ['pull'] }));
    const token = await new SignJWT({ access, iss: 'i', aud: 's', sub: 'u', iat: now, exp: now + 60 })
      .setProtectedHeader({ alg: 'ES256' })
      .sign(key);
    return { authorization: `Bearer ${token}` };
  };
  return { hooks, bearer };
}

const REPOS = Array.from({ length: 20_000 }, (_, i) => `team${String(i % 100).padStart(3, '0')}/app${String(i).padStart(6, '0')}`);

describe('_catalog cost is bounded by the page, not by the registry', () => {
  it('under token auth, looks up only the repositories the token names (20,000 in the store)', async () => {
    const { metadata, reads } = catalogStore(REPOS);
    const { hooks, bearer } = tokenSigner();
    const registry = registryOn(metadata, hooks);
    // Two that exist, one that does not, one pushed-but-not-pulled name is not in the token at all.
    const headers = await bearer(['team050/app000050', 'team007/app000007', 'ghost/none']);
    const pages = await walk(registry, reads, '/v2/_catalog?n=1', headers);
    assert.deepEqual(
      pages.map((p) => p.names),
      [['team007/app000007'], ['team050/app000050']],
    );
    for (const page of pages) {
      assert.equal(page.read, 0, 'no store listing');
      assert.ok(page.exists <= 3, `${page.exists} existence checks`);
    }
    const all = await walk(registry, reads, '/v2/_catalog', headers);
    assert.deepEqual(all, [{ names: ['team007/app000007', 'team050/app000050'], read: 0, exists: 3, authorized: 0 }]);
    // No grants, no work.
    assert.deepEqual(await walk(registry, reads, '/v2/_catalog?n=5', await bearer([])), [{ names: [], read: 0, exists: 0, authorized: 0 }]);
  });

  it('with an authorize hook that hides most repositories, each request checks at most catalogScanLimit names', async () => {
    const { metadata, reads, sorted } = catalogStore(REPOS.slice(0, 6000));
    const calls = { n: 0 };
    const authorize = ({ repository }: AuthorizeRequest) => {
      calls.n++;
      return repository.startsWith('team042/') || repository === 'team099/app005999';
    };
    const expected = sorted.filter((r) => authorize({ principal: undefined, action: 'pull', repository: r }));
    calls.n = 0;
    for (const [query, scanLimit] of [
      ['n=1', undefined],
      ['n=7', 500],
      ['', 2500],
      ['n=300', 100],
    ] as const) {
      const registry = registryOn(metadata, { authorize, catalogScanLimit: scanLimit });
      const pages = await walk(registry, reads, `/v2/_catalog?${query}`, {}, calls);
      const n = query === '' ? 1000 : Number(query.slice(2));
      const budget = Math.max(n, scanLimit ?? 1000);
      assert.deepEqual(
        pages.flatMap((p) => p.names),
        expected,
        `${query} / ${scanLimit}: every visible repository once, in order`,
      );
      for (const page of pages) {
        assert.ok(page.names.length <= n);
        assert.ok(page.authorized <= budget, `${query}: ${page.authorized} authorize calls in one request (budget ${budget})`);
        // The store is read ahead in batches, never far beyond the budget.
        assert.ok(page.read <= budget + 512, `${query}: ${page.read} names read in one request`);
      }
    }
  });
});

/** A small seeded PRNG (mulberry32), so a failing case can be replayed. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('_catalog pages stay exact whatever the limits', () => {
  it('lists every repository the caller may pull once, in order, and nothing else (random stores, hooks, n and limits)', async () => {
    for (let trial = 0; trial < 150; trial++) {
      const rand = random(trial + 1);
      const int = (n: number) => Math.floor(rand() * n);
      const names = Array.from({ length: int(120) }, () => `p${int(5)}/r${int(400)}`);
      const { metadata, reads, sorted } = catalogStore(names);
      // Some allowed names were never pushed (a token may grant those): they must not be listed.
      const allowed = new Set([...sorted.filter(() => rand() < [0.02, 0.3, 1][trial % 3]), 'p9/ghost', `p${int(5)}/r${int(400)}x`]);
      const calls = { n: 0 };
      const authorize = ({ repository }: AuthorizeRequest) => {
        calls.n++;
        // Sometimes the way tokenAuth refuses: a throw, which counts as "no" here.
        if (!allowed.has(repository) && rand() < 0.3) throw new UnauthorizedError('no', 'insufficient_scope');
        return allowed.has(repository);
      };
      const mode = ['scan', 'exact list', 'superset'][int(3)];
      const pullableRepositories =
        mode === 'scan'
          ? undefined
          : () => [...allowed, ...(mode === 'superset' ? [...sorted.filter(() => rand() < 0.3), 'p8/unknown', 'Not/A/Name', '../up'] : [])];
      const n = rand() < 0.2 ? undefined : 1 + int(15);
      const catalogScanLimit = 1 + int(40);
      const registry = registryOn(metadata, { authenticate: () => ({}), authorize, pullableRepositories, catalogScanLimit });
      const what = `trial ${trial}: ${mode}, ${sorted.length} repositories, ${allowed.size} allowed, n=${n}, limit ${catalogScanLimit}`;
      let pages: Awaited<ReturnType<typeof walk>>;
      try {
        pages = await walk(registry, reads, n === undefined ? '/v2/_catalog' : `/v2/_catalog?n=${n}`, { authorization: 'x' }, calls);
      } catch (error) {
        assert.fail(`${what}: ${error}`);
      }
      assert.deepEqual(
        pages.flatMap((p) => p.names),
        sorted.filter((r) => allowed.has(r)),
        what,
      );
      const budget = Math.max(n ?? 1000, catalogScanLimit);
      for (const page of pages) {
        assert.ok(page.names.length <= (n ?? 1000), what);
        assert.ok(page.authorized <= budget && page.exists <= budget, `${what}: ${page.authorized} authorize, ${page.exists} lookups`);
      }
    }
  });
});

describe('token endpoint under hostile requests', () => {
  let server: Server;
  let url: string;
  const calls = { authorize: 0 };
  const users = new Map<string, Htpasswd>();
  let flooded = false;
  before(async () => {
    users.set('file', new Htpasswd(await htpasswdLine('ci', 'pa55', 4)));
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const tokens = createTokenEndpoint({
      signingKey: { key: privateKey },
      service: 'svc',
      issuer: 'svc',
      authenticate: basicAuth({
        verifyPassword: (user, pass) => {
          if (flooded)
            throw new OciError('TOOMANYREQUESTS', { message: 'too many password checks in progress', headers: { 'Retry-After': '1' } });
          return users.get('file')!.verify(user, pass);
        },
      }).authenticate,
      authorize: () => {
        calls.authorize++;
        return true;
      },
    });
    const app = new Koa();
    app.use(berth(tokens));
    server = createServer(app.callback());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const ci = { Authorization: `Basic ${Buffer.from('ci:pa55').toString('base64')}` };
  const scopes = (count: number) => Array.from({ length: count }, (_, i) => `scope=repository:org/r${i}:pull`).join('&');

  it('refuses thousands of scopes with a 400 before asking authorize about any', async () => {
    calls.authorize = 0;
    const ok = await rawRequest(url, `/token?service=svc&${scopes(50)}`, { headers: ci });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(calls.authorize, 50);
    calls.authorize = 0;
    for (const query of [
      scopes(51),
      `scope=${encodeURIComponent(Array.from({ length: 5000 }, (_, i) => `repository:o/r${i}:pull`).join(' '))}`.slice(0, 12_000),
      scopes(300),
    ]) {
      const res = await rawRequest(url, `/token?service=svc&${query}`, { headers: ci });
      assertError(res, 400, 'UNSUPPORTED');
      assert.match(res.json().errors[0].message, /scopes|query/);
    }
    assert.equal(calls.authorize, 0);
  });

  it('refuses an oversized query with a 400, and shrugs off malformed ones', async () => {
    const long = await rawRequest(url, `/token?service=svc&account=${'a'.repeat(9000)}`, { headers: ci });
    assertError(long, 400, 'UNSUPPORTED');
    assert.match(long.json().errors[0].message, /query/);
    for (const query of [
      '%',
      'scope=%zz%',
      'scope=repository:%00:pull',
      'scope=repository:a:b:c:pull',
      'scope=::::',
      '&&&=&=',
      'scope=%E2%28%A1',
    ]) {
      const res = await rawRequest(url, `/token?${query}`, { headers: ci });
      assert.equal(res.status, 200, `${query}: ${res.text}`);
      assert.deepEqual(decodeJwt(res.json().token).access, [], query);
    }
  });

  it('answers POST at once without reading its body, even one that trickles or breaks off', async () => {
    // A body announced as 1 MiB that sends a byte now and then, and one cut off mid-way.
    for (const cut of [false, true]) {
      const { port } = new URL(url);
      const socket = connect(Number(port), '127.0.0.1');
      await once(socket, 'connect');
      const started = performance.now();
      socket.write(
        'POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1048576\r\n\r\ngrant_type=',
      );
      const timer = setInterval(() => socket.write('a'), 200);
      const [head] = await Promise.race([
        once(socket, 'data'),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer in 5 s')), 5000)),
      ]);
      clearInterval(timer);
      assert.match(String(head), /^HTTP\/1.1 405 /);
      assert.ok(performance.now() - started < 2000);
      if (cut) socket.destroy();
      else socket.end();
    }
    // The process is still fine.
    assert.equal((await rawRequest(url, '/token?service=svc', { headers: ci })).status, 200);
  });

  it('answers a flood of logins with 429 and Retry-After, not 500', async () => {
    flooded = true;
    try {
      const res = await rawRequest(url, '/token?service=svc', { headers: ci });
      assertError(res, 429, 'TOOMANYREQUESTS');
      assert.equal(res.header('retry-after'), '1');
    } finally {
      flooded = false;
    }
  });

  it('refuses a long password without hashing it for long', async () => {
    const started = performance.now();
    const res = await rawRequest(url, '/token?service=svc', {
      headers: { Authorization: `Basic ${Buffer.from(`ci:${'p'.repeat(12_000)}`).toString('base64')}` },
    });
    assertError(res, 401, 'UNAUTHORIZED');
    assert.ok(performance.now() - started < 2000);
  });
});

describe('berth serve --token-ttl', () => {
  it('bounds the lifetime of the tokens it accepts to the lifetime it issues', async () => {
    const data = join(dir, 'serve');
    await mkdir(data, { recursive: true });
    await writeFile(join(data, 'users'), `${await htpasswdLine('ci', 'pa55', 4)}\n`);
    const running = await serve(
      parseServeConfig(
        ['--port', '0', '--host', '127.0.0.1', '--data-dir', data, '--htpasswd', join(data, 'users'), '--token-auth', '--token-ttl', '60'],
        { BERTH_LOG_LEVEL: 'silent' },
      ),
    );
    try {
      const issued = await rawRequest(running.url, '/token?service=berth', {
        headers: { Authorization: `Basic ${Buffer.from('ci:pa55').toString('base64')}` },
      });
      assert.equal(issued.json().expires_in, 60);
      assert.equal((await rawRequest(running.url, '/v2/', { headers: { Authorization: `Bearer ${issued.json().token}` } })).status, 200);
      // The same key, a longer life: refused.
      const key = createPrivateKey(await readFile(join(data, 'token-key.pem'), 'utf8'));
      const now = Math.floor(Date.now() / 1000);
      const long = await new SignJWT({ access: [], iss: 'berth', aud: 'berth', sub: 'ci', iat: now, exp: now + 300 })
        .setProtectedHeader({ alg: 'ES256', kid: decodeProtectedHeader(issued.json().token).kid })
        .sign(key);
      const res = await rawRequest(running.url, '/v2/', { headers: { Authorization: `Bearer ${long}` } });
      assertError(res, 401, 'UNAUTHORIZED');
      assert.match(res.header('www-authenticate') ?? '', /error="invalid_token"/);
      assert.match(res.json().errors[0].message, /lifetime/);
    } finally {
      await running.close();
    }
  });
});
