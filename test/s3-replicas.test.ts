// End to end on S3 blobs + Postgres metadata: `berth serve` processes sharing one bucket and one
// schema, driven over HTTP like a client, with the bucket inspected directly.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tcpProxy } from './support/tcp-proxy.js';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { parseServeConfig } from '@berthjs/cli';
import { assertError, rawRequest, sha256, type RawResponse } from './support/client.js';
import { s3ServeEnv, spawnBerth, type BerthProcess } from './support/cli.js';
import {
  createBucket,
  deleteBucket,
  listKeys,
  listPartSizes,
  listUploads,
  requireS3,
  s3Client,
  type S3TestEnv,
} from '@berthjs/storage-s3/testing';
import { dropSchema, POSTGRES_URL } from './support/stores.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const PART = 5 * MiB;
const PREFIX = 'reg/';

describe('berth serve S3 settings', () => {
  it('reads BERTH_S3_* variables and flags; no bucket means fs blobs', () => {
    assert.equal(parseServeConfig([], {}).s3, undefined);
    const env = parseServeConfig([], {
      BERTH_S3_BUCKET: 'bkt',
      BERTH_S3_ENDPOINT: 'http://s3:7480',
      BERTH_S3_REGION: 'auto',
      BERTH_S3_FORCE_PATH_STYLE: 'true',
      BERTH_S3_PREFIX: 'p/',
      BERTH_S3_PART_SIZE: '16MiB',
      BERTH_S3_REDIRECT: '1',
      BERTH_DATABASE_URL: 'postgres://db/berth',
      BERTH_DATABASE_SCHEMA: 'tenant_a',
      BERTH_UPLOAD_LEASE_SECONDS: '5',
    });
    assert.deepEqual(env.s3, {
      bucket: 'bkt',
      endpoint: 'http://s3:7480',
      region: 'auto',
      forcePathStyle: true,
      prefix: 'p/',
      partSize: 16 * MiB,
      redirect: true,
    });
    assert.equal(env.databaseSchema, 'tenant_a');
    assert.equal(env.uploadLeaseMs, 5000);
    const flags = parseServeConfig(['--s3-bucket', 'cbk', '--s3-force-path-style', '--s3-part-size', '5242880'], {
      BERTH_S3_BUCKET: 'bkt',
    });
    assert.deepEqual(flags.s3, {
      bucket: 'cbk',
      endpoint: undefined,
      region: undefined,
      forcePathStyle: true,
      prefix: undefined,
      partSize: 5 * MiB,
      redirect: false,
    });
    assert.equal(parseServeConfig(['--s3-bucket', 'cbk'], {}).s3?.partSize, 8 * MiB);
    assert.throws(() => parseServeConfig(['--s3-bucket', 'cbk', '--s3-part-size', '8MB'], {}), /--s3-part-size/);
  });
});

const s3 = requireS3();
if (s3) describeS3(s3);

function describeS3(env: S3TestEnv) {
  describe('berth serve on S3 + Postgres', () => {
    const admin = s3Client(env);
    const schema = `berth_s3e2e_${randomBytes(5).toString('hex')}`;
    let bucket: string;
    let a: BerthProcess;
    let b: BerthProcess; // redirects blob GETs to presigned URLs
    const spawned: BerthProcess[] = [];

    /** A `berth serve` on the shared bucket and schema; credentials come from the AWS env chain. */
    async function berth(extraArgs: string[] = [], extraEnv: NodeJS.ProcessEnv = {}): Promise<BerthProcess> {
      const proc = await spawnBerth(['--database-url', POSTGRES_URL, '--s3-part-size', '5MiB', ...extraArgs], {
        ...s3ServeEnv(env, bucket, schema),
        BERTH_S3_PREFIX: PREFIX,
        BERTH_LOG_LEVEL: 'info',
        ...extraEnv,
      });
      spawned.push(proc);
      return proc;
    }

    before(async () => {
      bucket = await createBucket(admin, 'e2e');
      // The first process creates the schema; start it alone so the others find it migrated.
      a = await berth();
      b = await berth(['--s3-redirect']);
    });
    after(async () => {
      await Promise.all(spawned.map((p) => p.stop('SIGKILL')));
      if (bucket) await deleteBucket(admin, bucket);
      await dropSchema(schema);
      admin.destroy();
    });

    let repoCounter = 0;
    const repo = () => `e2e/r${++repoCounter}`;

    it('completes chunked uploads of 1 KiB, 1 MiB, 5 MiB−1, 5 MiB, 7 MiB and mixed chunks', async (t) => {
      const cases: { name: string; size: number; chunks: number[] }[] = [
        { name: '1 KiB', size: 64 * KiB + 100, chunks: [KiB] },
        { name: '1 MiB', size: 11 * MiB + 512 * KiB, chunks: [MiB] },
        { name: '5 MiB - 1', size: 3 * (PART - 1) + 123, chunks: [PART - 1] },
        { name: '5 MiB', size: 3 * PART + 123, chunks: [PART] },
        { name: '7 MiB', size: 2 * 7 * MiB + 3 * MiB, chunks: [7 * MiB] },
        { name: 'mixed', size: 20 * MiB, chunks: [KiB, PART - 1, 1, 7 * MiB, MiB, PART, 3] },
      ];
      for (const [i, c] of cases.entries()) {
        const name = repo();
        const data = randomBytes(c.size);
        const started = Date.now();
        // Every other case sends its last chunk with the closing PUT.
        await pushChunked([a], name, data, c.chunks, { lastWithPut: i % 2 === 1 });
        const get = await rawRequest(a.url, `/v2/${name}/blobs/${sha256(data)}`);
        assert.equal(get.status, 200, `${c.name}: ${get.status}`);
        assert.equal(sha256(get.body), sha256(data), c.name);
        t.diagnostic(`${c.name} chunks, ${(c.size / MiB).toFixed(1)} MiB: ${Date.now() - started} ms`);
      }
    });

    it('advertises OCI-Chunk-Min-Length as the part size', async () => {
      const start = await rawRequest(a.url, `/v2/${repo()}/blobs/uploads/`, { method: 'POST' });
      assert.equal(start.status, 202);
      assert.equal(start.header('oci-chunk-min-length'), String(PART));
    });

    it('takes a streamed 100 MiB PATCH and a streamed monolithic PUT (chunked transfer encoding)', async () => {
      const name = repo();
      const start = await rawRequest(a.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      const body = generated(100 * MiB);
      // The digest is only known once the body has been generated: send it on a PATCH, then PUT.
      const patch = await streamRequest(a.url, start.header('location')!, 'PATCH', body.stream);
      assert.equal(patch.status, 202, patch.text);
      assert.equal(patch.header('range'), `0-${100 * MiB - 1}`);
      const put = await rawRequest(a.url, withDigest(patch.header('location')!, body.digest()), { method: 'PUT' });
      assert.equal(put.status, 201, put.text);
      const head = await rawRequest(b.url, `/v2/${name}/blobs/${body.digest()}`, { method: 'HEAD' });
      assert.equal(head.header('content-length'), String(100 * MiB));
      assert.equal(await digestOfGet(a.url, `/v2/${name}/blobs/${body.digest()}`), body.digest());

      // And one PUT whose streamed body is the whole blob (digest known up front).
      const again = randomBytes(12 * MiB + 7);
      const second = await rawRequest(a.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      const monolithic = await streamRequest(
        a.url,
        withDigest(second.header('location')!, sha256(again)),
        'PUT',
        Readable.from(slices(again, 300 * KiB)),
      );
      assert.equal(monolithic.status, 201, monolithic.text);
      assert.equal(await digestOfGet(a.url, `/v2/${name}/blobs/${sha256(again)}`), sha256(again));
    });

    it('stores the empty blob', async () => {
      const name = repo();
      const empty = Buffer.alloc(0);
      const start = await rawRequest(a.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      const put = await rawRequest(a.url, withDigest(start.header('location')!, sha256(empty)), { method: 'PUT' });
      assert.equal(put.status, 201, put.text);
      const get = await rawRequest(a.url, `/v2/${name}/blobs/${sha256(empty)}`);
      assert.equal(get.status, 200);
      assert.equal(get.header('content-length'), '0');
      assert.equal(get.body.length, 0);
      const keys = await listKeys(admin, bucket, `${PREFIX}blobs/`);
      assert.ok(keys.includes(`${PREFIX}blobs/sha256/${sha256(empty).slice(7)}`), keys.join());
    });

    it('rejects a wrong digest at the end with 400 and keeps nothing of the session', async () => {
      const name = repo();
      const data = randomBytes(12 * MiB + 5);
      const { location, id } = await pushChunked([a], name, data, [4 * MiB], { put: false });
      const wrong = sha256(data.subarray(1));
      const put = await rawRequest(a.url, withDigest(location, wrong), { method: 'PUT' });
      assertError(put, 400, 'DIGEST_INVALID');
      for (const digest of [wrong, sha256(data)]) {
        assertError(await rawRequest(a.url, `/v2/${name}/blobs/${digest}`, { method: 'HEAD' }), 404);
        assert.ok(!(await listKeys(admin, bucket, `${PREFIX}blobs/`)).some((k) => k.endsWith(digest.slice(7))));
      }
      assertError(await rawRequest(a.url, location), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.deepEqual(await listUploads(admin, bucket, `${PREFIX}data/${id}/`), []);
      assert.deepEqual(await listKeys(admin, bucket, `${PREFIX}data/${id}/`), []);
      assert.deepEqual(await listKeys(admin, bucket, `${PREFIX}uploads/${id}/`), []);
    });

    it('shows an open upload in ListMultipartUploads with growing parts, and no staging after completion', async () => {
      const name = repo();
      const data = randomBytes(17 * MiB);
      const start = await rawRequest(a.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      let location = start.header('location')!;
      const id = uploadId(location);
      const [upload] = await listUploads(admin, bucket, `${PREFIX}data/${id}/`);
      assert.ok(upload, 'the multipart upload exists once the session does');
      assert.deepEqual(await listPartSizes(admin, bucket, upload.key, upload.uploadId), []);

      const seen: number[][] = [];
      for (const [from, to] of [
        [0, 6 * MiB],
        [6 * MiB, 12 * MiB],
        [12 * MiB, 16 * MiB],
      ]) {
        const res = await rawRequest(a.url, location, {
          method: 'PATCH',
          body: data.subarray(from, to),
          headers: { 'Content-Range': `${from}-${to - 1}` },
        });
        assert.equal(res.status, 202, res.text);
        location = res.header('location')!;
        seen.push(await listPartSizes(admin, bucket, upload.key, upload.uploadId));
        assert.equal(
          (await listKeys(admin, bucket, `${PREFIX}uploads/${id}/`)).length > 0,
          to % PART !== 0,
          'a staged tail while bytes are left over',
        );
      }
      assert.deepEqual(seen, [[PART], [PART, PART], [PART, PART, PART]]);

      const put = await rawRequest(a.url, withDigest(location, sha256(data)), {
        method: 'PUT',
        body: data.subarray(16 * MiB),
        headers: { 'Content-Range': `${16 * MiB}-${data.length - 1}` },
      });
      assert.equal(put.status, 201, put.text);
      assert.deepEqual(await listUploads(admin, bucket, `${PREFIX}data/${id}/`), [], 'the multipart upload is completed');
      assert.deepEqual(await listKeys(admin, bucket, `${PREFIX}uploads/${id}/`), [], 'no staging objects remain');
      assert.deepEqual(await listKeys(admin, bucket, `${PREFIX}data/${id}/`), [upload.key], 'one data object, not a copy');
      assert.equal(await digestOfGet(a.url, `/v2/${name}/blobs/${sha256(data)}`), sha256(data));
    });

    it('alternates chunks between two processes and completes with the right digest', async () => {
      const name = repo();
      const data = randomBytes(23 * MiB + 11);
      await pushChunked([b, a], name, data, [3 * MiB, PART, 2 * MiB + 1, 6 * MiB]);
      for (const server of [a, b]) assert.equal(await digestOfGet(server.url, `/v2/${name}/blobs/${sha256(data)}`), sha256(data));
      // b redirects to a presigned URL that serves the same bytes, ranges included.
      const redirect = await rawRequest(b.url, `/v2/${name}/blobs/${sha256(data)}`, { headers: { Range: 'bytes=10-19' } });
      assert.equal(redirect.status, 307);
      const ranged = await fetch(redirect.header('location')!, { headers: { Range: 'bytes=10-19' } });
      assert.equal(ranged.status, 206);
      assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), data.subarray(10, 20));
    });

    it('lets exactly one of two concurrent PATCHes on one session win, leaving the session intact', async () => {
      const name = repo();
      const head = randomBytes(3 * MiB);
      const candidates = [randomBytes(8 * MiB), randomBytes(8 * MiB)];
      const rest = randomBytes(2 * MiB + 3);
      const start = await rawRequest(a.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      const first = await rawRequest(b.url, start.header('location')!, {
        method: 'PATCH',
        body: head,
        headers: { 'Content-Range': `0-${head.length - 1}` },
      });
      assert.equal(first.status, 202);
      const location = first.header('location')!;
      const end = head.length + 8 * MiB - 1;
      const results = await Promise.all(
        [a, b].map((server, i) =>
          rawRequest(server.url, location, { method: 'PATCH', body: candidates[i], headers: { 'Content-Range': `${head.length}-${end}` } }),
        ),
      );
      assert.deepEqual(results.map((r) => r.status).sort(), [202, 416], results.map((r) => r.text).join(' | '));
      const winner = candidates[results.findIndex((r) => r.status === 202)];
      const loser = results.find((r) => r.status === 416)!;
      assertError(loser, 416, 'BLOB_UPLOAD_INVALID');

      const status = await rawRequest(a.url, location);
      assert.equal(status.status, 204);
      assert.equal(status.header('range'), `0-${end}`);
      const data = Buffer.concat([head, winner, rest]);
      const put = await rawRequest(b.url, withDigest(location, sha256(data)), {
        method: 'PUT',
        body: rest,
        headers: { 'Content-Range': `${end + 1}-${data.length - 1}` },
      });
      assert.equal(put.status, 201, put.text);
      assert.equal(await digestOfGet(a.url, `/v2/${name}/blobs/${sha256(data)}`), sha256(data));
    });

    it('resumes on another process after the one streaming a PATCH is killed', async () => {
      // A short lease: the dead process's claim on the session lapses after 2 s.
      const doomed = await berth(['--upload-lease', '2']);
      const name = repo();
      const head = randomBytes(6 * MiB);
      const rest = randomBytes(24 * MiB + 99);
      const data = Buffer.concat([head, rest]);
      const start = await rawRequest(doomed.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      const first = await rawRequest(doomed.url, start.header('location')!, {
        method: 'PATCH',
        body: head,
        headers: { 'Content-Range': `0-${head.length - 1}` },
      });
      assert.equal(first.status, 202);
      const location = first.header('location')!;

      // Stream the rest, stall after 14 MiB (parts are on their way to S3), then SIGKILL.
      const stall = 14 * MiB;
      let sent = 0;
      let reachedStall!: () => void;
      const stalled = new Promise<void>((resolve) => (reachedStall = resolve));
      const body = new Readable({
        read() {
          if (sent >= stall) return reachedStall();
          const piece = rest.subarray(sent, Math.min(sent + 256 * KiB, stall));
          sent += piece.length;
          this.push(piece);
        },
      });
      const doomedPatch = streamRequest(doomed.url, location, 'PATCH', body).then(
        (res) => res.status,
        (error: Error) => error.message,
      );
      await stalled;
      await new Promise((r) => setTimeout(r, 500));
      await doomed.stop('SIGKILL');
      body.destroy();
      assert.notEqual(await doomedPatch, 202);

      // The client asks another process where the session stands: its last good offset.
      const status = await rawRequest(a.url, location);
      assert.equal(status.status, 204);
      assert.equal(status.header('range'), `0-${head.length - 1}`);
      // Resume from there; 416 while the dead process's lease has not lapsed yet.
      let resumed: RawResponse | undefined;
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        resumed = await rawRequest(a.url, location, {
          method: 'PATCH',
          body: rest,
          headers: { 'Content-Range': `${head.length}-${data.length - 1}` },
        });
        if (resumed.status !== 416) break;
        assert.equal(resumed.header('range'), `0-${head.length - 1}`, 'the session stays at its last good offset');
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.equal(resumed?.status, 202, resumed?.text);
      const put = await rawRequest(b.url, withDigest(resumed.header('location')!, sha256(data)), { method: 'PUT' });
      assert.equal(put.status, 201, put.text);
      assert.equal(await digestOfGet(a.url, `/v2/${name}/blobs/${sha256(data)}`), sha256(data));
    });

    it('keeps peak RSS flat while a 1 GiB blob streams in one request', async (t) => {
      const fresh = await berth();
      const pid = fresh.child.pid!;
      const name = repo();
      // Warm up first, through the same path: the server loads and compiles (from TypeScript
      // sources) the SDK's multipart code on first use, which Node 24 measures as ~40 MB more
      // than Node 20. The baseline is the process once it has streamed a blob.
      const warm = generated(64 * MiB);
      const warmStart = await rawRequest(fresh.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      const warmPatch = await streamRequest(fresh.url, warmStart.header('location')!, 'PATCH', warm.stream);
      assert.equal(warmPatch.status, 202, warmPatch.text);
      const warmPut = await rawRequest(fresh.url, withDigest(warmPatch.header('location')!, warm.digest()), { method: 'PUT' });
      assert.equal(warmPut.status, 201, warmPut.text);
      const baseline = await peakRss(pid);
      const size = 1024 * MiB;
      const started = Date.now();
      const start = await rawRequest(fresh.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      // Peak after the first 256 MiB, when buffers and sockets have reached their working size.
      let early = 0;
      const body = generated(size, (sent) => {
        if (sent === 256 * MiB) early = peakRssSync(pid);
      });
      const patch = await streamRequest(fresh.url, start.header('location')!, 'PATCH', body.stream);
      assert.equal(patch.status, 202, patch.text);
      const put = await rawRequest(fresh.url, withDigest(patch.header('location')!, body.digest()), { method: 'PUT' });
      assert.equal(put.status, 201, put.text);
      const seconds = (Date.now() - started) / 1000;
      const peak = await peakRss(pid);
      t.diagnostic(
        `1 GiB streamed in ${seconds.toFixed(1)} s (${(1024 / seconds).toFixed(0)} MiB/s); VmHWM ${mb(baseline)} MB after a 64 MiB warm-up, ${mb(early)} MB after 256 MiB, ${mb(peak)} MB after 1 GiB`,
      );
      assert.ok(peak < 250 * MiB, `peak RSS ${mb(peak)} MB`);
      // The store's bound: partConcurrency (2) parts uploading plus the one filling, each a part
      // buffer; on top, heap and socket buffers growing to a 1 GiB stream's working size (seen: 3 MB
      // on Node 20, 31 MB on Node 24).
      const parts = (2 + 1) * PART;
      assert.ok(peak - baseline < parts + 64 * MiB, `peak grew by ${mb(peak - baseline)} MB over ${mb(baseline)} MB`);
      // Flat: the last 768 MiB add (next to) nothing to the peak.
      assert.ok(peak - early < 40 * MiB, `peak grew from ${mb(early)} MB to ${mb(peak)} MB`);
      const head = await rawRequest(a.url, `/v2/${name}/blobs/${body.digest()}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.header('content-length'), String(size));
    });

    it('answers 503 UNAVAILABLE, promptly, when S3 cannot be reached', async () => {
      // A pushed blob and an open session in the shared metadata, served by a process whose S3
      // endpoint is a port nobody listens on.
      const name = repo();
      const data = randomBytes(2 * MiB);
      await pushChunked([a], name, data, [MiB]);
      const open = await rawRequest(a.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      const location = open.header('location')!;
      // Reachable at start (berth serve checks the bucket before it serves), then cut off.
      const proxy = await tcpProxy(new URL(env.endpoint));
      const dead = await berth([], { BERTH_S3_ENDPOINT: proxy.url });
      proxy.cut();

      const requests: [string, () => Promise<RawResponse>][] = [
        ['POST upload', () => rawRequest(dead.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' })],
        ['GET blob', () => rawRequest(dead.url, `/v2/${name}/blobs/${sha256(data)}`)],
        [
          'PATCH',
          () => rawRequest(dead.url, location, { method: 'PATCH', body: data, headers: { 'Content-Range': `0-${data.length - 1}` } }),
        ],
        ['PUT', () => rawRequest(dead.url, withDigest(location, sha256(data)), { method: 'PUT', body: data })],
      ];
      for (const [label, send] of requests) {
        const started = Date.now();
        const res = await send();
        assertError(res, 503, 'UNAVAILABLE');
        assert.ok(Date.now() - started < 15_000, `${label} took ${Date.now() - started} ms`);
      }
      // The session is still usable through a process that reaches S3.
      const status = await rawRequest(a.url, location);
      assert.equal(status.status, 204);
      assert.equal(status.header('range'), '0-0');
      const put = await rawRequest(a.url, withDigest(location, sha256(data)), { method: 'PUT', body: data });
      assert.equal(put.status, 201, put.text);
      await proxy.close();
    });

    it('answers 503 when S3 drops mid-PATCH and keeps the session at its last good offset', async () => {
      // This process reaches S3 through a proxy the test cuts while a PATCH streams.
      const proxy = await tcpProxy(new URL(env.endpoint));
      const flaky = await berth([], { BERTH_S3_ENDPOINT: `http://127.0.0.1:${proxy.port}` });
      const name = repo();
      const head = randomBytes(7 * MiB);
      const rest = randomBytes(20 * MiB + 1);
      const data = Buffer.concat([head, rest]);
      const start = await rawRequest(flaky.url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      const first = await rawRequest(flaky.url, start.header('location')!, {
        method: 'PATCH',
        body: head,
        headers: { 'Content-Range': `0-${head.length - 1}` },
      });
      assert.equal(first.status, 202);
      const location = first.header('location')!;

      // Send 12 MiB, cut S3 off, then send the rest: the request must end, with 503.
      let sent = 0;
      let cut = false;
      const body = new Readable({
        read() {
          if (sent >= rest.length) return void this.push(null);
          if (sent >= 12 * MiB && !cut) {
            cut = true;
            setTimeout(() => {
              proxy.cut();
              this.push(rest.subarray(sent, (sent += 256 * KiB)));
            }, 300);
            return;
          }
          this.push(rest.subarray(sent, (sent += 256 * KiB)));
        },
      });
      const started = Date.now();
      const patch = await streamRequest(flaky.url, location, 'PATCH', body);
      assertError(patch, 503, 'UNAVAILABLE');
      assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);

      const status = await rawRequest(a.url, location);
      assert.equal(status.header('range'), `0-${head.length - 1}`);
      const resumed = await rawRequest(a.url, withDigest(location, sha256(data)), {
        method: 'PUT',
        body: rest,
        headers: { 'Content-Range': `${head.length}-${data.length - 1}` },
      });
      assert.equal(resumed.status, 201, resumed.text);
      assert.equal(await digestOfGet(b.url, `/v2/${name}/blobs/${sha256(data)}`), sha256(data));
      await proxy.close();
    });

    /**
     * POST, then PATCH `data` in chunks cycling through `sizes` (round-robin over `servers`, starting
     * with the second one when there are several), then PUT on the next server. Returns the
     * session's location (before PUT) and id.
     */
    async function pushChunked(
      servers: BerthProcess[],
      name: string,
      data: Buffer,
      sizes: number[],
      options: { lastWithPut?: boolean; put?: boolean } = {},
    ): Promise<{ location: string; id: string }> {
      const start = await rawRequest(servers[0].url, `/v2/${name}/blobs/uploads/`, { method: 'POST' });
      assert.equal(start.status, 202, start.text);
      let location = start.header('location')!;
      const id = uploadId(location);
      const chunks: [number, number][] = [];
      for (let offset = 0, i = 0; offset < data.length; i++) {
        const end = Math.min(offset + sizes[i % sizes.length], data.length);
        chunks.push([offset, end]);
        offset = end;
      }
      const last = options.lastWithPut ? chunks.pop() : undefined;
      let turn = 1;
      for (const [from, to] of chunks) {
        const server = servers[turn++ % servers.length];
        const res = await rawRequest(server.url, location, {
          method: 'PATCH',
          body: data.subarray(from, to),
          headers: { 'Content-Range': `${from}-${to - 1}` },
        });
        assert.equal(res.status, 202, `PATCH ${from}-${to - 1}: ${res.text}`);
        assert.equal(res.header('range'), `0-${to - 1}`);
        location = res.header('location')!;
      }
      if (options.put === false) return { location, id };
      const server = servers[turn % servers.length];
      const put = await rawRequest(server.url, withDigest(location, sha256(data)), {
        method: 'PUT',
        ...(last && { body: data.subarray(last[0], last[1]), headers: { 'Content-Range': `${last[0]}-${last[1] - 1}` } }),
      });
      assert.equal(put.status, 201, put.text);
      return { location, id };
    }
  });
}

function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`;
}

function uploadId(location: string): string {
  return new URL(location, 'http://x').pathname.split('/').pop()!;
}

function* slices(data: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

/**
 * `size` bytes generated on the fly (a random 1 MiB block, stamped with a counter so no two
 * chunks are alike) and hashed as they go; never held in memory whole.
 */
function generated(size: number, onProgress?: (sent: number) => void): { stream: Readable; digest(): string } {
  const block = randomBytes(MiB);
  const hash = createHash('sha256');
  let sent = 0;
  let n = 0;
  const stream = new Readable({
    read() {
      if (sent >= size) return void this.push(null);
      const piece = Buffer.from(block.subarray(0, Math.min(MiB, size - sent)));
      if (piece.length >= 8) piece.writeBigUInt64BE(BigInt(n++));
      sent += piece.length;
      hash.update(piece);
      onProgress?.(sent);
      this.push(piece);
    },
  });
  let digest: string | undefined;
  return { stream, digest: () => (digest ??= `sha256:${hash.digest('hex')}`) };
}

/** Send `body` with chunked transfer encoding (no Content-Length). */
function streamRequest(
  base: string,
  path: string,
  method: string,
  body: Readable,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { hostname, port, path, method, headers: { 'Content-Type': 'application/octet-stream', ...headers }, agent: false },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const data = Buffer.concat(parts);
          const text = data.toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: data,
            text,
            json: () => JSON.parse(text),
            header: (name) => {
              const v = res.headers[name.toLowerCase()];
              return Array.isArray(v) ? v.join(', ') : v;
            },
          });
        });
      },
    );
    req.on('error', reject);
    body.on('error', (error) => req.destroy(error));
    body.pipe(req);
  });
}

/** SHA-256 of a blob GET, hashed as it streams; follows a redirect to S3. */
async function digestOfGet(base: string, path: string): Promise<string> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    httpRequest({ hostname: url.hostname, port: url.port, path: url.pathname + url.search, agent: false }, (res) => {
      if (res.statusCode === 307 && res.headers.location) {
        res.resume();
        return resolve(digestOfGet(base, res.headers.location));
      }
      if (res.statusCode !== 200) return reject(new Error(`GET ${path}: ${res.statusCode}`));
      const hash = createHash('sha256');
      res.on('data', (c: Buffer) => hash.update(c));
      res.on('end', () => resolve(`sha256:${hash.digest('hex')}`));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

/** Peak resident set size of a process (VmHWM), in bytes. */
async function peakRss(pid: number): Promise<number> {
  return parseHwm(pid, await readFile(`/proc/${pid}/status`, 'utf8'));
}

function peakRssSync(pid: number): number {
  return parseHwm(pid, readFileSync(`/proc/${pid}/status`, 'utf8'));
}

function parseHwm(pid: number, status: string): number {
  const kb = /^VmHWM:\s+(\d+) kB/m.exec(status);
  if (!kb) throw new Error(`no VmHWM for ${pid}`);
  return Number(kb[1]) * 1024;
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(0);
