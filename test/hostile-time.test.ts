// Clients that hold what they took: a body that goes quiet is ended (408, lease freed, session at
// its last good offset) on every host; uploads streaming at once are bounded per process (429
// with Retry-After); `berth serve` closes connections that never finish their headers.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseServeConfig } from '@berthjs/cli';
import { spawnBerth, type BerthProcess } from './support/cli.js';
import { assertError, OCI_MANIFEST, randomBlob, sha256, TestClient } from './support/client.js';
import { head, HOSTS, openRaw, sleep, trickle, useHosts, type HostileHost } from './support/hostile.js';
import { embeddedStores } from './support/stores.js';

const IDLE_MS = 400;
const OCTETS = { 'Content-Type': 'application/octet-stream' };

describe('hostile time: bodies that go quiet', () => {
  // No minimum rate here: the slow body below sends ~10 bytes/s, each byte well inside the window.
  const hosts = useHosts(HOSTS, embeddedStores, { bodyIdleTimeoutMs: IDLE_MS, bodyMinBytesPerSecond: 0 });

  for (const hostName of HOSTS) {
    describe(`through ${hostName}`, () => {
      const fixture = hosts.get(hostName)!;
      let host: HostileHost;
      let client: TestClient;
      before(() => ({ host, client } = fixture));

      it('a PATCH that stops sending gets 408, its connection closed and the lease freed', async () => {
        const location = (await client.req(`/v2/idle/${hostName}/blobs/uploads/`, { method: 'POST' })).header('location')!;
        assert.equal((await client.req(location, { method: 'PATCH', body: randomBlob(100) })).status, 202);
        const stalled = openRaw(host.url, head(`PATCH ${location}`, { ...OCTETS, 'Content-Length': 100_000 }), 'x'.repeat(10));
        const { status, ms } = await stalled.done;
        assert.equal(status, 408);
        assert.ok(ms >= IDLE_MS && ms < IDLE_MS + 2000, `ended after ${Math.round(ms)} ms`);
        assert.equal((await client.req(location)).header('range'), '0-99', 'the session stays at its last good offset');
        assert.equal((await client.req(location, { method: 'PATCH', body: randomBlob(5) })).status, 202, 'the lease is free');
        assert.deepEqual(host.failures, []);
      });

      it('a slow body that keeps sending is not cut off', async () => {
        const blob = randomBlob(12);
        const location = (await client.req(`/v2/idle/${hostName}/slow/blobs/uploads/`, { method: 'POST' })).header('location')!;
        const slow = openRaw(host.url, head(`PATCH ${location}`, { ...OCTETS, 'Content-Length': blob.length }));
        for (const byte of blob) {
          // 12 bytes, each well inside the idle timeout: 1.2 s in all, three times the timeout.
          await sleep(IDLE_MS / 4);
          slow.socket.write(Buffer.of(byte));
        }
        await sleep(50);
        slow.socket.end();
        assert.equal((await slow.done).status, 202);
        assert.equal((await client.req(`${location}?digest=${sha256(blob)}`, { method: 'PUT' })).status, 201);
      });

      it('a manifest PUT that stops sending gets 408 and stores nothing', async () => {
        const stalled = openRaw(
          host.url,
          head(`PUT /v2/idle/${hostName}/manifests/v1`, { 'Content-Type': OCI_MANIFEST, 'Content-Length': 1000 }),
          '{"schemaVersion":2,',
        );
        assert.equal((await stalled.done).status, 408);
        assertError(await client.req(`/v2/idle/${hostName}/manifests/v1`), 404, 'MANIFEST_UNKNOWN');
      });
    });
  }
});

describe('hostile time: downloads nobody reads', () => {
  const hosts = useHosts(HOSTS, embeddedStores, { sendIdleTimeoutMs: IDLE_MS });
  // Far more than the socket buffers on both sides hold, so the server must wait for the reader.
  const blob = randomBlob(48 * 1024 * 1024);

  for (const hostName of HOSTS) {
    it(`through ${hostName}: a blob GET the client stops reading is ended and its connection closed`, async () => {
      const { host, client } = hosts.get(hostName)!;
      const digest = await client.pushBlob(`unread/${hostName}`, blob);
      const reader = openRaw(host.url, head(`GET /v2/unread/${hostName}/blobs/${digest}`));
      reader.socket.pause();
      await sleep(IDLE_MS * 5);
      reader.socket.resume();
      // Kept alive and read to the end, the connection would stay open and this would never resolve.
      const { text, status } = await reader.done;
      assert.equal(status, 200);
      assert.ok(text.length < blob.length, `cut after ${text.length} of ${blob.length} bytes`);
      assert.deepEqual(host.failures, [], 'a client that stops reading is not a server failure');
      assert.equal(
        (await client.req(`/v2/unread/${hostName}/blobs/${digest}`)).body.length,
        blob.length,
        'a reader that reads gets it all',
      );
    });
  }
});

describe('hostile time: bodies that trickle', () => {
  const fixture = useHosts(['express'], embeddedStores, { bodyIdleTimeoutMs: IDLE_MS, bodyMinBytesPerSecond: 100 }).get('express')!;

  it('a PATCH that sends a byte now and then, below the minimum rate, gets 408 and frees the lease', async () => {
    const { host, client } = fixture;
    const location = (await client.req('/v2/trickle/app/blobs/uploads/', { method: 'POST' })).header('location')!;
    const trickler = openRaw(host.url, head(`PATCH ${location}`, { ...OCTETS, 'Content-Length': 100_000 }));
    // A byte every 50 ms: never idle, but 20 bytes/s against the 100 asked for.
    trickle(trickler.socket, 50);
    const { status, text, ms } = await trickler.done;
    assert.equal(status, 408);
    assert.match(text, /below the minimum of 100/);
    assert.ok(ms < 3 * IDLE_MS + 1000, `ended after ${Math.round(ms)} ms`);
    assert.equal((await client.req(location, { method: 'PATCH', body: randomBlob(5) })).status, 202, 'the lease is free');
  });

  it('a body at the minimum rate or above is not cut off', async () => {
    const { host, client } = fixture;
    const blob = randomBlob(600);
    const location = (await client.req('/v2/trickle/ok/blobs/uploads/', { method: 'POST' })).header('location')!;
    const steady = openRaw(host.url, head(`PATCH ${location}`, { ...OCTETS, 'Content-Length': blob.length }));
    // 50 bytes every 100 ms: 500 bytes/s for 1.2 s, three windows.
    for (let at = 0; at < blob.length; at += 50) {
      await sleep(100);
      steady.socket.write(blob.subarray(at, at + 50));
    }
    await sleep(50);
    steady.socket.end();
    assert.equal((await steady.done).status, 202);
  });
});

describe('hostile time: uploads streaming at once', () => {
  const fixture = useHosts(['koa'], embeddedStores, { maxConcurrentUploads: 2 }).get('koa')!;
  let host: HostileHost;
  let client: TestClient;
  before(() => ({ host, client } = fixture));

  it('more than maxConcurrentUploads get 429 TOOMANYREQUESTS with Retry-After, and nothing is left behind', async () => {
    const sessions: string[] = [];
    for (let i = 0; i < 3; i++) sessions.push((await client.req('/v2/slots/app/blobs/uploads/', { method: 'POST' })).header('location')!);
    // Two trickling PATCHes take both slots.
    const held = sessions.slice(0, 2).map((location) => {
      const exchange = openRaw(host.url, head(`PATCH ${location}`, { ...OCTETS, 'Content-Length': 1000 }));
      trickle(exchange.socket, 100);
      return exchange;
    });
    await sleep(300);
    const refused = await client.req(sessions[2], { method: 'PATCH', body: randomBlob(10) });
    assertError(refused, 429, 'TOOMANYREQUESTS');
    assert.ok(Number(refused.header('retry-after')) > 0);
    assert.equal((await client.req(sessions[2])).header('range'), '0-0', 'the refused chunk changed nothing');
    const blob = randomBlob(10);
    assertError(
      await client.req(`/v2/slots/app/blobs/uploads/?digest=${sha256(blob)}`, { method: 'POST', body: blob }),
      429,
      'TOOMANYREQUESTS',
    );
    assert.equal((await client.req(`/v2/slots/app/blobs/${sha256(blob)}`, { method: 'HEAD' })).status, 404);
    // The holders leave: their slots come back.
    for (const exchange of held) exchange.socket.destroy();
    await Promise.all(held.map((exchange) => exchange.done));
    await sleep(100);
    assert.equal((await client.req(sessions[2], { method: 'PATCH', body: randomBlob(10) })).status, 202);
  });
});

describe('hostile time: berth serve', () => {
  let dir: string;
  let berth: BerthProcess;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-hostile-time-'));
    berth = await spawnBerth(['--data-dir', dir, '--header-timeout', '1', '--body-idle-timeout', '1']);
  });
  after(async () => {
    await berth?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the limits from flags and variables', () => {
    const config = parseServeConfig(
      ['--body-idle-timeout', '5', '--body-min-rate', '10', '--read-cache-size', '1MiB', '--manifest-memory', '8MiB'],
      {
        BERTH_HEADER_TIMEOUT_SECONDS: '7',
        BERTH_MAX_CONCURRENT_UPLOADS: '3',
      },
    );
    assert.equal(config.bodyIdleTimeoutMs, 5000);
    assert.equal(config.bodyMinBytesPerSecond, 10);
    assert.equal(config.headerTimeoutMs, 7000);
    assert.equal(config.maxConcurrentUploads, 3);
    assert.equal(config.readCacheBytes, 1 << 20);
    assert.equal(config.manifestMemoryBytes, 8 << 20);
    assert.equal(parseServeConfig([], {}).manifestMemoryBytes, undefined, 'the registry derives it from --max-manifest-bytes');
    assert.throws(() => parseServeConfig(['--max-concurrent-uploads', '0'], {}), /at least 1/);
  });

  it('closes a connection whose headers do not arrive within --header-timeout', async () => {
    const slow = openRaw(berth.url, 'GET /v2/ HTTP/1.1\r\nHost: berth\r\n');
    const stop = setInterval(() => slow.socket.writable && slow.socket.write('X-Slow: 1\r\n'), 200);
    const { status, ms } = await slow.done;
    clearInterval(stop);
    assert.equal(status, 408);
    assert.ok(ms < 4000, `closed after ${Math.round(ms)} ms`);
  });

  it('ends a body that goes quiet for --body-idle-timeout and frees the session', async () => {
    const client = new TestClient(berth.url);
    const location = (await client.req('/v2/serve/idle/blobs/uploads/', { method: 'POST' })).header('location')!;
    const stalled = openRaw(berth.url, head(`PATCH ${location}`, { ...OCTETS, 'Content-Length': 1000 }), 'abc');
    const { status, ms } = await stalled.done;
    assert.equal(status, 408);
    assert.ok(ms < 4000, `ended after ${Math.round(ms)} ms`);
    assert.equal((await client.req(location, { method: 'PATCH', body: randomBlob(5) })).status, 202);
  });
});
