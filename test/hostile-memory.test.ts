// Clients that would bloat the process: manifests nested or numbered to make JSON.parse build
// huge trees, floods of manifest bodies held in memory at once, and reads of many large distinct
// manifests through the read cache. fs + SQLite.
import assert from 'node:assert/strict';
import { PassThrough, type Readable } from 'node:stream';
import { before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { BerthResponse } from '@berthjs/core';
import { assertError, OCI_MANIFEST, sha256, type TestClient } from './support/client.js';
import { head, openRaw, sleep, useHosts, type HostileHost } from './support/hostile.js';
import { embeddedStores } from './support/stores.js';

setFlagsFromString('--expose-gc');
const gc: () => void = runInNewContext('gc');

const MiB = 1024 * 1024;
const MANIFEST = { 'Content-Type': OCI_MANIFEST };

/** A valid image manifest of about `size` bytes (padded with an annotation), distinct per `n`. */
function bigManifest(config: string, n: number, size: number): Buffer {
  const base = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: config, size: 2 },
    layers: [],
  };
  return Buffer.from(JSON.stringify({ ...base, annotations: { pad: `${n}-`.padEnd(size - 300, 'x') } }));
}

describe('hostile memory: manifest shapes', () => {
  const fixture = useHosts(['koa'], embeddedStores).get('koa')!;
  let host: HostileHost;
  let client: TestClient;
  before(() => ({ host, client } = fixture));

  it('refuses manifests nested 2,000,000 deep before parsing them, naming the limit', async () => {
    const body = Buffer.from('['.repeat(2_000_000) + ']'.repeat(2_000_000));
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => client.req(`/v2/shape/deep/manifests/v${i}`, { method: 'PUT', body, headers: MANIFEST })),
    );
    for (const res of answers) {
      assertError(res, 400, 'MANIFEST_INVALID');
      assert.match(res.json().errors[0].message, /deeper than 64 levels/);
    }
    assert.ok(performance.now() - started < 10_000, `8 × 4 MB took ${Math.round(performance.now() - started)} ms`);
  });

  it('refuses manifests with more elements than the limit, naming it', async () => {
    const body = Buffer.from(`{"schemaVersion":2,"layers":[${Array(300_000).fill('0').join(',')}]}`);
    const res = await client.req('/v2/shape/wide/manifests/v1', { method: 'PUT', body, headers: MANIFEST });
    assertError(res, 400, 'MANIFEST_INVALID');
    assert.match(res.json().errors[0].message, /more than 200000 elements/);
  });

  it('still accepts an ordinary large manifest', async () => {
    const config = await client.pushBlob('shape/ok', Buffer.from('{}'));
    const body = bigManifest(config, 0, 3 * MiB);
    assert.equal((await client.req('/v2/shape/ok/manifests/v1', { method: 'PUT', body, headers: MANIFEST })).status, 201);
  });
});

describe('hostile memory: manifest bodies held at once', () => {
  const LIMIT = 96 * 1024;
  const fixture = useHosts(['express'], embeddedStores, { maxManifestBytes: LIMIT, manifestMemoryBytes: 2 * LIMIT }).get('express')!;
  let host: HostileHost;
  let client: TestClient;
  let config: string;
  before(async () => {
    ({ host, client } = fixture);
    config = await client.pushBlob('held/app', Buffer.from('{}'));
  });

  it('answers 429 with Retry-After to a manifest PUT that does not fit, and takes it once others finish', async () => {
    // Two clients announce the largest manifest and send it slowly: the budget is spoken for.
    const slow = [0, 1].map((i) =>
      openRaw(host.url, head(`PUT /v2/held/app/manifests/slow${i}`, { ...MANIFEST, 'Content-Length': LIMIT }), '{"schemaVersion":2,'),
    );
    await sleep(200);
    const body = bigManifest(config, 1, 10_000);
    const refused = await client.req('/v2/held/app/manifests/v1', { method: 'PUT', body, headers: MANIFEST });
    assertError(refused, 429, 'TOOMANYREQUESTS');
    assert.ok(Number(refused.header('retry-after')) > 0);
    for (const exchange of slow) exchange.socket.destroy();
    await Promise.all(slow.map((exchange) => exchange.done));
    await sleep(100);
    assert.equal((await client.req('/v2/held/app/manifests/v1', { method: 'PUT', body, headers: MANIFEST })).status, 201);
  });

  it('counts large manifests being sent to slow readers, until they are sent', async () => {
    const body = bigManifest(config, 2, 80 * 1024);
    assert.equal((await client.req('/v2/held/app/manifests/big', { method: 'PUT', body, headers: MANIFEST })).status, 201);
    const get = async (): Promise<BerthResponse> =>
      (await host.registry.handle({
        method: 'GET',
        url: '/v2/held/app/manifests/big',
        headers: { accept: OCI_MANIFEST },
        body: emptyBody(),
      }))!;
    // Two readers that do not read yet hold 160 KiB of the 192 KiB budget: a third does not fit.
    const first = await get();
    const second = await get();
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.equal((await get()).status, 429);
    (first.body as Readable).destroy();
    await sleep(10);
    const third = await get();
    assert.equal(third.status, 200);
    const bytes: Buffer[] = [];
    for await (const chunk of third.body as Readable) bytes.push(chunk as Buffer);
    assert.equal(sha256(Buffer.concat(bytes)), sha256(body));
    (second.body as Readable).destroy();
  });
});

function emptyBody(): Readable {
  const body = new PassThrough();
  body.end();
  return body;
}

describe('hostile memory: the read cache', () => {
  const cache = { readCacheTtlMs: 60_000, readCacheMaxBytes: 8 * MiB, readCacheMaxManifestBytes: 2 * MiB };
  const fixture = useHosts(['koa'], embeddedStores, cache).get('koa')!;
  let client: TestClient;
  before(() => ({ client } = fixture));

  it('keeps memory flat while many large distinct manifests are read', async () => {
    const config = await client.pushBlob('cache/app', Buffer.from('{}'));
    const digests: string[] = [];
    for (let i = 0; i < 48; i++) {
      const body = bigManifest(config, i, MiB);
      assert.equal((await client.req(`/v2/cache/app/manifests/${sha256(body)}`, { method: 'PUT', body, headers: MANIFEST })).status, 201);
      digests.push(sha256(body));
    }
    gc();
    const before = process.memoryUsage();
    for (const digest of digests) assert.equal((await client.req(`/v2/cache/app/manifests/${digest}`)).status, 200);
    // Let the last responses close (their sockets and watchers let go of the bodies), then collect twice:
    // a buffer freed by the first collection's finalizers goes in the second.
    await sleep(300);
    gc();
    await sleep(20);
    gc();
    const after = process.memoryUsage();
    const grown = after.arrayBuffers + after.heapUsed - (before.arrayBuffers + before.heapUsed);
    // 48 MiB were read and each could be cached; what stays is the cache's bound (8 MiB) at most.
    assert.ok(grown < 12 * MiB, `memory grew by ${Math.round(grown / MiB)} MiB`);
  });
});

describe('hostile memory: referrers carrying large annotations', () => {
  const LIMIT = 64 * 1024;
  const fixture = useHosts(['koa'], embeddedStores, { maxManifestBytes: LIMIT }).get('koa')!;

  it('ends a referrers page before it passes the manifest size limit; the pages hold every referrer once', async () => {
    const { client } = fixture;
    const subject = await client.pushImage('refs/app', 'v1');
    const config = await client.pushBlob('refs/app', Buffer.from('{}'));
    const pushed: string[] = [];
    for (let i = 0; i < 12; i++) {
      const body = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'application/vnd.example.sbom',
          config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: config, size: 2 },
          layers: [],
          subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size },
          annotations: { pad: `${i}-`.padEnd(20_000, 'x') },
        }),
      );
      assert.equal((await client.req(`/v2/refs/app/manifests/${sha256(body)}`, { method: 'PUT', body, headers: MANIFEST })).status, 201);
      pushed.push(sha256(body));
    }
    const seen: string[] = [];
    let url: string | undefined = `/v2/refs/app/referrers/${subject.digest}`;
    let pages = 0;
    while (url) {
      const res = await client.req(url);
      assert.equal(res.status, 200);
      assert.ok(res.body.length <= LIMIT, `a page of ${res.body.length} bytes`);
      seen.push(...res.json().manifests.map((m: { digest: string }) => m.digest));
      pages++;
      url = /<([^>]+)>/.exec(String(res.headers.link ?? ''))?.[1];
    }
    assert.ok(pages >= 4, `${pages} pages`);
    assert.deepEqual(seen.sort(), pushed.sort());
  });
});
