// The core's operational hooks, through a Koa host: request ids, per-request facts and log
// lines, the rate-limit hook, health(), stats() and the draining close().
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { rename } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { tokenBucket, type Logger, type MetadataStore, type RequestFacts } from '@berthjs/core';
import { randomBlob, rawRequest, sha256, startSession, streamedPatch } from './support/client.js';
import { startRegistry, type ExtraOptions, type RunningRegistry } from './support/servers.js';
import { embeddedStores, type StoreSet } from './support/stores.js';

interface Line {
  level: string;
  fields: Record<string, unknown>;
  message?: string;
}

function captureLogger(): Logger & { lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (fields: object, message?: string) =>
    lines.push({ level, fields: fields as Record<string, unknown>, message });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

describe('request ids, facts and log lines', () => {
  let stores: StoreSet;
  let server: RunningRegistry;
  const logger = captureLogger();
  const facts: RequestFacts[] = [];
  before(async () => {
    stores = await embeddedStores();
    const auth: ExtraOptions = {
      // Any user whose password is "pw"; a `{ username }` principal like basicAuth's.
      authenticate: (request) => {
        const value = request.headers.authorization;
        if (typeof value !== 'string') return undefined;
        const [user, password] = Buffer.from(value.replace(/^Basic /, ''), 'base64')
          .toString()
          .split(':');
        return password === 'pw' ? { username: user, password } : undefined;
      },
      anonymous: 'authorize',
    };
    server = await startRegistry('koa', stores, { ...auth, logger, trustProxy: true });
    server.registry.events.on('request.completed', (f) => facts.push(f));
  });
  after(async () => {
    await server?.stop();
    await stores?.destroy();
  });
  const basic = { Authorization: `Basic ${Buffer.from('ci:pw').toString('base64')}` };
  const lastLine = () => logger.lines.at(-1)!;

  it('echoes a sane X-Request-Id, and makes one up otherwise, on every response', async () => {
    const given = await rawRequest(server.url, '/v2/', { headers: { 'X-Request-Id': 'build-42.step:7' } });
    assert.equal(given.header('x-request-id'), 'build-42.step:7');
    const fresh = await rawRequest(server.url, '/v2/nothing/here/manifests/latest');
    assert.equal(fresh.status, 404);
    assert.match(fresh.header('x-request-id')!, /^[0-9a-f-]{36}$/);
    // Log injection and absurd lengths are replaced, not echoed.
    for (const bad of ['a b', 'x'.repeat(200), 'a"b']) {
      const res = await rawRequest(server.url, '/v2/', { headers: { 'X-Request-Id': bad } });
      assert.match(res.header('x-request-id')!, /^[0-9a-f-]{36}$/, bad);
    }
    await sleep(20);
    assert.equal(facts.find((f) => f.requestId === 'build-42.step:7')?.route, 'base');
  });

  it('logs one line per request with route, repository, bytes, duration, principal name and client', async () => {
    const data = randomBlob(300_000);
    const digest = sha256(data);
    const forwarded = { 'X-Forwarded-For': '203.0.113.9, 198.51.100.7' };
    const push = await rawRequest(server.url, `/v2/team/app/blobs/uploads/?digest=${digest}`, {
      method: 'POST',
      body: data,
      headers: { ...basic, ...forwarded, 'X-Request-Id': 'push-1' },
    });
    assert.equal(push.status, 201);
    await sleep(20);
    const pushed = logger.lines.find((l) => l.fields.requestId === 'push-1')!;
    assert.equal(pushed.level, 'info');
    assert.equal(pushed.message, 'request');
    assert.deepEqual(
      [pushed.fields.method, pushed.fields.route, pushed.fields.repository, pushed.fields.status, pushed.fields.bytesIn],
      ['POST', 'uploads', 'team/app', 201, data.length],
    );
    assert.equal(pushed.fields.principal, 'ci');
    // One trusted proxy: the address it saw (the last entry), not what the client claimed.
    assert.equal(pushed.fields.client, '198.51.100.7');
    assert.equal(pushed.fields.aborted, false);
    assert.ok(typeof pushed.fields.durationMs === 'number' && pushed.fields.durationMs >= 0);
    // The principal's name only: no password, no Authorization header, anywhere in the line.
    assert.doesNotMatch(JSON.stringify(pushed), /pw|Basic|authorization/i);

    const pull = await rawRequest(server.url, `/v2/team/app/blobs/${digest}`, { headers: { 'X-Request-Id': 'pull-1' } });
    assert.equal(pull.status, 200);
    await sleep(20);
    const pulled = logger.lines.find((l) => l.fields.requestId === 'pull-1')!;
    assert.deepEqual([pulled.fields.route, pulled.fields.status, pulled.fields.bytesOut], ['blob', 200, data.length]);
    assert.equal(pulled.fields.principal, undefined);
    assert.equal(pulled.fields.client, '127.0.0.1');
    assert.equal(lastLine().fields.requestId, 'pull-1');
  });

  it('marks a download the client gave up on as aborted', async () => {
    const data = randomBlob(32 * 1024 * 1024);
    const digest = sha256(data);
    assert.equal(
      (await rawRequest(server.url, `/v2/team/big/blobs/uploads/?digest=${digest}`, { method: 'POST', body: data })).status,
      201,
    );
    const { hostname, port } = new URL(server.url);
    await new Promise<void>((resolve) => {
      const req = httpRequest({
        hostname,
        port,
        path: `/v2/team/big/blobs/${digest}`,
        agent: false,
        headers: { 'X-Request-Id': 'gave-up' },
      });
      req.on('response', (res) => {
        res.once('data', () => {
          res.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.end();
    });
    for (let i = 0; i < 100 && !facts.some((f) => f.requestId === 'gave-up'); i++) await sleep(20);
    const fact = facts.find((f) => f.requestId === 'gave-up')!;
    assert.equal(fact.aborted, true);
    assert.ok(fact.bytesOut < data.length, `${fact.bytesOut} bytes out`);
  });

  it('puts the request id on request.failed', async () => {
    const failed: { requestId?: string }[] = [];
    server.registry.events.on('request.failed', (e) => failed.push(e));
    const res = await rawRequest(server.url, '/v2/team/app/manifests/v1', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', 'X-Request-Id': 'fails-1' },
      body: '{}',
    });
    // Not a 5xx: nothing reported. The id still comes back.
    assert.equal(res.status, 400);
    assert.equal(res.header('x-request-id'), 'fails-1');
    assert.equal(failed.length, 0);
  });
});

describe('rateLimit hook and the tokenBucket built-in', () => {
  let stores: StoreSet;
  let server: RunningRegistry;
  const seen: { route: string; principalName?: string; client?: string }[] = [];
  before(async () => {
    stores = await embeddedStores();
    const bucket = tokenBucket({ perSecond: 0.5, burst: 3 });
    server = await startRegistry('koa', stores, {
      rateLimit: (input) => {
        seen.push({ route: input.route.name, principalName: input.principalName, client: input.client });
        return bucket(input);
      },
    });
  });
  after(async () => {
    await server?.stop();
    await stores?.destroy();
  });

  it('answers 429 TOOMANYREQUESTS with Retry-After once a caller spent its burst', async () => {
    const statuses: number[] = [];
    let refused: Awaited<ReturnType<typeof rawRequest>> | undefined;
    for (let i = 0; i < 4; i++) {
      const res = await rawRequest(server.url, '/v2/a/b/tags/list');
      statuses.push(res.status);
      if (res.status === 429) refused = res;
    }
    assert.deepEqual(statuses, [404, 404, 404, 429]);
    assert.equal(refused!.json().errors[0].code, 'TOOMANYREQUESTS');
    assert.equal(refused!.header('retry-after'), '2');
    assert.deepEqual(seen[0], { route: 'tags', principalName: undefined, client: '127.0.0.1' });
  });
});

describe('health()', () => {
  let stores: StoreSet;
  let server: RunningRegistry;
  let dir: string;
  const state = { hang: false };
  before(async () => {
    stores = await embeddedStores();
    const opened = await stores.open();
    dir = (opened.blobs as unknown as { root: string }).root;
    // A metadata store whose probe hangs whenever `hang` is set.
    const metadata = opened.metadata;
    const probe = metadata.probe.bind(metadata);
    const hanging = Object.assign(Object.create(metadata) as MetadataStore, {
      probe: () => (state.hang ? new Promise<void>(() => undefined) : probe()),
    });
    server = await startRegistry(
      'koa',
      { ...stores, open: async () => ({ blobs: opened.blobs, metadata: hanging }) },
      { healthTimeoutMs: 300 },
    );
  });
  after(async () => {
    await server?.stop();
    await stores?.destroy();
  });

  it('is ok when both stores answer, and names the one that does not', async () => {
    const ok = await server.registry.health();
    assert.equal(ok.ok, true);
    assert.deepEqual([ok.blobs.store, ok.metadata.store], ['fs', 'sqlite']);

    await rename(dir, `${dir}.gone`);
    try {
      const gone = await server.registry.health();
      assert.equal(gone.ok, false);
      assert.equal(gone.blobs.ok, false);
      assert.match(gone.blobs.error!, new RegExp(`${dir}.*ENOENT`));
      assert.equal(gone.metadata.ok, true);
    } finally {
      await rename(`${dir}.gone`, dir);
    }
    assert.equal((await server.registry.health()).ok, true);

    state.hang = true;
    const started = Date.now();
    const [first, second] = await Promise.all([server.registry.health(), server.registry.health()]);
    assert.ok(Date.now() - started < 1500, 'health() waits no longer than its timeout');
    assert.equal(first.metadata.ok, false);
    assert.match(first.metadata.error!, /no answer within 300 ms/);
    assert.equal(second.metadata.ok, false);
    state.hang = false;
  });
});

describe('close() drains', () => {
  let stores: StoreSet;
  before(async () => {
    stores = await embeddedStores();
  });
  after(async () => {
    await stores?.destroy();
  });

  it('lets an upload in flight finish, then closes the stores and refuses new requests', async () => {
    const server = await startRegistry('koa', stores);
    try {
      const data = randomBlob(256 * 1024);
      const location = await startSession(server.url, 'drain/ok');
      const { req, response } = streamedPatch(server.url, location);
      req.write(data.subarray(0, 1000));
      await sleep(100);
      assert.equal(server.registry.stats().uploadsInProgress, 1);
      const closing = server.registry.close({ timeoutMs: 5000 });
      await sleep(200);
      req.end(data.subarray(1000));
      assert.equal(((await response) as { statusCode?: number }).statusCode, 202);
      await closing;
      assert.deepEqual(server.registry.stats().closed, { inFlight: 1, cut: 0 });
      const after = await rawRequest(server.url, '/v2/');
      assert.equal(after.status, 503);
      assert.equal(after.json().errors[0].code, 'UNAVAILABLE');
    } finally {
      await server.stop();
    }
  });

  it('cuts a stalled upload at the deadline; the session resumes from its last complete chunk', async () => {
    let server = await startRegistry('koa', stores);
    const first = randomBlob(100_000);
    const rest = randomBlob(50_000);
    const location = await startSession(server.url, 'drain/cut');
    const chunk = await rawRequest(server.url, location, {
      method: 'PATCH',
      body: first,
      headers: { 'Content-Range': `0-${first.length - 1}` },
    });
    assert.equal(chunk.status, 202);
    const { req, response } = streamedPatch(server.url, chunk.header('location')!);
    req.write(randomBlob(10_000)); // then nothing: a stalled client
    await sleep(100);
    const started = Date.now();
    await server.registry.close({ timeoutMs: 300 });
    assert.deepEqual(server.registry.stats().closed, { inFlight: 1, cut: 1 });
    assert.ok(Date.now() - started < 3000, `close took ${Date.now() - started} ms`);
    assert.ok((await response) instanceof Error, 'the stalled request was cut');
    await server.stop();

    server = await startRegistry('koa', stores);
    try {
      const status = await rawRequest(server.url, location);
      assert.equal(status.status, 204);
      assert.equal(status.header('range'), `0-${first.length - 1}`);
      const put = await rawRequest(server.url, `${location}?digest=${sha256(Buffer.concat([first, rest]))}`, {
        method: 'PUT',
        body: rest,
        headers: { 'Content-Range': `${first.length}-${first.length + rest.length - 1}` },
      });
      assert.equal(put.status, 201, put.text);
    } finally {
      await server.stop();
    }
  });
});

describe('stats()', () => {
  it('counts read cache hits and misses', async () => {
    const stores = await embeddedStores();
    const server = await startRegistry('koa', stores);
    try {
      const data = randomBlob(10);
      await rawRequest(server.url, `/v2/c/d/blobs/uploads/?digest=${sha256(data)}`, { method: 'POST', body: data });
      const before = server.registry.stats().cache.blobs;
      await rawRequest(server.url, `/v2/c/d/blobs/${sha256(data)}`, { method: 'HEAD' });
      await rawRequest(server.url, `/v2/c/d/blobs/${sha256(data)}`, { method: 'HEAD' });
      const after = server.registry.stats().cache.blobs;
      assert.deepEqual([after.misses - before.misses, after.hits - before.hits], [1, 1]);
    } finally {
      await server.stop();
      await stores.destroy();
    }
  });
});
