// S3BlobStore against a real S3 (the local Ceph RGW in CI): see README "Tests".
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ListPartsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { ConflictError, IntegrityError, NotFoundError, TooLargeError, UnavailableError, type UploadState } from '@berthjs/core';
import { MAX_PARTS, partSizeFor, type S3BlobStore, type S3UploadState } from '../src/index.js';
import {
  MiB,
  createBucket,
  deleteBucket,
  generated,
  hashStream,
  interceptPointerWrites,
  listKeys,
  listPartSizes,
  listUploads,
  newId,
  s3Client,
  requireS3,
  sha256,
  storeFor,
} from './s3-env.js';

const env = requireS3();

if (env) {
  describe('S3BlobStore on a real S3', () => {
    let client: S3Client;
    let bucket: string;
    let store: S3BlobStore;
    /** A second instance sharing nothing but the bucket: another process or replica. */
    let other: S3BlobStore;

    before(async () => {
      client = s3Client(env);
      bucket = await createBucket(client, 'store');
      store = storeFor(env, bucket, { redirect: true });
      other = storeFor(env, bucket, { redirect: true });
    });

    after(async () => {
      await store?.close();
      await other?.close();
      if (bucket) await deleteBucket(client, bucket);
      client?.destroy();
    });

    /** Push `data` in chunks of the given sizes (cycled), alternating store instances; returns the digest. */
    async function pushChunked(data: Buffer, sizes: number[], stores = [store, other]) {
      const id = newId();
      let state = await stores[0].createUpload(id);
      let offset = 0;
      for (let i = 0; offset < data.length; i++) {
        const piece = data.subarray(offset, offset + sizes[i % sizes.length]);
        const s = stores[i % stores.length];
        const result = await s.appendUpload(id, state, offset, Readable.from([piece]), piece.length);
        assert.equal(result.written, piece.length);
        // What the core does: persist through JSON, hand it back later.
        state = JSON.parse(JSON.stringify(result.state)) as UploadState;
        offset += result.written;
      }
      const digest = sha256(data);
      await stores[stores.length - 1].commitUpload(id, state, data.length, digest);
      return { id, digest, state: state as S3UploadState };
    }

    async function assertReadable(digest: string, size: number, via = store) {
      assert.deepEqual(await via.stat(digest), { size });
      assert.deepEqual(await hashStream(await via.read(digest)), { digest, size });
    }

    async function assertGone(id: string, digest: string) {
      assert.equal(await store.stat(digest), undefined);
      await assert.rejects(store.read(digest), NotFoundError);
      const leftovers = (await listKeys(client, bucket)).filter((k) => k.includes(id) || k.endsWith(digest.slice(7)));
      assert.deepEqual(leftovers, []);
      assert.deepEqual(
        (await listUploads(client, bucket)).filter((u) => u.key.includes(id)),
        [],
      );
    }

    const cases: [string, number[], number][] = [
      ['1 KiB chunks', [1024], 16 * 1024],
      ['1 MiB chunks', [MiB], 12 * MiB],
      ['5 MiB-1 chunks', [5 * MiB - 1], 3 * (5 * MiB - 1)],
      ['5 MiB chunks', [5 * MiB], 15 * MiB],
      ['7 MiB chunks', [7 * MiB], 14 * MiB],
      ['mixed chunks', [1024, 5 * MiB - 1, 1, 7 * MiB, MiB, 3 * MiB + 5, 2 * MiB], 20 * MiB + 12345],
    ];
    for (const [label, sizes, total] of cases) {
      it(`commits ${label} (${total} bytes) and reads them back`, async () => {
        const data = randomBytes(total);
        const { id, digest, state } = await pushChunked(data, sizes);
        await assertReadable(digest, total);
        await assertReadable(digest, total, other);
        // Every part but the last has exactly the part size; what is left was the tail.
        assert.ok(state.parts.every((p) => p.size === 5 * MiB));
        assert.deepEqual(await listKeys(client, bucket, `uploads/${id}/`), []);
        assert.deepEqual(
          (await listUploads(client, bucket)).filter((u) => u.key.includes(id)),
          [],
        );
      });
    }

    it('streams a 100 MiB one-shot upload of unknown length into parts', async () => {
      const id = newId();
      const source = generated(100 * MiB);
      const state = await store.createUpload(id);
      const before = process.memoryUsage().rss;
      const { state: done, written } = await store.appendUpload(id, state, 0, source.stream);
      const grown = process.memoryUsage().rss - before;
      assert.equal(written, 100 * MiB);
      assert.equal((done as S3UploadState).parts.length, 20);
      assert.equal((done as S3UploadState).tail, undefined);
      // Two 5 MiB parts in memory at a time, plus slack for the SDK and GC timing.
      assert.ok(grown < 80 * MiB, `rss grew by ${(grown / MiB).toFixed(1)} MiB`);
      const digest = source.digest();
      await store.commitUpload(id, done, written, digest);
      assert.deepEqual(await hashStream(await other.read(digest)), { digest, size: 100 * MiB });
    });

    it('pushes with signed payloads when asked to', async () => {
      const signed = storeFor(env, bucket, { signPayload: true });
      const data = randomBytes(11 * MiB + 5);
      const { digest } = await pushChunked(data, [6 * MiB], [signed]);
      await assertReadable(digest, data.length, signed);
      await signed.close();
    });

    it('stores the empty blob', async () => {
      const id = newId();
      const empty = sha256(Buffer.alloc(0));
      let state = await store.createUpload(id);
      const result = await store.appendUpload(id, state, 0, Readable.from([]));
      assert.equal(result.written, 0);
      state = result.state;
      await store.commitUpload(id, state, 0, empty);
      await assertReadable(empty, 0);
      assert.deepEqual(
        (await listUploads(client, bucket)).filter((u) => u.key.includes(id)),
        [],
      );
    });

    for (const [label, size] of [
      ['multipart', 7 * MiB],
      ['inline', 1024],
    ] as const) {
      it(`leaves nothing readable when verify rejects (${label})`, async () => {
        const data = randomBytes(size);
        const digest = sha256(data);
        const id = newId();
        const { state } = await store.appendUpload(id, await store.createUpload(id), 0, Readable.from([data]));
        let seen = 0;
        const verify = async (content: Readable) => {
          seen = (await hashStream(content)).size;
          throw new IntegrityError('digest mismatch', 'test');
        };
        await assert.rejects(store.commitUpload(id, state, size, digest, verify), IntegrityError);
        assert.equal(seen, size, 'verify saw the whole content');
        await assertGone(id, digest);
      });
    }

    it('makes the blob readable only after verify accepts it', async () => {
      const data = randomBytes(6 * MiB + 7);
      const digest = sha256(data);
      const id = newId();
      const { state } = await store.appendUpload(id, await store.createUpload(id), 0, Readable.from([data]));
      await other.commitUpload(id, state, data.length, digest, async (content) => {
        assert.equal(await store.stat(digest), undefined, 'not visible during verify');
        assert.equal((await hashStream(content)).digest, digest);
      });
      await assertReadable(digest, data.length);
    });

    it('shows the open multipart upload and its growing parts, and no staging after commit', async () => {
      const id = newId();
      let state = (await store.createUpload(id)) as S3UploadState;
      const mine = async () => (await listUploads(client, bucket)).filter((u) => u.key === state.key);
      const parts = async () =>
        (await client.send(new ListPartsCommand({ Bucket: bucket, Key: state.key, UploadId: state.uploadId }))).Parts ?? [];
      assert.equal((await mine()).length, 1);
      assert.equal((await parts()).length, 0);

      const data = randomBytes(13 * MiB);
      const counts: number[] = [];
      let offset = 0;
      for (const size of [3 * MiB, 4 * MiB, 6 * MiB]) {
        const r = await store.appendUpload(id, state, offset, Readable.from([data.subarray(offset, offset + size)]));
        state = r.state as S3UploadState;
        offset += r.written;
        counts.push((await parts()).length);
        assert.ok((await listKeys(client, bucket, `uploads/${id}/`)).length <= 2, 'at most the current and the previous tail');
      }
      assert.deepEqual(counts, [0, 1, 2]);
      await store.commitUpload(id, state, offset, sha256(data));
      assert.equal((await mine()).length, 0);
      assert.deepEqual(await listKeys(client, bucket, `uploads/${id}/`), []);
      await assertReadable(sha256(data), data.length);
    });

    it('resumes from the old state after an append that failed midway', async () => {
      const data = randomBytes(16 * MiB);
      const id = newId();
      // 3 MiB staged as a tail first, so the failed append has a tail to (not) clobber.
      const first = await store.appendUpload(id, await store.createUpload(id), 0, Readable.from([data.subarray(0, 3 * MiB)]));
      const good = first.state as S3UploadState;
      assert.equal(good.tail?.size, 3 * MiB);

      // The body errors after 9 MiB: part 1 (and maybe more) reached S3 beyond the persisted state.
      const broken = generated(13 * MiB, { failAfter: 9 * MiB, chunk: MiB });
      await assert.rejects(store.appendUpload(id, good, 3 * MiB, broken.stream), /client went away/);
      assert.ok((await listKeys(client, bucket, good.tail!.key)).length === 1, 'the persisted tail survives');

      // The retry (on another replica) at the old offset with the old state overwrites those parts.
      const retry = await other.appendUpload(id, good, 3 * MiB, Readable.from([data.subarray(3 * MiB)]));
      assert.equal(retry.written, 13 * MiB);
      await store.commitUpload(id, retry.state, data.length, sha256(data));
      await assertReadable(sha256(data), data.length);
      assert.deepEqual(await listKeys(client, bucket, `uploads/${id}/`), []);
    });

    it('rejects an append at the wrong offset and a commit of the wrong size', async () => {
      const id = newId();
      const { state } = await store.appendUpload(id, await store.createUpload(id), 0, Readable.from([Buffer.from('abc')]));
      await assert.rejects(store.appendUpload(id, state, 2, Readable.from([Buffer.from('x')])), ConflictError);
      await assert.rejects(store.commitUpload(id, state, 4, sha256(Buffer.from('abcd'))), IntegrityError);
      await store.abortUpload(id, state);
    });

    it('refuses bytes past part 10,000 as too large (413), leaving the session as it was', async () => {
      const id = newId();
      const created = (await store.createUpload(id)) as S3UploadState;
      // A session that already holds 10,000 full parts (their ETags are never sent: nothing is
      // completed), as a stream of unknown length past 10,000 × partSize would reach.
      const parts = Array.from({ length: MAX_PARTS }, (_, i) => ({
        PartNumber: i + 1,
        ETag: `"fake-${i + 1}"`,
        size: partSizeFor(i + 1, created.partSize, created.grow),
      }));
      const full: S3UploadState = { ...created, parts };
      const held = parts.reduce((sum, p) => sum + p.size, 0);
      await assert.rejects(store.appendUpload(id, full, held, Readable.from([Buffer.from('x')]), 1), TooLargeError);
      assert.deepEqual(await listKeys(client, bucket, `uploads/${id}/`), [], 'nothing staged');
      await store.abortUpload(id, created);
    });

    it('deduplicates: a second upload of the same bytes is discarded', async () => {
      const data = randomBytes(11 * MiB);
      const a = await pushChunked(data, [6 * MiB]);
      const b = await pushChunked(data, [6 * MiB]);
      assert.equal(a.digest, b.digest);
      await assertReadable(a.digest, data.length);
      const dataObjects = (await listKeys(client, bucket, 'data/')).filter((k) => k.includes(a.id) || k.includes(b.id));
      assert.equal(dataObjects.length, 1);
      // With verify, the duplicate is completed, verified, then dropped.
      const c = newId();
      const { state } = await store.appendUpload(c, await store.createUpload(c), 0, Readable.from([data]));
      await store.commitUpload(c, state, data.length, a.digest, async (content) => void (await hashStream(content)));
      assert.deepEqual(
        (await listKeys(client, bucket, 'data/')).filter((k) => k.includes(c)),
        [],
      );
      await assertReadable(a.digest, data.length);
    });

    it('keeps a multipart blob that a store with bigger parts commits again inline, and reads it whole', async () => {
      const data = randomBytes(6 * MiB);
      const { digest } = await pushChunked(data, [data.length]); // 5 MiB parts: multipart
      const bigParts = storeFor(env, bucket, { partSize: 8 * MiB });
      const id = newId();
      const { state } = await bigParts.appendUpload(id, await bigParts.createUpload(id), 0, Readable.from([data]), data.length);
      assert.equal((state as S3UploadState).parts.length, 0, 'no full part: an inline commit');
      await bigParts.commitUpload(id, state, data.length, digest);
      assert.deepEqual(await hashStream(await bigParts.read(digest)), { digest, size: data.length });
      await assertReadable(digest, data.length);
      await bigParts.close();
    });

    it('serves ranges of multipart and inline blobs', async () => {
      for (const data of [randomBytes(12 * MiB + 3), randomBytes(3000)]) {
        const { digest } = await pushChunked(data, [data.length]);
        for (const [start, end] of [
          [0, 0],
          [5, 1004],
          [data.length - 10, data.length - 1],
          [0, data.length - 1],
        ]) {
          const got = await hashStream(await store.read(digest, { start, end }));
          assert.deepEqual(got, { digest: sha256(data.subarray(start, end + 1)), size: end - start + 1 });
        }
        await assert.rejects(store.read(digest, { start: 0, end: data.length }), RangeError);
      }
    });

    it('hands out presigned URLs that download the blob and its ranges', async () => {
      assert.equal(store.capabilities.redirect, true);
      assert.equal(store.capabilities.minChunkLength, 5 * MiB);
      const data = randomBytes(6 * MiB);
      const { digest } = await pushChunked(data, [data.length]);
      const url = await store.redirectUrl(digest, { expiresInSeconds: 60 });
      assert.ok(url);
      const full = await fetch(url);
      assert.equal(full.status, 200);
      assert.equal(sha256(Buffer.from(await full.arrayBuffer())), digest);
      const ranged = await store.redirectUrl(digest, { expiresInSeconds: 60, range: { start: 100, end: 199 } });
      const part = await fetch(ranged!, { headers: { range: 'bytes=100-199' } });
      assert.equal(part.status, 206);
      assert.deepEqual(Buffer.from(await part.arrayBuffer()), data.subarray(100, 200));
      const plain = storeFor(env, bucket);
      assert.equal(plain.capabilities.redirect, false);
      assert.equal(await plain.redirectUrl(digest, { expiresInSeconds: 60 }), undefined);
      await plain.close();
    });

    it('deletes blobs, and a process with a cached location notices', async () => {
      const big = randomBytes(6 * MiB);
      const small = randomBytes(10);
      for (const data of [big, small]) {
        const { id, digest } = await pushChunked(data, [data.length]);
        await assertReadable(digest, data.length, other); // caches the location in `other`
        await store.delete([{ digest }]);
        await assertGone(id, digest);
        await assert.rejects(other.read(digest), NotFoundError);
        await store.delete([{ digest }]); // absent: not an error
        await store.delete([{ digest, size: data.length }]);
      }
    });

    it('aborts uploads: multipart and staging both go', async () => {
      const id = newId();
      const { state } = await store.appendUpload(id, await store.createUpload(id), 0, Readable.from([randomBytes(6 * MiB)]));
      assert.equal((await listKeys(client, bucket, `uploads/${id}/`)).length, 1);
      await store.abortUpload(id, state);
      assert.deepEqual(await listKeys(client, bucket, `uploads/${id}/`), []);
      assert.deepEqual(
        (await listUploads(client, bucket)).filter((u) => u.key.includes(id)),
        [],
      );
      await store.abortUpload(id, state); // unknown now: not an error
      await assert.rejects(store.appendUpload(id, state, 6 * MiB, Readable.from([Buffer.from('late')])), (e) => e instanceof NotFoundError);
    });

    it('deletes many blobs in batches, pointers with their data, inline ones without a lookup', async () => {
      const batched = storeFor(env, bucket, { prefix: 'batch-test' });
      const blobs: Array<{ digest: string; size: number }> = [];
      for (let i = 0; i < 1100; i++) {
        const data = Buffer.from(`small blob ${i}`);
        const digest = sha256(data);
        // Straight to its address, as an inline blob is stored (the layout is the README's).
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: `batch-test/blobs/sha256/${digest.slice(7)}`, Body: data }));
        blobs.push({ digest, size: data.length });
      }
      const big = randomBytes(6 * MiB);
      const id = newId();
      let state = await batched.createUpload(id);
      ({ state } = await batched.appendUpload(id, state, 0, Readable.from([big])));
      await batched.commitUpload(id, state, big.length, sha256(big));
      const listed = new Set<string>();
      for await (const stored of batched.listBlobs()) listed.add(stored.digest);
      assert.equal(listed.size, 1101);
      // The big one without its size: the store must look its pointer up.
      await batched.delete([...blobs, { digest: sha256(big) }]);
      assert.deepEqual(await listKeys(client, bucket, 'batch-test/'), [], 'pointer, data object and every inline blob are gone');
      await batched.close();
    });

    it('sweeps abandoned uploads and orphan staging, and keeps fresh ones', async () => {
      const swept = storeFor(env, bucket, { prefix: 'sweep-test' });
      const old = newId();
      const oldState = await swept.createUpload(old);
      await swept.appendUpload(old, oldState, 0, Readable.from([randomBytes(1000)]));
      const orphan = newId(); // staging without a multipart upload (its abort half-failed)
      const orphanState = await swept.createUpload(orphan);
      await swept.appendUpload(orphan, orphanState, 0, Readable.from([randomBytes(10)]));
      await client.send(
        new (await import('@aws-sdk/client-s3')).AbortMultipartUploadCommand({
          Bucket: bucket,
          Key: (orphanState as S3UploadState).key,
          UploadId: (orphanState as S3UploadState).uploadId,
        }),
      );
      const nobody = { known: async () => new Set<string>() };
      assert.equal(await swept.sweepUploads({ before: Date.now() - 60_000, ...nobody }), 0);
      await new Promise((r) => setTimeout(r, 2100));
      const fresh = newId();
      await swept.createUpload(fresh);
      const knownOld = await swept.sweepUploads({ before: Date.now() - 1500, known: async (ids) => new Set(ids.filter((i) => i === old)) });
      assert.equal(knownOld, 1, 'a session the metadata knows is left to the core; only the orphan staging goes');
      assert.equal(await swept.sweepUploads({ before: Date.now() - 1500, ...nobody }), 2, 'then the unknown old upload and its staging');
      const left = await listUploads(client, bucket, 'sweep-test/');
      assert.equal(left.length, 1);
      assert.ok(left[0].key.includes(fresh));
      assert.deepEqual(await listKeys(client, bucket, 'sweep-test/uploads/'), []);
      // The main store's prefix is untouched by the prefixed sweeper, and vice versa.
      await swept.close();
    });

    describe('data objects no pointer names (a commit that stored its bytes and failed or died before its pointer)', () => {
      const nobody = { known: async () => new Set<string>() };
      const dataKeys = (prefix: string) => listKeys(client, bucket, `${prefix}/data/`);

      /** Push `data` through `via` in one append (`last`: one PutObject, else parts and a tail), and commit it. */
      async function push(via: S3BlobStore, data: Buffer, last = false) {
        const id = newId();
        const { state } = await via.appendUpload(id, await via.createUpload(id), 0, Readable.from([data]), data.length, last);
        const committed = via.commitUpload(id, state, data.length, sha256(data));
        return { id, state: state as S3UploadState, committed };
      }

      it('sweeps them once their session is gone, and keeps named data, fresh data and the data of known sessions', async () => {
        const prefix = 'sweep-data';
        const pusher = storeFor(env, bucket, { prefix });
        const failing = new Set<string>();
        interceptPointerWrites(pusher.client, async (key) => {
          if (failing.has(key)) throw Object.assign(new Error('injected: pointer write failed'), { name: 'ServiceUnavailable' });
        });
        // Another process: its location cache knows none of these blobs.
        const sweeper = storeFor(env, bucket, { prefix });
        try {
          const kept = randomBytes(6 * MiB + 1);
          await (await push(pusher, kept)).committed;
          await (await push(pusher, Buffer.alloc(0))).committed; // a 0-byte address that is no pointer
          // Parts and a tail, and one PutObject: each commit stores its data, then its pointer fails.
          const leaks = [randomBytes(6 * MiB + 2), randomBytes(6 * MiB + 3)];
          for (const data of leaks) failing.add(`${prefix}/blobs/sha256/${sha256(data).slice(7)}`);
          const sessions = [];
          for (const [i, data] of leaks.entries()) {
            const session = await push(pusher, data, i === 1);
            await assert.rejects(session.committed, /pointer write failed/);
            sessions.push(session);
          }
          for (const data of leaks) assert.equal(await sweeper.stat(sha256(data)), undefined, 'no blob: its pointer was never written');
          assert.equal((await dataKeys(prefix)).length, 3, 'but its bytes are stored');

          // The core keeps a failed commit's session for the client to retry: its data stays.
          assert.equal(await sweeper.sweepUploads({ before: Date.now() + 1000, known: async (ids) => new Set(ids) }), 0);
          // The core ends the sessions (expired, or cancelled by the client): abort cannot tell
          // whether a pointer names the completed data, so it leaves it to the sweeper.
          for (const { id, state } of sessions) await pusher.abortUpload(id, state);
          assert.equal((await dataKeys(prefix)).length, 3);
          assert.equal(await sweeper.sweepUploads({ before: Date.now() - 60_000, ...nobody }), 0, 'fresh data stays');
          const [chunked, whole] = sessions;
          const knowsWhole = async (ids: string[]) => new Set(ids.filter((i) => i === whole.id));
          assert.equal(await sweeper.sweepUploads({ before: Date.now() + 1000, known: knowsWhole }), 1, 'old unnamed data goes');
          assert.ok(!(await dataKeys(prefix)).includes(chunked.state.key));
          // Now one pointer for two data objects (the empty blob's 0-byte address is no pointer).
          assert.equal(await sweeper.sweepUploads({ before: Date.now() + 1000, ...nobody }), 1, 'once its session is gone');
          const [keptKey] = await dataKeys(prefix);
          assert.deepEqual(await dataKeys(prefix), [keptKey]);
          assert.ok(!sessions.some((s) => keptKey.includes(s.id)), "the data that stays is the named blob's");
          await assertReadable(sha256(kept), kept.length, sweeper);
          assert.equal(await sweeper.sweepUploads({ before: Date.now() + 1000, ...nobody }), 0);
          // The same through the location cache of the process that pushed it.
          assert.equal(await pusher.sweepUploads({ before: Date.now() + 1000, ...nobody }), 0);
          assert.deepEqual(await dataKeys(prefix), [keptKey]);
        } finally {
          await pusher.close();
          await sweeper.close();
        }
      });

      it('never deletes the data of a commit whose pointer is being written', async () => {
        const prefix = 'sweep-inflight';
        const pusher = storeFor(env, bucket, { prefix });
        let release!: () => void;
        const held = new Promise<void>((resolve) => {
          release = resolve;
        });
        let holding!: () => void;
        const writing = new Promise<void>((resolve) => {
          holding = resolve;
        });
        interceptPointerWrites(pusher.client, async () => {
          holding();
          await held;
        });
        const sweeper = storeFor(env, bucket, { prefix });
        try {
          const data = randomBytes(6 * MiB + 4);
          const { id, committed } = await push(pusher, data);
          await writing; // data complete, pointer not yet written
          // The metadata store knows the session until the commit finishes (after the pointer).
          const known = async (ids: string[]) => new Set(ids.filter((i) => i === id));
          assert.equal(await sweeper.sweepUploads({ before: Date.now() + 1000, known }), 0);
          release();
          await committed;
          assert.equal(await sweeper.sweepUploads({ before: Date.now() + 1000, ...nobody }), 0, 'named now: it stays');
          await assertReadable(sha256(data), data.length, sweeper);
        } finally {
          release();
          await pusher.close();
          await sweeper.close();
        }
      });
    });

    describe('a closing PUT with the whole blob (last append, length over one part)', () => {
      const lastAppend = async (via: S3BlobStore, data: Buffer) => {
        const id = newId();
        const created = (await via.createUpload(id)) as S3UploadState;
        const { state, written } = await via.appendUpload(id, created, 0, Readable.from([data]), data.length, true);
        return { id, created, state: state as S3UploadState, written };
      };

      it('goes up as one object at the multipart key, with no parts, and commits by pointer', async () => {
        const data = randomBytes(12 * MiB + 3);
        const { id, state, written } = await lastAppend(store, data);
        assert.equal(written, data.length);
        assert.deepEqual(state.object, { size: data.length });
        assert.deepEqual(state.parts, []);
        const [upload] = (await listUploads(client, bucket)).filter((u) => u.key === state.key);
        assert.deepEqual(await listPartSizes(client, bucket, upload.key, upload.uploadId), [], 'no parts');
        await store.commitUpload(id, state, data.length, sha256(data));
        await assertReadable(sha256(data), data.length, other);
        assert.deepEqual(
          (await listKeys(client, bucket, 'data/')).filter((k) => k.includes(id)),
          [state.key],
        );
        assert.deepEqual(
          (await listUploads(client, bucket)).filter((u) => u.key.includes(id)),
          [],
          'the multipart upload is gone',
        );
        // The core's sweeper aborting a session it failed to delete after the commit keeps the blob.
        await store.abortUpload(id, state);
        await assertReadable(sha256(data), data.length, other);
        await assert.rejects(store.appendUpload(id, state, data.length, Readable.from([Buffer.from('x')]), 1), /closed by its last append/);
      });

      it('leaves nothing when aborted, even when its state was never recorded, or swept', async () => {
        for (const recorded of [true, false]) {
          const data = randomBytes(6 * MiB);
          const { id, created, state } = await lastAppend(store, data);
          await store.abortUpload(id, recorded ? state : created);
          await assertGone(id, sha256(data));
        }
        const swept = storeFor(env, bucket, { prefix: 'sweep-whole' });
        const { id, state } = await lastAppend(swept, randomBytes(6 * MiB));
        assert.equal(await swept.sweepUploads({ before: Date.now() + 1000, known: async () => new Set<string>() }), 1);
        assert.deepEqual(await listKeys(client, bucket, 'sweep-whole/'), [], `nothing of ${id} (${state.key}) left`);
        await swept.close();
      });

      it('fails with the error of the body when the body fails, and the session stays at offset 0', async () => {
        const id = newId();
        const created = await store.createUpload(id);
        const broken = generated(12 * MiB, { failAfter: 3 * MiB, chunk: MiB });
        await assert.rejects(store.appendUpload(id, created, 0, broken.stream, 12 * MiB, true), /client went away/);
        const data = randomBytes(12 * MiB);
        const { state } = await store.appendUpload(id, created, 0, Readable.from([data]), data.length, true);
        await store.commitUpload(id, state, data.length, sha256(data));
        await assertReadable(sha256(data), data.length);
      });

      it('uses parts when singlePutMax is 0, or the blob is not larger than a part', async () => {
        const parts = storeFor(env, bucket, { singlePutMax: 0 });
        const a = await lastAppend(parts, randomBytes(11 * MiB));
        assert.equal(a.state.object, undefined);
        assert.equal(a.state.parts.length, 2);
        await parts.abortUpload(a.id, a.state);
        const b = await lastAppend(store, randomBytes(5 * MiB));
        assert.equal(b.state.object, undefined);
        await store.abortUpload(b.id, b.state);
        await parts.close();
      });
    });

    it('maps an unreachable endpoint to UnavailableError without hanging', async () => {
      const down = storeFor(env, bucket, { endpoint: 'http://127.0.0.1:9', maxAttempts: 2, connectionTimeoutMs: 1000 });
      const started = Date.now();
      await assert.rejects(down.stat(sha256(Buffer.from('x'))), UnavailableError);
      await assert.rejects(down.createUpload(newId()), UnavailableError);
      assert.ok(Date.now() - started < 10_000);
      await down.close();
    });

    it('answers absent blobs: stat undefined, read NotFoundError', async () => {
      const digest = `sha256:${createHash('sha256').update(randomBytes(8)).digest('hex')}`;
      assert.equal(await store.stat(digest), undefined);
      await assert.rejects(store.read(digest), NotFoundError);
      await assert.rejects(store.read(digest, { start: 0, end: 1 }), NotFoundError);
    });
  });
}
