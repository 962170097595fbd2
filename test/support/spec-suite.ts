import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import {
  assertError,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  EMPTY_CONFIG,
  OCI_INDEX,
  OCI_MANIFEST,
  randomBlob,
  rawRequest,
  sha256,
  sha512,
  TestClient,
} from './client.js';
import { startRegistry, type AdapterName, type ExtraOptions, type RunningRegistry } from './servers.js';
import type { StoreSet } from './stores.js';

let counter = 0;
/** A fresh repository name per test, multi-segment like real ones. */
const repoName = (prefix = 'spec') => `${prefix}/r${++counter}-${randomBytes(3).toString('hex')}`;

/**
 * The OCI Distribution conformance-style suite: drives the HTTP API as a client would, against one
 * adapter × store combination. `extra` adds registry options (e.g. auth hooks) and `headers` are
 * sent with every request (e.g. credentials).
 */
export function describeSpec(
  name: string,
  adapter: AdapterName,
  makeStores: () => Promise<StoreSet>,
  extra: ExtraOptions = {},
  headers: Record<string, string> = {},
) {
  describe(`OCI distribution spec: ${name}`, () => {
    let stores: StoreSet;
    let server: RunningRegistry;
    let client: TestClient;

    before(async () => {
      stores = await makeStores();
      server = await startRegistry(adapter, stores, extra);
      client = new TestClient(server.url, headers);
    });
    after(async () => {
      await server?.stop();
      await stores?.destroy();
    });

    /** Tags, manifests by tag, and blob presence: compared before and after a rejected request. */
    async function snapshot(repo: string, digests: string[] = []) {
      const tags = await client.req(`/v2/${repo}/tags/list`);
      const list: string[] = tags.status === 200 ? tags.json().tags : [];
      const manifests = await Promise.all(list.map(async (t) => (await client.req(`/v2/${repo}/manifests/${t}`)).body.toString('base64')));
      const blobs = await Promise.all(digests.map(async (d) => (await client.req(`/v2/${repo}/blobs/${d}`, { method: 'HEAD' })).status));
      return { status: tags.status, list, manifests, blobs };
    }

    describe('base', () => {
      it('answers GET /v2/ and /v2 with 200 and the API version header', async () => {
        for (const path of ['/v2/', '/v2']) {
          const res = await client.req(path);
          assert.equal(res.status, 200);
          assert.equal(res.header('docker-distribution-api-version'), 'registry/2.0');
        }
      });
      it('leaves paths outside /v2 to the host app', async () => {
        const res = await client.req('/health');
        assert.equal(res.status, 200);
        assert.deepEqual(res.json(), { ok: true });
      });
      it('answers 405 UNSUPPORTED for a method a route does not serve', async () => {
        const res = await client.req(`/v2/${repoName()}/tags/list`, { method: 'POST' });
        assertError(res, 405, 'UNSUPPORTED');
      });
      it('answers 404 for unknown /v2 paths', async () => {
        assertError(await client.req('/v2/nothing-here'), 404, 'NAME_UNKNOWN');
      });
    });

    describe('blob push and pull', () => {
      it('pushes with POST then PUT and pulls the exact bytes back', async () => {
        const repo = repoName();
        const data = randomBlob(70_000);
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        assert.equal(start.status, 202);
        const location = start.header('location')!;
        assert.match(location, new RegExp(`^/v2/${repo}/blobs/uploads/[0-9a-f-]{36}$`));
        assert.equal(start.header('range'), '0-0');
        const put = await client.req(`${location}?digest=${sha256(data)}`, {
          method: 'PUT',
          body: data,
          headers: { 'Content-Type': 'application/octet-stream' },
        });
        assert.equal(put.status, 201, put.text);
        assert.equal(put.header('location'), `/v2/${repo}/blobs/${sha256(data)}`);
        assert.equal(put.header('docker-content-digest'), sha256(data));

        const get = await client.req(`/v2/${repo}/blobs/${sha256(data)}`);
        assert.equal(get.status, 200);
        assert.ok(get.body.equals(data));
        assert.equal(get.header('content-length'), String(data.length));
        assert.equal(get.header('docker-content-digest'), sha256(data));

        const head = await client.req(`/v2/${repo}/blobs/${sha256(data)}`, { method: 'HEAD' });
        assert.equal(head.status, 200);
        assert.equal(head.body.length, 0);
        assert.equal(head.header('content-length'), String(data.length));
        assert.equal(head.header('docker-content-digest'), sha256(data));
      });

      it('accepts a single-POST monolithic upload', async () => {
        const repo = repoName();
        const data = randomBlob(5000);
        const res = await client.req(`/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, {
          method: 'POST',
          body: data,
          headers: { 'Content-Type': 'application/octet-stream' },
        });
        assert.equal(res.status, 201, res.text);
        assert.equal(res.header('location'), `/v2/${repo}/blobs/${sha256(data)}`);
        assert.ok((await client.req(`/v2/${repo}/blobs/${sha256(data)}`)).body.equals(data));
      });

      it('handles the empty blob and the {} blob', async () => {
        const repo = repoName();
        for (const data of [Buffer.alloc(0), Buffer.from('{}')]) {
          await client.pushBlob(repo, data);
          const head = await client.req(`/v2/${repo}/blobs/${sha256(data)}`, { method: 'HEAD' });
          assert.equal(head.status, 200);
          assert.equal(head.header('content-length'), String(data.length));
          const get = await client.req(`/v2/${repo}/blobs/${sha256(data)}`);
          assert.equal(get.header('content-length'), String(data.length));
          assert.ok(get.body.equals(data));
        }
      });

      it('pushes and pulls sha512 blobs', async () => {
        const repo = repoName();
        const data = randomBlob(3000);
        await client.pushBlob(repo, data, sha512(data));
        const get = await client.req(`/v2/${repo}/blobs/${sha512(data)}`);
        assert.equal(get.status, 200);
        assert.equal(get.header('docker-content-digest'), sha512(data));
        assert.ok(get.body.equals(data));
      });

      it('rejects a wrong digest with DIGEST_INVALID and stores nothing', async () => {
        const repo = repoName();
        const data = randomBlob(1000);
        const wrong = sha256('something else');
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const location = start.header('location')!;
        const put = await client.req(`${location}?digest=${wrong}`, { method: 'PUT', body: data });
        assertError(put, 400, 'DIGEST_INVALID');
        assertError(await client.req(`/v2/${repo}/blobs/${wrong}`, { method: 'GET' }), 404, 'BLOB_UNKNOWN');
        assertError(await client.req(`/v2/${repo}/blobs/${sha256(data)}`), 404, 'BLOB_UNKNOWN');
        assertError(await client.req(location), 404, 'BLOB_UPLOAD_UNKNOWN');
      });

      it('rejects malformed digests with 400 DIGEST_INVALID', async () => {
        const repo = repoName();
        for (const digest of ['sha256:abc', `sha256:${'A'.repeat(64)}`, `md5:${'a'.repeat(32)}`, 'nocolon', 'sha256:../../etc']) {
          const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
          const put = await client.req(`${start.header('location')}?digest=${encodeURIComponent(digest)}`, { method: 'PUT', body: 'x' });
          assertError(put, 400, 'DIGEST_INVALID');
          assertError(await client.req(`/v2/${repo}/blobs/${encodeURIComponent(digest)}`), 400, 'DIGEST_INVALID');
        }
        const put = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'PUT' });
        assert.equal(put.status, 405);
      });

      it('rejects a PUT without digest', async () => {
        const repo = repoName();
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        assertError(await client.req(start.header('location')!, { method: 'PUT', body: 'abc' }), 400, 'DIGEST_INVALID');
      });

      it('answers 404 BLOB_UNKNOWN for unknown blobs and repositories', async () => {
        const repo = repoName();
        assertError(await client.req(`/v2/${repo}/blobs/${sha256('nope')}`), 404, 'BLOB_UNKNOWN');
        const head = await client.req(`/v2/${repo}/blobs/${sha256('nope')}`, { method: 'HEAD' });
        assert.equal(head.status, 404);
        assert.equal(head.body.length, 0);
      });

      it('shows a blob only in the repositories that link it', async () => {
        const a = repoName();
        const b = repoName();
        const digest = await client.pushBlob(a, randomBlob(100));
        assert.equal((await client.req(`/v2/${a}/blobs/${digest}`, { method: 'HEAD' })).status, 200);
        assertError(await client.req(`/v2/${b}/blobs/${digest}`), 404, 'BLOB_UNKNOWN');
        assert.equal((await client.req(`/v2/${b}/blobs/${digest}`, { method: 'HEAD' })).status, 404);
      });

      it('serves byte ranges with 206 and refuses unsatisfiable ones with 416', async () => {
        const repo = repoName();
        const data = randomBlob(2048);
        const digest = await client.pushBlob(repo, data);
        const path = `/v2/${repo}/blobs/${digest}`;
        const r1 = await client.req(path, { headers: { Range: 'bytes=500-1499' } });
        assert.equal(r1.status, 206);
        assert.equal(r1.header('content-range'), 'bytes 500-1499/2048');
        assert.equal(r1.header('content-length'), '1000');
        assert.ok(r1.body.equals(data.subarray(500, 1500)));
        const r2 = await client.req(path, { headers: { Range: 'bytes=500-' } });
        assert.equal(r2.status, 206);
        assert.ok(r2.body.equals(data.subarray(500)));
        const r3 = await client.req(path, { headers: { Range: 'bytes=-500' } });
        assert.equal(r3.status, 206);
        assert.ok(r3.body.equals(data.subarray(1548)));
        const r4 = await client.req(path, { headers: { Range: 'bytes=2000-5000' } });
        assert.equal(r4.status, 206);
        assert.equal(r4.header('content-range'), 'bytes 2000-2047/2048');
        assert.ok(r4.body.equals(data.subarray(2000)));
        for (const range of ['bytes=500-0', 'bytes=5000-10000']) {
          const bad = await client.req(path, { headers: { Range: range } });
          assert.equal(bad.status, 416, range);
          assert.equal(bad.header('content-range'), 'bytes */2048');
        }
        const head = await client.req(path, { method: 'HEAD', headers: { Range: 'bytes=0-9' } });
        assert.equal(head.status, 206);
        assert.equal(head.header('content-length'), '10');
      });

      it('deletes a blob link: 202, then 404 at once; unknown → 404', async () => {
        const repo = repoName();
        const digest = await client.pushBlob(repo, randomBlob(10));
        assert.equal((await client.req(`/v2/${repo}/blobs/${digest}`, { method: 'DELETE' })).status, 202);
        assert.equal((await client.req(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' })).status, 404);
        assertError(await client.req(`/v2/${repo}/blobs/${digest}`, { method: 'DELETE' }), 404, 'BLOB_UNKNOWN');
      });

      it('rejects invalid repository names with 400 NAME_INVALID', async () => {
        for (const name of ['UPPER/case', 'a//b', '-lead', 'trail-', 'a/../b', 'x'.repeat(300)]) {
          const res = await client.req(`/v2/${name}/blobs/uploads/`, { method: 'POST' });
          assertError(res, 400, 'NAME_INVALID');
        }
      });

      it('routes names whose components are blobs, manifests, uploads or tags', async () => {
        const repo = `${repoName()}/blobs/manifests/uploads/tags`;
        const digest = await client.pushBlob(repo, Buffer.from('tricky'));
        assert.equal((await client.req(`/v2/${repo}/blobs/${digest}`)).text, 'tricky');
        const ok = await client.req(`/v2/a__b/c--d/e.f/blobs/uploads/`, { method: 'POST' });
        assert.equal(ok.status, 202);
      });
    });

    describe('chunked uploads', () => {
      it('appends ordered chunks, reports progress and closes with the last chunk', async () => {
        const repo = repoName();
        const data = randomBlob(3 * 65536 + 123);
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: { 'Content-Length': 0 } });
        assert.equal(start.status, 202);
        let location = start.header('location')!;
        const pieces = [data.subarray(0, 65536), data.subarray(65536, 2 * 65536), data.subarray(2 * 65536, 3 * 65536)];
        let offset = 0;
        for (const piece of pieces) {
          const res = await client.req(location, {
            method: 'PATCH',
            body: piece,
            headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${offset}-${offset + piece.length - 1}` },
          });
          assert.equal(res.status, 202, res.text);
          offset += piece.length;
          assert.equal(res.header('range'), `0-${offset - 1}`);
          location = res.header('location')!;
          const status = await client.req(location);
          assert.equal(status.status, 204);
          assert.equal(status.header('range'), `0-${offset - 1}`);
          assert.equal(status.header('location'), location);
        }
        const last = data.subarray(offset);
        const put = await client.req(`${location}?digest=${sha256(data)}`, {
          method: 'PUT',
          body: last,
          headers: { 'Content-Range': `${offset}-${data.length - 1}`, 'Content-Type': 'application/octet-stream' },
        });
        assert.equal(put.status, 201, put.text);
        assert.ok((await client.req(`/v2/${repo}/blobs/${sha256(data)}`)).body.equals(data));
      });

      it('accepts a streamed PATCH without Content-Range or Content-Length', async () => {
        const repo = repoName();
        const parts = [randomBlob(10_000), randomBlob(50_000), randomBlob(1)];
        const data = Buffer.concat(parts);
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const patch = await client.req(start.header('location')!, { method: 'PATCH', body: parts });
        assert.equal(patch.status, 202, patch.text);
        assert.equal(patch.header('range'), `0-${data.length - 1}`);
        const put = await client.req(`${patch.header('location')}?digest=${sha256(data)}`, { method: 'PUT' });
        assert.equal(put.status, 201, put.text);
        assert.ok((await client.req(`/v2/${repo}/blobs/${sha256(data)}`)).body.equals(data));
      });

      it('answers 416 to out-of-order chunks and keeps the session usable', async () => {
        const repo = repoName();
        const data = randomBlob(300);
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const location = start.header('location')!;
        const first = await client.req(location, { method: 'PATCH', body: data.subarray(0, 100), headers: { 'Content-Range': '0-99' } });
        assert.equal(first.status, 202);
        for (const range of ['150-249', '0-99', '50-149']) {
          const [a, b] = range.split('-').map(Number);
          const res = await client.req(location, { method: 'PATCH', body: data.subarray(a, b + 1), headers: { 'Content-Range': range } });
          assert.equal(res.status, 416, range);
          assert.equal(res.header('range'), '0-99');
        }
        const bad = await client.req(location, { method: 'PATCH', body: 'abc', headers: { 'Content-Range': 'garbage' } });
        assert.equal(bad.status, 416);
        const status = await client.req(location);
        assert.equal(status.status, 204);
        assert.equal(status.header('range'), '0-99');
        // Out-of-order final chunk on the closing PUT ([main]).
        const badPut = await client.req(`${location}?digest=${sha256(data)}`, {
          method: 'PUT',
          body: data.subarray(200),
          headers: { 'Content-Range': '200-299' },
        });
        assert.equal(badPut.status, 416);
        const second = await client.req(location, {
          method: 'PATCH',
          body: data.subarray(100, 200),
          headers: { 'Content-Range': '100-199' },
        });
        assert.equal(second.status, 202);
        const put = await client.req(`${location}?digest=${sha256(data)}`, {
          method: 'PUT',
          body: data.subarray(200),
          headers: { 'Content-Range': '200-299' },
        });
        assert.equal(put.status, 201, put.text);
        assert.ok((await client.req(`/v2/${repo}/blobs/${sha256(data)}`)).body.equals(data));
      });

      it('rejects a chunk whose Content-Length disagrees with Content-Range and keeps the offset', async () => {
        const repo = repoName();
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const location = start.header('location')!;
        const res = await client.req(location, { method: 'PATCH', body: randomBlob(10), headers: { 'Content-Range': '0-19' } });
        assertError(res, 400, 'SIZE_INVALID');
        const status = await client.req(location);
        assert.equal(status.header('range'), '0-0');
      });

      it('answers 404 BLOB_UPLOAD_UNKNOWN for unknown sessions, or sessions of another repository', async () => {
        const repo = repoName();
        const id = '7d6a1c2e-0000-4000-8000-000000000000';
        for (const method of ['GET', 'PATCH', 'PUT', 'DELETE']) {
          const path = `/v2/${repo}/blobs/uploads/${id}${method === 'PUT' ? `?digest=${sha256('')}` : ''}`;
          assertError(await client.req(path, { method, body: method === 'PATCH' ? 'x' : undefined }), 404, 'BLOB_UPLOAD_UNKNOWN');
        }
        assertError(await client.req(`/v2/${repo}/blobs/uploads/../../x`), 404);
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const other = start.header('location')!.replace(repo, repoName());
        assertError(await client.req(other), 404, 'BLOB_UPLOAD_UNKNOWN');
      });

      it('cancels a session with DELETE (204), after which it is gone', async () => {
        const repo = repoName();
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const location = start.header('location')!;
        await client.req(location, { method: 'PATCH', body: 'partial', headers: { 'Content-Range': '0-6' } });
        assert.equal((await client.req(location, { method: 'DELETE' })).status, 204);
        assertError(await client.req(location), 404, 'BLOB_UPLOAD_UNKNOWN');
        assertError(await client.req(location, { method: 'PATCH', body: 'more' }), 404, 'BLOB_UPLOAD_UNKNOWN');
      });

      it('lets exactly one of two concurrent PATCHes at the same offset win', async () => {
        const repo = repoName();
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const location = start.header('location')!;
        const a = randomBlob(2_000_000);
        const b = randomBlob(2_000_000);
        const results = await Promise.all([
          client.req(location, { method: 'PATCH', body: [a.subarray(0, 1_000_000), a.subarray(1_000_000)] }),
          client.req(location, { method: 'PATCH', body: [b.subarray(0, 1_000_000), b.subarray(1_000_000)] }),
        ]);
        const statuses = results.map((r) => r.status).sort();
        // Either one wins and the other gets 416, or they ran one after another (both 202 is
        // impossible: the second would then need Content-Range at 2,000,000 — streamed PATCHes
        // append, so both may succeed in sequence). What must never happen is interleaved bytes.
        const status = await client.req(location);
        const size = Number(status.header('range')!.split('-')[1]) + 1;
        if (statuses[0] === 202 && statuses[1] === 202) assert.equal(size, 4_000_000);
        else assert.deepEqual(statuses, [202, 416]);
        const winner = statuses[1] === 416 ? (results[0].status === 202 ? a : b) : undefined;
        if (winner) {
          const put = await client.req(`${location}?digest=${sha256(winner)}`, { method: 'PUT' });
          assert.equal(put.status, 201, put.text);
        }
      });

      it('answers 416 to a ranged PATCH racing another one on the same offset', async () => {
        const repo = repoName();
        const start = await client.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const location = start.header('location')!;
        const data = randomBlob(4_000_000);
        const results = await Promise.all(
          [0, 1].map(() =>
            client.req(location, {
              method: 'PATCH',
              body: [data.subarray(0, 2_000_000), data.subarray(2_000_000)],
              headers: { 'Content-Range': `0-${data.length - 1}` },
            }),
          ),
        );
        assert.deepEqual(results.map((r) => r.status).sort(), [202, 416]);
        const put = await client.req(`${location}?digest=${sha256(data)}`, { method: 'PUT' });
        assert.equal(put.status, 201, put.text);
        assert.ok((await client.req(`/v2/${repo}/blobs/${sha256(data)}`)).body.equals(data));
      });

      it('pushes a chunked sha512 blob', async () => {
        const repo = repoName();
        const data = randomBlob(10_000);
        const start = await client.req(`/v2/${repo}/blobs/uploads/?digest-algorithm=sha512`, { method: 'POST' });
        const location = start.header('location')!;
        await client.req(location, { method: 'PATCH', body: data.subarray(0, 4000), headers: { 'Content-Range': '0-3999' } });
        const put = await client.req(`${location}?digest=${sha512(data)}`, {
          method: 'PUT',
          body: data.subarray(4000),
          headers: { 'Content-Range': `4000-${data.length - 1}` },
        });
        assert.equal(put.status, 201, put.text);
        assert.ok((await client.req(`/v2/${repo}/blobs/${sha512(data)}`)).body.equals(data));
      });
    });

    describe('cross-repository mount', () => {
      it('mounts a blob from another repository with 201', async () => {
        const from = repoName();
        const to = repoName();
        const digest = await client.pushBlob(from, randomBlob(500));
        const res = await client.req(`/v2/${to}/blobs/uploads/?mount=${digest}&from=${from}`, { method: 'POST' });
        assert.equal(res.status, 201);
        assert.equal(res.header('location'), `/v2/${to}/blobs/${digest}`);
        assert.equal(res.header('docker-content-digest'), digest);
        assert.equal((await client.req(`/v2/${to}/blobs/${digest}`, { method: 'HEAD' })).status, 200);
      });

      it('falls back to a new session (202) for unknown digests or sources', async () => {
        const to = repoName();
        const from = repoName();
        const digest = await client.pushBlob(from, randomBlob(50));
        for (const query of [
          `mount=${sha256('unknown')}&from=${from}`,
          `mount=${digest}&from=${repoName()}`,
          `mount=${sha256('unknown')}`,
          `mount=bad&from=${from}`,
          `mount=${digest}&from=NOT..valid`,
        ]) {
          const res = await client.req(`/v2/${to}/blobs/uploads/?${query}`, { method: 'POST' });
          assert.equal(res.status, 202, query);
          assert.match(res.header('location')!, new RegExp(`^/v2/${to}/blobs/uploads/`));
        }
        assert.equal((await client.req(`/v2/${to}/blobs/${digest}`, { method: 'HEAD' })).status, 404);
      });

      it('mounts without from when another repository has the blob', async () => {
        const from = repoName();
        const to = repoName();
        const digest = await client.pushBlob(from, randomBlob(64));
        const res = await client.req(`/v2/${to}/blobs/uploads/?mount=${digest}`, { method: 'POST' });
        assert.equal(res.status, 201);
        assert.equal(res.header('location'), `/v2/${to}/blobs/${digest}`);
      });
    });

    describe('manifests', () => {
      it('pushes by tag and pulls by tag and digest, byte for byte with headers', async () => {
        const repo = repoName();
        const { digest, bytes } = await client.pushImage(repo, 'v1');
        for (const ref of ['v1', digest]) {
          const get = await client.req(`/v2/${repo}/manifests/${ref}`, { headers: { Accept: OCI_MANIFEST } });
          assert.equal(get.status, 200);
          assert.ok(get.body.equals(bytes));
          assert.equal(get.header('content-type'), OCI_MANIFEST);
          assert.equal(get.header('docker-content-digest'), digest);
          assert.equal(get.header('content-length'), String(bytes.length));
          const head = await client.req(`/v2/${repo}/manifests/${ref}`, { method: 'HEAD' });
          assert.equal(head.status, 200);
          assert.equal(head.body.length, 0);
          assert.equal(head.header('docker-content-digest'), digest);
          assert.equal(head.header('content-length'), String(bytes.length));
          assert.equal(head.header('content-type'), OCI_MANIFEST);
        }
      });

      it('returns Location and Docker-Content-Digest on 201, also when re-pushing', async () => {
        const repo = repoName();
        const config = Buffer.from('{}');
        await client.pushBlob(repo, config);
        const manifest = `{\n\t"schemaVersion": 2,\n\t"mediaType": "${OCI_MANIFEST}",\n\t"config": {"mediaType": "${EMPTY_CONFIG}", "digest": "${sha256(config)}", "size": 2},\n\t"layers": []\n}   `;
        for (let i = 0; i < 2; i++) {
          const res = await client.pushManifest(repo, 'tabs', manifest);
          assert.equal(res.status, 201, res.text);
          assert.equal(res.header('location'), `/v2/${repo}/manifests/${sha256(manifest)}`);
          assert.equal(res.header('docker-content-digest'), sha256(manifest));
        }
        assert.equal((await client.req(`/v2/${repo}/manifests/tabs`)).text, manifest);
      });

      it('pushes by digest (sha256 and sha512) and rejects a digest that does not match', async () => {
        const repo = repoName();
        const config = Buffer.from('{}');
        await client.pushBlob(repo, config);
        const manifest = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: EMPTY_CONFIG, digest: sha256(config), size: 2 },
          layers: [],
        });
        for (const digest of [sha256(manifest), sha512(manifest)]) {
          const res = await client.pushManifest(repo, digest, manifest);
          assert.equal(res.status, 201, res.text);
          assert.equal(res.header('docker-content-digest'), digest);
          assert.equal((await client.req(`/v2/${repo}/manifests/${digest}`)).text, manifest);
        }
        const before = await snapshot(repo);
        assertError(await client.pushManifest(repo, sha256('other'), manifest), 400, 'DIGEST_INVALID');
        assertError(await client.pushManifest(repo, 'sha256:totallywrong', manifest), 400, 'DIGEST_INVALID');
        assert.deepEqual(await snapshot(repo), before);
      });

      it('rejects manifests that reference missing blobs with MANIFEST_BLOB_UNKNOWN, storing nothing', async () => {
        const repo = repoName();
        const { digest: existing } = await client.pushImage(repo, 'keep');
        const missing = sha256('missing layer');
        const config = Buffer.from('{"a":1}');
        await client.pushBlob(repo, config);
        const manifest = {
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: missing, size: 5 }],
        };
        const before = await snapshot(repo, [existing]);
        const res = await client.pushManifest(repo, 'keep', manifest);
        assertError(res, 400, 'MANIFEST_BLOB_UNKNOWN');
        assert.equal(res.json().errors[0].detail.digest, missing);
        assert.deepEqual(await snapshot(repo, [existing]), before);
        // A blob pushed to another repository does not count.
        const other = repoName();
        const layer = randomBlob(5);
        await client.pushBlob(other, layer);
        manifest.layers[0].digest = sha256(layer);
        assertError(await client.pushManifest(repo, 'x', manifest), 400, 'MANIFEST_BLOB_UNKNOWN');
      });

      it('exempts non-distributable layers (urls) and subject from the existence check', async () => {
        const repo = repoName();
        const config = Buffer.from('{}');
        await client.pushBlob(repo, config);
        const subject = sha256('never pushed');
        const manifest = {
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: EMPTY_CONFIG, digest: sha256(config), size: 2 },
          layers: [
            {
              mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
              digest: sha256('foreign'),
              size: 7,
              urls: ['https://example.com/layer'],
            },
          ],
          subject: { mediaType: OCI_MANIFEST, digest: subject, size: 100 },
        };
        const res = await client.pushManifest(repo, 'foreign', manifest);
        assert.equal(res.status, 201, res.text);
        assert.equal(res.header('oci-subject'), subject);
      });

      it('rejects invalid manifests with MANIFEST_INVALID and stores nothing', async () => {
        const repo = repoName();
        await client.pushImage(repo, 'base');
        const before = await snapshot(repo);
        const config = Buffer.from('{}');
        await client.pushBlob(repo, config);
        const cfg = { mediaType: EMPTY_CONFIG, digest: sha256(config), size: 2 };
        const bad: [string, string][] = [
          ['not json', OCI_MANIFEST],
          ['[]', OCI_MANIFEST],
          [JSON.stringify({ schemaVersion: 1, config: cfg, layers: [] }), OCI_MANIFEST],
          [JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }), OCI_MANIFEST],
          [JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: cfg }), OCI_MANIFEST],
          [
            JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { ...cfg, digest: 'sha256:zz' }, layers: [] }),
            OCI_MANIFEST,
          ],
          [JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { ...cfg, size: -1 }, layers: [] }), OCI_MANIFEST],
          [JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }), OCI_MANIFEST],
          [JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: {} }), OCI_INDEX],
          [JSON.stringify({ schemaVersion: 2, mediaType: 'application/x-unknown', config: cfg, layers: [] }), 'application/x-unknown'],
          [JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: cfg, layers: [], annotations: { a: 1 } }), OCI_MANIFEST],
        ];
        for (const [body, type] of bad) {
          assertError(await client.pushManifest(repo, 'base', body, type), 400, 'MANIFEST_INVALID');
        }
        assert.deepEqual(await snapshot(repo), before);
      });

      it('accepts manifests without mediaType, unknown fields, data and artifacts', async () => {
        const repo = repoName();
        const config = Buffer.from('{}');
        await client.pushBlob(repo, config);
        const cfg = { mediaType: EMPTY_CONFIG, digest: sha256(config), size: 2, data: 'e30=' };
        const noType = JSON.stringify({ schemaVersion: 2, config: cfg, layers: [], newUnspecifiedField: { x: [1] } });
        const res = await client.pushManifest(repo, 'notype', noType, OCI_MANIFEST);
        assert.equal(res.status, 201, res.text);
        assert.equal((await client.req(`/v2/${repo}/manifests/notype`)).header('content-type'), OCI_MANIFEST);
        const artifact = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'application/vnd.example.sbom',
          config: cfg,
          layers: [],
        });
        assert.equal((await client.pushManifest(repo, 'artifact', artifact)).status, 201);
        const generic = await client.pushManifest(repo, 'generic', artifact, 'application/json');
        assert.equal(generic.status, 201, generic.text);
        assert.equal((await client.req(`/v2/${repo}/manifests/generic`)).header('content-type'), OCI_MANIFEST);
      });

      it('enforces the manifest size limit with 413 and accepts ~3.9 MB', async () => {
        const repo = repoName();
        const config = Buffer.from('{}');
        await client.pushBlob(repo, config);
        const annotations: Record<string, string> = {};
        for (let i = 0; i < 390; i++) annotations[`key${i}`] = 'v'.repeat(10_000);
        const big = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: EMPTY_CONFIG, digest: sha256(config), size: 2 },
          layers: [],
          annotations,
        });
        const ok = await client.pushManifest(repo, 'big', big);
        assert.equal(ok.status, 201, ok.text.slice(0, 200));
        assert.ok((await client.req(`/v2/${repo}/manifests/big`)).body.equals(Buffer.from(big)));
        for (let i = 390; i < 440; i++) annotations[`key${i}`] = 'v'.repeat(10_000);
        const tooBig = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: EMPTY_CONFIG, digest: sha256(config), size: 2 },
          layers: [],
          annotations,
        });
        const res = await client.pushManifest(repo, 'toobig', tooBig);
        assert.equal(res.status, 413);
        assertError(await client.req(`/v2/${repo}/manifests/toobig`), 404, 'MANIFEST_UNKNOWN');
        // Without Content-Length (chunked), the limit still holds.
        const chunked = await client.req(`/v2/${repo}/manifests/toobig`, {
          method: 'PUT',
          body: [Buffer.from(tooBig)],
          headers: { 'Content-Type': OCI_MANIFEST },
        });
        assert.equal(chunked.status, 413);
      });

      it('answers 400 to invalid tags on PUT and 404 on GET', async () => {
        const repo = repoName();
        const { bytes } = await client.pushImage(repo, 'ok');
        for (const tag of ['.INVALID_MANIFEST_NAME', '-lead', 'a'.repeat(129), 'has%20space']) {
          assertError(await client.pushManifest(repo, tag, bytes.toString()), 400);
          assertError(await client.req(`/v2/${repo}/manifests/${tag}`), 404, 'MANIFEST_UNKNOWN');
        }
        assertError(await client.req(`/v2/${repo}/manifests/sha256:totallywrong`), 404, 'MANIFEST_UNKNOWN');
        assertError(await client.req(`/v2/${repo}/manifests/missing`), 404, 'MANIFEST_UNKNOWN');
        assertError(await client.req(`/v2/${repoName()}/manifests/latest`), 404, 'MANIFEST_UNKNOWN');
      });

      it('pushes image indexes only when their children are in the repository', async () => {
        const repo = repoName();
        const child = await client.pushImage(repo, 'amd64');
        const index = {
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [
            { mediaType: OCI_MANIFEST, digest: child.digest, size: child.size, platform: { os: 'linux', architecture: 'amd64' } },
          ],
        };
        const ok = await client.pushManifest(repo, 'multi', index, OCI_INDEX);
        assert.equal(ok.status, 201, ok.text);
        assert.equal((await client.req(`/v2/${repo}/manifests/multi`)).header('content-type'), OCI_INDEX);
        const missing = { ...index, manifests: [{ mediaType: OCI_MANIFEST, digest: sha256('nope'), size: 1 }] };
        assertError(await client.pushManifest(repo, 'broken', missing, OCI_INDEX), 400, 'MANIFEST_BLOB_UNKNOWN');
        const empty = await client.pushManifest(repo, 'empty-index', { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }, OCI_INDEX);
        assert.equal(empty.status, 201);
      });

      it('handles Docker schema2 manifests and manifest lists', async () => {
        const repo = repoName();
        const config = Buffer.from('{"architecture":"amd64"}');
        const layer = randomBlob(200);
        await client.pushBlob(repo, config);
        await client.pushBlob(repo, layer);
        const manifest = JSON.stringify({
          schemaVersion: 2,
          mediaType: DOCKER_MANIFEST,
          config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: sha256(config), size: config.length },
          layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: sha256(layer), size: layer.length }],
        });
        assert.equal((await client.pushManifest(repo, 'docker', manifest, DOCKER_MANIFEST)).status, 201);
        const list = JSON.stringify({
          schemaVersion: 2,
          mediaType: DOCKER_LIST,
          manifests: [
            {
              mediaType: DOCKER_MANIFEST,
              digest: sha256(manifest),
              size: manifest.length,
              platform: { architecture: 'amd64', os: 'linux' },
            },
          ],
        });
        assert.equal((await client.pushManifest(repo, 'list', list, DOCKER_LIST)).status, 201);
        const get = await client.req(`/v2/${repo}/manifests/list`);
        assert.equal(get.header('content-type'), DOCKER_LIST);
        assert.equal(get.text, list);
        assertError(await client.pushManifest(repo, 'mismatch', manifest, OCI_MANIFEST), 400, 'MANIFEST_INVALID');
      });

      it('moves tags, multi-tags with ?tag= and answers OCI-Tag', async () => {
        const repo = repoName();
        const one = await client.pushImage(repo, 'latest');
        const two = await client.pushImage(repo, 'latest');
        assert.equal((await client.req(`/v2/${repo}/manifests/latest`)).header('docker-content-digest'), two.digest);
        assert.equal((await client.req(`/v2/${repo}/manifests/${one.digest}`)).status, 200);
        const res = await client.req(`/v2/${repo}/manifests/${one.digest}?tag=a&tag=b&tag=c`, {
          method: 'PUT',
          body: one.bytes,
          headers: { 'Content-Type': OCI_MANIFEST },
        });
        assert.equal(res.status, 201, res.text);
        assert.deepEqual(
          res
            .header('oci-tag')!
            .split(',')
            .map((t) => t.trim())
            .sort(),
          ['a', 'b', 'c'],
        );
        for (const tag of ['a', 'b', 'c']) {
          assert.equal((await client.req(`/v2/${repo}/manifests/${tag}`, { method: 'HEAD' })).header('docker-content-digest'), one.digest);
        }
        assertError(
          await client.req(`/v2/${repo}/manifests/${one.digest}?tag=ok&tag=-bad`, {
            method: 'PUT',
            body: one.bytes,
            headers: { 'Content-Type': OCI_MANIFEST },
          }),
          400,
        );
        assertError(await client.req(`/v2/${repo}/manifests/ok`), 404);
      });

      it('deletes tags (pointer only) and manifests (with the tags still on them)', async () => {
        const repo = repoName();
        const one = await client.pushImage(repo, 'one');
        await client.req(`/v2/${repo}/manifests/${one.digest}?tag=also&tag=moved`, {
          method: 'PUT',
          body: one.bytes,
          headers: { 'Content-Type': OCI_MANIFEST },
        });
        const two = await client.pushImage(repo, 'moved');
        assert.equal((await client.req(`/v2/${repo}/manifests/also`, { method: 'DELETE' })).status, 202);
        assertError(await client.req(`/v2/${repo}/manifests/also`), 404, 'MANIFEST_UNKNOWN');
        assert.equal((await client.req(`/v2/${repo}/manifests/${one.digest}`)).status, 200);
        assert.equal((await client.req(`/v2/${repo}/manifests/${one.digest}`, { method: 'DELETE' })).status, 202);
        assertError(await client.req(`/v2/${repo}/manifests/${one.digest}`), 404, 'MANIFEST_UNKNOWN');
        assertError(await client.req(`/v2/${repo}/manifests/one`, { method: 'HEAD' }), 404);
        assert.equal((await client.req(`/v2/${repo}/manifests/moved`)).header('docker-content-digest'), two.digest);
        assert.deepEqual((await client.req(`/v2/${repo}/tags/list`)).json().tags, ['moved']);
        assertError(await client.req(`/v2/${repo}/manifests/${one.digest}`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
        assertError(await client.req(`/v2/${repo}/manifests/nope`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
        assertError(await client.req(`/v2/${repoName()}/manifests/${one.digest}`, { method: 'DELETE' }), 404, 'NAME_UNKNOWN');
      });
    });

    describe('tags list', () => {
      it('lists tags in byte order and paginates with n, last and Link', async () => {
        const repo = repoName();
        const { bytes } = await client.pushImage(repo, 'b');
        for (const tag of ['a', 'C', 'c', 'd', 'e1', 'e10', 'e2']) {
          assert.equal((await client.pushManifest(repo, tag, bytes.toString())).status, 201);
        }
        const all = await client.req(`/v2/${repo}/tags/list`);
        assert.equal(all.status, 200);
        assert.deepEqual(all.json(), { name: repo, tags: ['C', 'a', 'b', 'c', 'd', 'e1', 'e10', 'e2'] });
        assert.equal(all.header('link'), undefined);
        const page = await client.req(`/v2/${repo}/tags/list?n=3`);
        assert.deepEqual(page.json().tags, ['C', 'a', 'b']);
        assert.equal(page.header('link'), `</v2/${repo}/tags/list?n=3&last=b>; rel="next"`);
        const next = await client.req(`/v2/${repo}/tags/list?n=3&last=b`);
        assert.deepEqual(next.json().tags, ['c', 'd', 'e1']);
        const lastPage = await client.req(`/v2/${repo}/tags/list?n=3&last=e1`);
        assert.deepEqual(lastPage.json().tags, ['e10', 'e2']);
        assert.equal(lastPage.header('link'), undefined);
        const exact = await client.req(`/v2/${repo}/tags/list?n=8`);
        assert.equal(exact.json().tags.length, 8);
        assert.equal(exact.header('link'), undefined);
        const zero = await client.req(`/v2/${repo}/tags/list?n=0`);
        assert.deepEqual(zero.json().tags, []);
        assert.equal(zero.header('link'), undefined);
        assert.deepEqual((await client.req(`/v2/${repo}/tags/list?last=d`)).json().tags, ['e1', 'e10', 'e2']);
        assert.deepEqual((await client.req(`/v2/${repo}/tags/list?last=bb`)).json().tags, ['c', 'd', 'e1', 'e10', 'e2']);
        assertError(await client.req(`/v2/${repo}/tags/list?n=-1`), 400);
        assertError(await client.req(`/v2/${repo}/tags/list?n=abc`), 400);
      });

      it('answers 404 NAME_UNKNOWN for unknown repositories', async () => {
        assertError(await client.req(`/v2/${repoName()}/tags/list`), 404, 'NAME_UNKNOWN');
      });
    });

    describe('referrers', () => {
      it('lists referrers with artifactType, annotations, filter and pagination', async () => {
        const repo = repoName();
        const subject = await client.pushImage(repo, 'subject');
        const config = Buffer.from('{}');
        await client.pushBlob(repo, config);
        const subjectDesc = { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size };
        const sbom = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'application/vnd.example.sbom+json',
          config: { mediaType: EMPTY_CONFIG, digest: sha256(config), size: 2 },
          layers: [],
          subject: subjectDesc,
          annotations: { 'org.example.kind': 'sbom' },
        });
        const sig = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.example.signature.config', digest: sha256(config), size: 2 },
          layers: [],
          subject: subjectDesc,
        });
        const idx = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [],
          subject: subjectDesc,
          annotations: { kind: 'index' },
        });
        for (const [body, type] of [
          [sbom, OCI_MANIFEST],
          [sig, OCI_MANIFEST],
          [idx, OCI_INDEX],
        ]) {
          const res = await client.pushManifest(repo, sha256(body), body, type);
          assert.equal(res.status, 201, res.text);
          assert.equal(res.header('oci-subject'), subject.digest);
        }
        const res = await client.req(`/v2/${repo}/referrers/${subject.digest}`);
        assert.equal(res.status, 200);
        assert.equal(res.header('content-type'), OCI_INDEX);
        const index = res.json();
        assert.equal(index.schemaVersion, 2);
        assert.equal(index.mediaType, OCI_INDEX);
        const byDigest = Object.fromEntries(index.manifests.map((m: any) => [m.digest, m]));
        assert.deepEqual(byDigest[sha256(sbom)], {
          mediaType: OCI_MANIFEST,
          digest: sha256(sbom),
          size: sbom.length,
          artifactType: 'application/vnd.example.sbom+json',
          annotations: { 'org.example.kind': 'sbom' },
        });
        assert.deepEqual(byDigest[sha256(sig)], {
          mediaType: OCI_MANIFEST,
          digest: sha256(sig),
          size: sig.length,
          artifactType: 'application/vnd.example.signature.config',
        });
        assert.deepEqual(byDigest[sha256(idx)], {
          mediaType: OCI_INDEX,
          digest: sha256(idx),
          size: idx.length,
          annotations: { kind: 'index' },
        });
        assert.equal(index.manifests.length, 3);

        for (const encoded of ['application/vnd.example.sbom%2Bjson', 'application/vnd.example.sbom+json']) {
          const filtered = await client.req(`/v2/${repo}/referrers/${subject.digest}?artifactType=${encoded}`);
          assert.equal(filtered.header('oci-filters-applied'), 'artifactType');
          assert.deepEqual(
            filtered.json().manifests.map((m: any) => m.digest),
            [sha256(sbom)],
          );
        }
        const page1 = await client.req(`/v2/${repo}/referrers/${subject.digest}?n=2`);
        assert.equal(page1.json().manifests.length, 2);
        const link = page1.header('link')!;
        assert.match(link, /rel="next"/);
        const page2 = await client.req(link.slice(1, link.indexOf('>')));
        assert.equal(page2.json().manifests.length, 1);
        assert.equal(new Set([...page1.json().manifests, ...page2.json().manifests].map((m: any) => m.digest)).size, 3);

        assert.equal((await client.req(`/v2/${repo}/manifests/${sha256(sig)}`, { method: 'DELETE' })).status, 202);
        const after = await client.req(`/v2/${repo}/referrers/${subject.digest}`);
        assert.equal(after.json().manifests.length, 2);
      });

      it('answers an empty index for unknown digests and repositories, 400 for malformed digests', async () => {
        const repo = repoName();
        await client.pushImage(repo, 'x');
        for (const path of [`/v2/${repo}/referrers/${sha256('none')}`, `/v2/${repoName()}/referrers/${sha256('none')}`]) {
          const res = await client.req(path);
          assert.equal(res.status, 200);
          assert.equal(res.header('content-type'), OCI_INDEX);
          assert.deepEqual(res.json(), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] });
        }
        assertError(await client.req(`/v2/${repo}/referrers/sha256:bad`), 400, 'DIGEST_INVALID');
      });

      it('never lists referrers from another repository', async () => {
        const a = repoName();
        const b = repoName();
        const subject = await client.pushImage(a, 's');
        const config = Buffer.from('{}');
        await client.pushBlob(b, config);
        const ref = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          artifactType: 'x/y',
          config: { mediaType: EMPTY_CONFIG, digest: sha256(config), size: 2 },
          layers: [],
          subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size },
        });
        assert.equal((await client.pushManifest(b, 'ref', ref)).status, 201);
        assert.deepEqual((await client.req(`/v2/${a}/referrers/${subject.digest}`)).json().manifests, []);
        assert.equal((await client.req(`/v2/${b}/referrers/${subject.digest}`)).json().manifests.length, 1);
      });
    });

    describe('catalog', () => {
      it('lists repositories with n, last and Link', async () => {
        const prefix = `cat${randomBytes(3).toString('hex')}`;
        const names = [`${prefix}/a`, `${prefix}/b`, `${prefix}/c`];
        for (const name of names) await client.pushBlob(name, Buffer.from(name));
        const all = await client.req('/v2/_catalog?n=1000');
        assert.equal(all.status, 200);
        const repos: string[] = all.json().repositories;
        assert.deepEqual(
          repos.filter((r) => r.startsWith(prefix)),
          names,
        );
        assert.deepEqual(
          [...repos].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)),
          repos,
        );
        const page = await client.req(`/v2/_catalog?n=2&last=${prefix}/a`);
        assert.deepEqual(page.json().repositories, [`${prefix}/b`, `${prefix}/c`]);
        assert.match(page.header('link') ?? '', new RegExp(`last=${encodeURIComponent(`${prefix}/c`)}>; rel="next"`));
      });
    });

    describe('error bodies', () => {
      it('uses the spec JSON shape with a known code and message', async () => {
        const res = await client.req(`/v2/${repoName()}/manifests/nope`);
        assert.equal(res.status, 404);
        assert.equal(res.header('content-type'), 'application/json');
        const body = res.json();
        assert.deepEqual(Object.keys(body), ['errors']);
        assert.equal(body.errors[0].code, 'MANIFEST_UNKNOWN');
        assert.match(body.errors[0].code, /^[A-Z_]+$/);
      });
    });
  });
}

/** The restart test: a chunked upload begun before a restart completes, verified, after it. */
export function describeRestart(name: string, adapter: AdapterName, makeStores: () => Promise<StoreSet>) {
  describe(`upload survives a restart: ${name}`, () => {
    it('continues a chunked upload after the server restarts and verifies the digest', async () => {
      const stores = await makeStores();
      try {
        let server = await startRegistry(adapter, stores);
        const repo = repoName('restart');
        const data = randomBlob(300_000);
        const start = await rawRequest(server.url, `/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const location = start.header('location')!;
        const first = await rawRequest(server.url, location, {
          method: 'PATCH',
          body: data.subarray(0, 100_000),
          headers: { 'Content-Range': '0-99999' },
        });
        assert.equal(first.status, 202);
        await server.stop();

        server = await startRegistry(adapter, stores);
        const status = await rawRequest(server.url, location);
        assert.equal(status.status, 204);
        assert.equal(status.header('range'), '0-99999');
        const second = await rawRequest(server.url, location, {
          method: 'PATCH',
          body: data.subarray(100_000, 200_000),
          headers: { 'Content-Range': '100000-199999' },
        });
        assert.equal(second.status, 202);
        // A wrong digest is still caught on the fallback (re-read) path, and stores nothing.
        const wrong = await rawRequest(server.url, `${location}?digest=${sha256('wrong')}`, {
          method: 'PUT',
          body: data.subarray(200_000),
          headers: { 'Content-Range': `200000-${data.length - 1}` },
        });
        assertError(wrong, 400, 'DIGEST_INVALID');
        assertError(await rawRequest(server.url, `/v2/${repo}/blobs/${sha256(data)}`), 404, 'BLOB_UNKNOWN');
        await server.stop();

        // Again, this time completing with the right digest.
        server = await startRegistry(adapter, stores);
        const again = await rawRequest(server.url, `/v2/${repo}/blobs/uploads/`, { method: 'POST' });
        const loc2 = again.header('location')!;
        await rawRequest(server.url, loc2, { method: 'PATCH', body: data.subarray(0, 150_000), headers: { 'Content-Range': '0-149999' } });
        await server.stop();
        server = await startRegistry(adapter, stores);
        const put = await rawRequest(server.url, `${loc2}?digest=${sha256(data)}`, {
          method: 'PUT',
          body: data.subarray(150_000),
          headers: { 'Content-Range': `150000-${data.length - 1}` },
        });
        assert.equal(put.status, 201, put.text);
        const get = await rawRequest(server.url, `/v2/${repo}/blobs/${sha256(data)}`);
        assert.ok(get.body.equals(data));
        await server.stop();
      } finally {
        await stores.destroy();
      }
    });
  });
}
