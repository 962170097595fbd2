// Bodies that break off, fail, end short or arrive after their client left, and downloads whose
// store stream fails: on every host (Koa, Express, `handle` on node:http), on fs + SQLite and on
// S3 + Postgres. Nothing may crash or hang, nothing may become visible under a digest, a session
// stays at its last good offset, and a client that left is answered 499, not reported as a failure.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PassThrough, pipeline, Readable, Transform } from 'node:stream';
import type { BlobStore, BerthRequest, ByteRange } from '@berthjs/core';
import { requireS3 } from '@berthjs/storage-s3/testing';
import { assertError, OCI_MANIFEST, randomBlob, sha256, type TestClient } from './support/client.js';
import { cutRequest, head, HOSTS, openRaw, overrideMethods, sleep, useHosts, type HostileHost } from './support/hostile.js';
import { embeddedStores, s3PostgresStores, type StoreSet } from './support/stores.js';

const MANIFEST_HEADERS = { 'Content-Type': OCI_MANIFEST };

/** Blob reads whose stream fails after `failAfter` bytes (a disk or S3 dropping mid-download). */
function failingReads(blobs: BlobStore, failAfter: number): BlobStore {
  return overrideMethods(blobs, {
    async read(digest: string, range?: ByteRange) {
      const source = await blobs.read(digest, range);
      let seen = 0;
      const cut = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          seen += chunk.length;
          if (seen > failAfter) callback(new Error('injected: the store lost the blob mid-read'));
          else callback(null, chunk);
        },
      });
      return pipeline(source, cut, () => undefined);
    },
  });
}

/** A request as an adapter hands it over, with `body` as the request stream. */
function request(method: string, url: string, body: Readable, headers: Record<string, string> = {}): BerthRequest {
  return { method, url, headers: { host: 'berth', ...headers }, body };
}

/** A body that sends `good` bytes, then fails. */
function failingBody(good: Buffer): Readable {
  const body = new PassThrough();
  body.write(good);
  setTimeout(() => body.destroy(new Error('injected: the body stream failed')), 20);
  return body;
}

function describeStreams(name: string, makeStores: () => Promise<StoreSet>) {
  describe(`hostile streams: ${name}`, () => {
    let unhandled: unknown[] = [];
    const onUnhandled = (error: unknown) => unhandled.push(error);
    before(() => process.on('unhandledRejection', onUnhandled));
    after(() => process.off('unhandledRejection', onUnhandled));
    // The failing reads start past the first MiB, so a download is under way when it breaks.
    const hosts = useHosts(HOSTS, makeStores, {}, async (stores) => {
      const opened = await stores.open();
      return { ...opened, blobs: failingReads(opened.blobs, 1 << 20) };
    });

    /** Wait for `host` to have answered `count` more requests than `before`. */
    async function answered(host: HostileHost, before: number, count = 1): Promise<number[]> {
      for (let i = 0; i < 100 && host.statuses.length < before + count; i++) await sleep(20);
      return host.statuses.slice(before);
    }

    function assertClean(host: HostileHost) {
      assert.deepEqual(host.failures, [], 'no request.failed event');
      assert.deepEqual(unhandled, [], 'no unhandled rejection');
      unhandled = [];
    }

    for (const hostName of HOSTS) {
      describe(`through ${hostName}`, () => {
        const fixture = hosts.get(hostName)!;
        let host: HostileHost;
        let client: TestClient;
        before(() => ({ host, client } = fixture));

        it('a PATCH cut short answers 499, keeps the session at its last good offset and its lease free', async () => {
          const repo = `cut/${hostName}/patch`;
          const location = (await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' })).header('location')!;
          const first = randomBlob(1000);
          assert.equal((await client.req(location, { method: 'PATCH', body: first })).status, 202);
          const seen = host.statuses.length;
          await cutRequest(
            host.url,
            head(`PATCH ${location}`, { 'Content-Type': 'application/octet-stream', 'Content-Length': 1_000_000 }),
            randomBlob(500),
          );
          assert.deepEqual(await answered(host, seen), [499]);
          assert.equal((await client.req(location)).header('range'), '0-999');
          // The lease went with the request: the next chunk is accepted at once.
          const second = randomBlob(10);
          assert.equal((await client.req(location, { method: 'PATCH', body: second })).status, 202);
          const digest = sha256(Buffer.concat([first, second]));
          assert.equal((await client.req(`${location}?digest=${digest}`, { method: 'PUT' })).status, 201);
          assertClean(host);
        });

        it('a closing PUT or a monolithic POST cut short stores nothing under the digest', async () => {
          const repo = `cut/${hostName}/put`;
          const blob = randomBlob(5000);
          const digest = sha256(blob);
          const location = (await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' })).header('location')!;
          const seen = host.statuses.length;
          const announce = { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.length };
          await cutRequest(host.url, head(`PUT ${location}?digest=${digest}`, announce), blob.subarray(0, 100));
          await cutRequest(host.url, head(`POST /v2/${repo}/blobs/uploads/?digest=${digest}`, announce), blob.subarray(0, 100));
          assert.deepEqual(await answered(host, seen, 2), [499, 499]);
          assert.equal((await client.req(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).status, 404);
          assert.equal((await client.req(location)).header('range'), '0-0');
          assertClean(host);
        });

        it('a manifest PUT cut short answers 499 and stores nothing', async () => {
          const repo = `cut/${hostName}/manifest`;
          const seen = host.statuses.length;
          await cutRequest(
            host.url,
            head(`PUT /v2/${repo}/manifests/latest`, { ...MANIFEST_HEADERS, 'Content-Length': 1000 }),
            Buffer.from('{"schemaVersion":'),
          );
          assert.deepEqual(await answered(host, seen), [499]);
          assertError(await client.req(`/v2/${repo}/manifests/latest`), 404, 'MANIFEST_UNKNOWN');
          assertClean(host);
        });

        it('a download whose store stream fails cuts that response only', async () => {
          const repo = `cut/${hostName}/download`;
          const blob = randomBlob(3 << 20);
          const digest = await client.pushBlob(repo, blob);
          const download = openRaw(host.url, head(`GET /v2/${repo}/blobs/${digest}`, { Connection: 'close' }));
          const { text, status } = await download.done;
          assert.equal(status, 200);
          assert.ok(text.length < blob.length, 'the response was cut short, not completed');
          assert.equal((await client.req('/v2/')).status, 200, 'the host still serves');
          assert.deepEqual(unhandled, []);
        });
      });
    }

    describe('through handle() with bodies that are not sockets', () => {
      let host: HostileHost;
      let client: TestClient;
      before(() => ({ host, client } = hosts.get('node')!));

      async function session(repo: string, first: Buffer): Promise<string> {
        const location = (await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' })).header('location')!;
        assert.equal((await client.req(location, { method: 'PATCH', body: first })).status, 202);
        return location;
      }

      it('a body that fails mid-PATCH answers 400 and keeps the session at its last good offset', async () => {
        const location = await session('body/fails', randomBlob(100));
        const response = await host.registry.handle(request('PATCH', location, failingBody(randomBlob(3000))));
        assert.equal(response?.status, 400);
        assert.equal(JSON.parse(String(response?.body)).errors[0].code, 'BLOB_UPLOAD_INVALID');
        assert.equal((await client.req(location)).header('range'), '0-99');
        assert.equal((await client.req(location, { method: 'PATCH', body: randomBlob(1) })).status, 202, 'the lease is free');
        assertClean(host);
      });

      it('a body that fails mid-manifest answers 400 MANIFEST_INVALID', async () => {
        const response = await host.registry.handle(
          request('PUT', '/v2/body/manifest/manifests/v1', failingBody(Buffer.from('{"schemaVersion":2')), MANIFEST_HEADERS),
        );
        assert.equal(response?.status, 400);
        assert.equal(JSON.parse(String(response?.body)).errors[0].code, 'MANIFEST_INVALID');
        assertClean(host);
      });

      it('a body that ends short of its Content-Length answers 400 and keeps the session', async () => {
        const location = await session('body/short', randomBlob(100));
        const body = Readable.from([randomBlob(50)], { objectMode: false });
        const response = await host.registry.handle(request('PATCH', location, body, { 'content-length': '100' }));
        assert.equal(response?.status, 400);
        assert.equal(JSON.parse(String(response?.body)).errors[0].code, 'SIZE_INVALID');
        assert.equal((await client.req(location)).header('range'), '0-99');
        assertClean(host);
      });

      it('a body whose client left before Berth read it answers 499 at once', async () => {
        const location = await session('body/gone', randomBlob(100));
        for (const [method, url] of [
          ['PATCH', location],
          ['PUT', '/v2/body/gone/manifests/v1'],
          ['POST', `/v2/body/gone/blobs/uploads/?digest=${sha256('x')}`],
        ]) {
          const body = new PassThrough();
          body.destroy();
          const started = performance.now();
          const response = await host.registry.handle(request(method, url, body, { 'content-length': '10', ...MANIFEST_HEADERS }));
          assert.equal(response?.status, 499, `${method} ${url}`);
          assert.ok(performance.now() - started < 1000, 'answered without waiting for the body');
        }
        assert.equal((await client.req(location)).header('range'), '0-99');
        assert.equal((await client.req(location, { method: 'PATCH', body: randomBlob(1) })).status, 202, 'the lease is free');
        assertClean(host);
      });

      it('a body that fails before any reader listens does not take the process down', async () => {
        const body = new PassThrough();
        // Fails while the registry is still looking at the request (no reader attached yet).
        process.nextTick(() => body.destroy(new Error('injected: failed early')));
        const response = await host.registry.handle(request('PUT', '/v2/body/early/manifests/v1', body, MANIFEST_HEADERS));
        assert.ok(response && response.status >= 400 && response.status < 500, `status ${response?.status}`);
        assertClean(host);
      });
    });
  });
}

describeStreams('fs + sqlite', embeddedStores);
if (requireS3()) describeStreams('s3 + postgres', s3PostgresStores);
