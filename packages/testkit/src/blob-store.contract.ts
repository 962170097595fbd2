/*
 * The BlobStore contract: one node:test suite that every store runs (fs, S3, in-memory doubles),
 * like Distribution's storage-driver testsuites. A store's test file only supplies a factory:
 *
 *   describeBlobStore('fs', async () => {
 *     const root = await mkdtemp(join(tmpdir(), 'berth-'));
 *     const store = new FsBlobStore({ root });
 *     return { store, cleanup: () => rm(root, { recursive: true, force: true }), listUploads: () => store.listUploads() };
 *   });
 *
 * Every test gets a fresh store from the factory and cleans it up afterwards. Upload state is
 * round-tripped through JSON between calls, exactly as the core persists it in the metadata store.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { NotFoundError, type BlobStore, type UploadState } from '@berthjs/core';

/** What a factory hands the suite for one test. */
export interface BlobStoreFixture {
  /** A fresh, empty store. */
  store: BlobStore;
  /** Remove everything the store and the test left (temp dir, bucket prefix...). Runs after `store.close()`. */
  cleanup: () => Promise<void>;
  /**
   * Upload sessions (or any temporary object: staging parts, temp files) the backend still holds.
   * When given, every test ends by asserting it is empty, so a store that leaks sessions fails.
   */
  listUploads?: () => Promise<string[]>;
  /**
   * A second store instance over the same backing storage, as another replica would open it.
   * When given, the suite checks that sessions continue across instances. The suite closes it.
   */
  reopen?: () => Promise<BlobStore>;
  /**
   * Make the backing storage unusable (remove the directory, cut the connection) and return how to
   * bring it back. The suite checks that `probe` fails meanwhile and passes again after.
   */
  breakStorage: () => Promise<() => Promise<void>>;
}

export type BlobStoreFactory = () => Promise<BlobStoreFixture>;

type Algorithm = 'sha256' | 'sha512';

const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const MiB = 1024 * 1024;

function digestOf(data: Buffer, algorithm: Algorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/** Pass state through JSON as the core does, asserting nothing is lost on the way. */
function viaJson(state: UploadState): UploadState {
  assert.equal(typeof state, 'object', 'upload state must be an object');
  assert.notEqual(state, null, 'upload state must not be null');
  const copy = JSON.parse(JSON.stringify(state)) as UploadState;
  assert.deepStrictEqual(copy, state, 'upload state must survive JSON.stringify/parse unchanged');
  return copy;
}

/** A byte stream like an HTTP request body (not object mode). */
function body(...chunks: Buffer[]): Readable {
  return Readable.from(chunks, { objectMode: false });
}

/** Sends `before`, then fails like a client that hung up mid-request. */
function failingBody(before: Buffer, error: Error): Readable {
  return Readable.from(
    (async function* () {
      yield before;
      await tick();
      throw error;
    })(),
    { objectMode: false },
  );
}

/** `size` random bytes as a stream of odd-sized chunks, hashing them on the way; never one big buffer. */
function generated(size: number, hash: ReturnType<typeof createHash>): Readable {
  const pattern = randomBytes(MiB);
  const chunk = 256 * 1024 + 13;
  return Readable.from(
    (async function* () {
      let sent = 0;
      let n = 0;
      while (sent < size) {
        const length = Math.min(chunk, size - sent);
        const out = Buffer.allocUnsafe(length);
        pattern.copy(out, 0, (n * 7919) % (MiB - chunk), ((n * 7919) % (MiB - chunk)) + length);
        // Stamp the chunk number so no two chunks are equal even when the pattern offset repeats.
        if (length >= 4) out.writeUInt32BE(n, 0);
        n++;
        hash.update(out);
        sent += length;
        yield out;
      }
    })(),
    { objectMode: false },
  );
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

async function readStored(store: BlobStore, digest: string, range?: { start: number; end: number }): Promise<Buffer> {
  return readAll(await store.read(digest, range));
}

/** Byte equality with a short message (never a multi-MiB diff, nor a message parsed from source). */
function assertBytes(actual: Buffer, expected: Buffer, what: string): void {
  if (actual.equals(expected)) return;
  let at = 0;
  while (at < Math.min(actual.length, expected.length) && actual[at] === expected[at]) at++;
  assert.fail(`${what}: got ${actual.length} bytes, expected ${expected.length}; first difference at byte ${at}`);
}

function isNotFound(err: unknown): boolean {
  return err instanceof NotFoundError;
}

/** Upload `chunks` through one session (one append per chunk) and commit it under their digest. */
async function push(store: BlobStore, chunks: Buffer[], algorithm: Algorithm = 'sha256'): Promise<string> {
  const content = Buffer.concat(chunks);
  const digest = digestOf(content, algorithm);
  const id = randomUUID();
  let state = viaJson(await store.createUpload(id));
  let offset = 0;
  for (const chunk of chunks) {
    const result = await store.appendUpload(id, state, offset, body(chunk), chunk.length);
    assert.equal(result.written, chunk.length, `written after appending ${chunk.length} bytes at ${offset}`);
    state = viaJson(result.state);
    offset += result.written;
  }
  await store.commitUpload(id, state, offset, digest);
  return digest;
}

/** Registers the contract suite for one store. */
export function describeBlobStore(name: string, factory: BlobStoreFactory): void {
  /** A test on a fresh store, ending with the leak check. */
  function it(
    title: string,
    fn: (store: BlobStore, fixture: BlobStoreFixture, t: TestContext) => Promise<void>,
    options: { timeout?: number } = {},
  ): void {
    test(title, { timeout: options.timeout ?? 30_000 }, async (t) => {
      const fixture = await factory();
      try {
        await fn(fixture.store, fixture, t);
        if (fixture.listUploads) {
          assert.deepEqual(await fixture.listUploads(), [], 'the store still holds upload sessions after the test');
        }
      } finally {
        await fixture.store.close?.();
        await fixture.cleanup();
      }
    });
  }

  describe(`BlobStore contract: ${name}`, () => {
    it('names itself and declares sane capabilities', async (store) => {
      assert.equal(typeof store.name, 'string');
      assert.ok(store.name.length > 0, 'name is not empty');
      const { minChunkLength, redirect } = store.capabilities;
      if (minChunkLength !== undefined) assert.ok(Number.isSafeInteger(minChunkLength) && minChunkLength > 0, 'minChunkLength');
      if (redirect !== undefined) assert.equal(typeof redirect, 'boolean');
      if (redirect) assert.equal(typeof store.redirectUrl, 'function', 'redirect needs redirectUrl');
    });

    it('probe passes on a usable store, again and again, and leaves nothing behind', async (store) => {
      await store.probe();
      await store.probe();
      assert.equal(await store.stat(EMPTY_SHA256), undefined);
    });

    it('probe fails while the backing storage is unusable, and passes once it is back', async (store, fixture) => {
      await store.probe();
      const restore = await fixture.breakStorage();
      try {
        await assert.rejects(store.probe());
      } finally {
        await restore();
      }
      await store.probe();
    });

    it('absent blobs: stat is undefined, read throws NotFoundError, delete is a no-op', async (store) => {
      for (const digest of [digestOf(Buffer.from('absent')), digestOf(Buffer.from('absent'), 'sha512'), EMPTY_SHA256]) {
        assert.equal(await store.stat(digest), undefined, digest);
        await assert.rejects(store.read(digest), isNotFound, digest);
        await assert.rejects(store.read(digest, { start: 0, end: 0 }), isNotFound, digest);
        await store.delete([{ digest: digest }]);
      }
    });

    it('unknown sessions: append and commit throw NotFoundError, abort is a no-op', async (store) => {
      const id = randomUUID();
      await assert.rejects(store.appendUpload(id, {}, 0, body(Buffer.from('x')), 1), isNotFound);
      await assert.rejects(store.commitUpload(id, {}, 0, EMPTY_SHA256), isNotFound);
      await store.abortUpload(id, {});
      assert.equal(await store.stat(EMPTY_SHA256), undefined, 'a failed commit must not create the blob');
    });

    it('a chunked upload with empty chunks round-trips', async (store) => {
      const a = randomBytes(1000);
      const b = randomBytes(1);
      const c = randomBytes(70_000);
      const content = Buffer.concat([a, b, c]);
      const digest = digestOf(content);
      const id = randomUUID();
      let state = viaJson(await store.createUpload(id));
      let offset = 0;
      // Empty bodies, and empty chunks inside a body, must not confuse the offset bookkeeping.
      for (const [parts, length] of [
        [[a], 1000],
        [[], 0],
        [[Buffer.alloc(0)], 0],
        [[b, Buffer.alloc(0)], 1],
        [[c.subarray(0, 5), Buffer.alloc(0), c.subarray(5)], 70_000],
      ] as const) {
        const result = await store.appendUpload(id, state, offset, body(...parts), length);
        assert.equal(result.written, length, `written at offset ${offset}`);
        state = viaJson(result.state);
        offset += result.written;
      }
      assert.equal(offset, content.length);
      assert.equal(await store.stat(digest), undefined, 'nothing is visible before commit');
      await store.commitUpload(id, state, offset, digest);
      assert.deepEqual(await store.stat(digest), { size: content.length });
      assertBytes(await readStored(store, digest), content, 'read returns the uploaded bytes');
      await assert.rejects(store.appendUpload(id, state, offset, body(Buffer.from('late')), 4), isNotFound, 'commit drops the session');
    });

    it('an append marked last (a closing PUT with a body) commits, verified or not; a failed commit keeps the session', async (store) => {
      // Over 5 MiB: bigger than a part of any S3 store, so that one may store it in one piece.
      const content = randomBytes(6 * 1024 * 1024 + 7);
      const digest = digestOf(content);
      const id = randomUUID();
      const state = viaJson(await store.createUpload(id));
      const appended = await store.appendUpload(id, state, 0, body(content), content.length, true);
      assert.equal(appended.written, content.length);
      // The commit fails (a wrong size): the session still stands where it was before the append.
      await assert.rejects(store.commitUpload(id, viaJson(appended.state), content.length + 1, digest));
      const again = await store.appendUpload(id, state, 0, body(content), content.length, true);
      let seen: Buffer | undefined;
      await store.commitUpload(id, viaJson(again.state), content.length, digest, async (stream) => {
        seen = await readAll(stream);
      });
      assertBytes(seen ?? Buffer.alloc(0), content, 'verify receives the bytes');
      assertBytes(await readStored(store, digest), content, 'read returns the uploaded bytes');
    });

    it('0-byte blobs: committed without any append, after an empty append, and through verify', async (store) => {
      const id = randomUUID();
      await store.commitUpload(id, viaJson(await store.createUpload(id)), 0, EMPTY_SHA256);
      assert.deepEqual(await store.stat(EMPTY_SHA256), { size: 0 });
      assert.equal((await readStored(store, EMPTY_SHA256)).length, 0);
      await store.delete([{ digest: EMPTY_SHA256 }]);
      assert.equal(await store.stat(EMPTY_SHA256), undefined);

      const id2 = randomUUID();
      const appended = await store.appendUpload(id2, viaJson(await store.createUpload(id2)), 0, body(), 0);
      assert.equal(appended.written, 0);
      let seen: Buffer | undefined;
      await store.commitUpload(id2, viaJson(appended.state), 0, EMPTY_SHA256, async (content) => {
        seen = await readAll(content);
      });
      assert.ok(seen !== undefined && seen.length === 0, 'verify receives an empty stream');
      assert.deepEqual(await store.stat(EMPTY_SHA256), { size: 0 });
      assert.equal((await readStored(store, EMPTY_SHA256)).length, 0);
    });

    it('ranged reads are inclusive at both ends', async (store) => {
      const content = randomBytes(1000);
      const digest = await push(store, [content.subarray(0, 300), content.subarray(300)]);
      const ranges = [
        { start: 0, end: 999 },
        { start: 0, end: 0 },
        { start: 999, end: 999 },
        { start: 500, end: 500 },
        { start: 10, end: 19 },
        { start: 1, end: 998 },
        { start: 300, end: 999 },
      ];
      for (const range of ranges) {
        const got = await readStored(store, digest, range);
        assertBytes(got, content.subarray(range.start, range.end + 1), `range ${range.start}-${range.end}`);
      }
      assertBytes(await readStored(store, digest), content, 'no range reads everything');
    });

    it('appending at an older offset discards what the session held past it', async (store) => {
      const [a, b, c, d] = [randomBytes(100), randomBytes(50), randomBytes(30), randomBytes(20)];
      const id = randomUUID();
      let state = viaJson(await store.createUpload(id));
      state = viaJson((await store.appendUpload(id, state, 0, body(a), a.length)).state);
      // b lands, but the metadata never records it (the request failed after the write).
      await store.appendUpload(id, state, 100, body(b), b.length);
      state = viaJson((await store.appendUpload(id, state, 100, body(c), c.length)).state);
      state = viaJson((await store.appendUpload(id, state, 130, body(d), d.length)).state);
      const content = Buffer.concat([a, c, d]);
      await store.commitUpload(id, state, content.length, digestOf(content));
      assert.deepEqual(await store.stat(digestOf(content)), { size: 150 });
      assertBytes(await readStored(store, digestOf(content)), content, 'b was replaced by c and d');

      // Rewriting from offset 0 replaces everything, even with fewer bytes.
      const id2 = randomUUID();
      let state2 = viaJson(await store.createUpload(id2));
      await store.appendUpload(id2, state2, 0, body(randomBytes(64)), 64);
      const short = randomBytes(5);
      state2 = viaJson((await store.appendUpload(id2, state2, 0, body(short), 5)).state);
      await store.commitUpload(id2, state2, 5, digestOf(short));
      assertBytes(await readStored(store, digestOf(short)), short, 'a rewrite from offset 0 replaces everything');
    });

    it('a body failing mid-way rejects appendUpload, and the session resumes at the recorded offset', async (store) => {
      const a = randomBytes(10_000);
      const b = randomBytes(5_000);
      const id = randomUUID();
      let state = viaJson(await store.createUpload(id));
      state = viaJson((await store.appendUpload(id, state, 0, body(a), a.length)).state);
      const hangup = new Error('client hung up');
      await assert.rejects(store.appendUpload(id, state, a.length, failingBody(randomBytes(64 * 1024), hangup), 100_000));
      state = viaJson((await store.appendUpload(id, state, a.length, body(b), b.length)).state);
      const content = Buffer.concat([a, b]);
      await store.commitUpload(id, state, content.length, digestOf(content));
      assertBytes(await readStored(store, digestOf(content)), content, 'the failed partial write is gone');

      // A session whose only request failed can still be aborted cleanly.
      const id2 = randomUUID();
      const state2 = viaJson(await store.createUpload(id2));
      await assert.rejects(store.appendUpload(id2, state2, 0, failingBody(randomBytes(1000), hangup)));
      await store.abortUpload(id2, state2);
    });

    it('verify receives the whole content, and the blob appears once it accepts', async (store) => {
      const chunks = [randomBytes(40_000), randomBytes(3), randomBytes(100_000)];
      const content = Buffer.concat(chunks);
      const digest = digestOf(content);
      const id = randomUUID();
      let state = viaJson(await store.createUpload(id));
      let offset = 0;
      for (const chunk of chunks) {
        state = viaJson((await store.appendUpload(id, state, offset, body(chunk), chunk.length)).state);
        offset += chunk.length;
      }
      let calls = 0;
      await store.commitUpload(id, state, offset, digest, async (stream) => {
        calls++;
        assert.equal(await store.stat(digest), undefined, 'the blob must not be visible while verifying');
        const hash = createHash('sha256');
        for await (const chunk of stream) hash.update(chunk as Uint8Array);
        assert.equal(`sha256:${hash.digest('hex')}`, digest, 'verify sees exactly the uploaded bytes');
      });
      assert.equal(calls, 1, 'verify is called once');
      assert.deepEqual(await store.stat(digest), { size: content.length });
      assertBytes(await readStored(store, digest), content, 'read after a verified commit');
    });

    it('a rejecting verify leaves no blob behind and its error propagates', async (store) => {
      const content = randomBytes(200_000);
      const digest = digestOf(content);
      const mismatch = new Error('digest mismatch');
      const verifiers = {
        'after reading everything': async (stream: Readable) => {
          await readAll(stream);
          throw mismatch;
        },
        'without reading anything': async () => {
          throw mismatch;
        },
        'after reading one chunk': async (stream: Readable) => {
          for await (const _chunk of stream) throw mismatch;
          throw new Error('stream had no chunk');
        },
      };
      for (const [how, verify] of Object.entries(verifiers)) {
        const id = randomUUID();
        let state = viaJson(await store.createUpload(id));
        state = viaJson((await store.appendUpload(id, state, 0, body(content), content.length)).state);
        await assert.rejects(store.commitUpload(id, state, content.length, digest, verify), (err) => err === mismatch, how);
        assert.equal(await store.stat(digest), undefined, `no blob after verify rejected ${how}`);
        await assert.rejects(store.read(digest), isNotFound, how);
        // The core aborts a session whose commit failed; that must work whatever the store did.
        await store.abortUpload(id, state);
      }
      // The digest is not poisoned: a good upload still lands.
      await push(store, [content]);
      assert.deepEqual(await store.stat(digest), { size: content.length });
    });

    it('committing a digest that already exists keeps the stored blob (dedup)', async (store) => {
      const original = randomBytes(4096);
      const digest = await push(store, [original]);
      // Same digest, other bytes: only a buggy caller does this, but it shows which copy wins.
      const other = randomBytes(1000);
      const id = randomUUID();
      let state = viaJson(await store.createUpload(id));
      state = viaJson((await store.appendUpload(id, state, 0, body(other), other.length)).state);
      await store.commitUpload(id, state, other.length, digest);
      assert.deepEqual(await store.stat(digest), { size: original.length });
      assertBytes(await readStored(store, digest), original, 'the stored blob is unchanged');
      // And the honest case: the same content pushed twice.
      assert.equal(await push(store, [original.subarray(0, 96), original.subarray(96)]), digest);
      assertBytes(await readStored(store, digest), original, 'pushing the same content again');
    });

    it('abort drops the session and what it stored', async (store) => {
      const content = randomBytes(3000);
      const id = randomUUID();
      let state = viaJson(await store.createUpload(id));
      state = viaJson((await store.appendUpload(id, state, 0, body(content), content.length)).state);
      await store.abortUpload(id, state);
      await assert.rejects(store.appendUpload(id, state, content.length, body(Buffer.from('more')), 4), isNotFound);
      await assert.rejects(store.commitUpload(id, state, content.length, digestOf(content)), isNotFound);
      assert.equal(await store.stat(digestOf(content)), undefined);
      await store.abortUpload(id, state);
    });

    it('delete removes a blob, which can then be pushed again', async (store) => {
      const content = randomBytes(5000);
      const keep = randomBytes(10);
      const digest = await push(store, [content]);
      const kept = await push(store, [keep]);
      await store.delete([{ digest: digest }]);
      assert.equal(await store.stat(digest), undefined);
      await assert.rejects(store.read(digest), isNotFound);
      await store.delete([{ digest: digest }]);
      assertBytes(await readStored(store, kept), keep, 'other blobs are untouched');
      await push(store, [content]);
      assertBytes(await readStored(store, digest), content, 'the pushed-again blob');
    });

    it('sha512 digests round-trip, ranges included', async (store) => {
      const content = randomBytes(33_333);
      const digest = await push(store, [content.subarray(0, 20_000), content.subarray(20_000)], 'sha512');
      assert.match(digest, /^sha512:[a-f0-9]{128}$/);
      assert.deepEqual(await store.stat(digest), { size: content.length });
      assertBytes(await readStored(store, digest), content, 'sha512 blob');
      assertBytes(
        await readStored(store, digest, { start: 19_999, end: 20_000 }),
        content.subarray(19_999, 20_001),
        'sha512 range 19999-20000',
      );
      assert.equal(await store.stat(digestOf(content)), undefined, 'the sha256 of the same bytes is another blob');
      await store.delete([{ digest: digest }]);
      assert.equal(await store.stat(digest), undefined);
    });

    it('interleaved sessions do not interfere', async (store) => {
      const [a1, a2, b1, b2] = [randomBytes(7000), randomBytes(11), randomBytes(900), randomBytes(12_345)];
      const [ida, idb] = [randomUUID(), randomUUID()];
      let sa = viaJson(await store.createUpload(ida));
      let sb = viaJson(await store.createUpload(idb));
      // Run two appends concurrently, then one more each.
      const [ra, rb] = await Promise.all([
        store.appendUpload(ida, sa, 0, body(a1), a1.length),
        store.appendUpload(idb, sb, 0, body(b1), b1.length),
      ]);
      sa = viaJson(ra.state);
      sb = viaJson(rb.state);
      sb = viaJson((await store.appendUpload(idb, sb, b1.length, body(b2), b2.length)).state);
      sa = viaJson((await store.appendUpload(ida, sa, a1.length, body(a2), a2.length)).state);
      const [a, b] = [Buffer.concat([a1, a2]), Buffer.concat([b1, b2])];
      await store.commitUpload(idb, sb, b.length, digestOf(b));
      await store.commitUpload(ida, sa, a.length, digestOf(a));
      assertBytes(await readStored(store, digestOf(a)), a, 'blob a');
      assertBytes(await readStored(store, digestOf(b)), b, 'blob b');
    });

    it('read streams can be read concurrently and abandoned early', async (store) => {
      const content = randomBytes(4 * MiB + 17);
      const digest = await push(store, [content]);
      const [x, y] = await Promise.all([readStored(store, digest), readStored(store, digest, { start: MiB, end: 3 * MiB })]);
      assertBytes(x, content, 'concurrent full read');
      assertBytes(y, content.subarray(MiB, 3 * MiB + 1), 'concurrent ranged read');
      const stream = await store.read(digest);
      for await (const _chunk of stream) break; // destroys the stream
      assert.ok(stream.destroyed, 'breaking out of the loop destroys the stream');
      await store.delete([{ digest: digest }]);
    });

    it(
      'a 64 MiB blob streamed in uneven appends round-trips (streaming hash)',
      async (store) => {
        const sizes = [40 * MiB + 12_345, 0, 24 * MiB - 12_345 + 7];
        const total = sizes.reduce((sum, n) => sum + n, 0);
        const sent = createHash('sha256');
        const id = randomUUID();
        let state = viaJson(await store.createUpload(id));
        let offset = 0;
        for (const size of sizes) {
          const result = await store.appendUpload(id, state, offset, generated(size, sent), size);
          assert.equal(result.written, size);
          state = viaJson(result.state);
          offset += size;
        }
        const digest = `sha256:${sent.digest('hex')}`;
        await store.commitUpload(id, state, total, digest);
        assert.deepEqual(await store.stat(digest), { size: total });
        const got = createHash('sha256');
        let length = 0;
        for await (const chunk of await store.read(digest)) {
          got.update(chunk as Uint8Array);
          length += (chunk as Uint8Array).length;
        }
        assert.equal(length, total);
        assert.equal(`sha256:${got.digest('hex')}`, digest);
        // A range straddling the appends streams exactly its length.
        let ranged = 0;
        for await (const chunk of await store.read(digest, { start: sizes[0] - 10, end: total - 2 }))
          ranged += (chunk as Uint8Array).length;
        assert.equal(ranged, total - 1 - (sizes[0] - 10));
      },
      { timeout: 120_000 },
    );

    it('a session continues on another instance of the store (replica)', async (store, fixture, t) => {
      if (!fixture.reopen) return t.skip('the factory offers no reopen()');
      const other = await fixture.reopen();
      try {
        const [a, b, c] = [randomBytes(6000), randomBytes(7000), randomBytes(8000)];
        const content = Buffer.concat([a, b, c]);
        const digest = digestOf(content);
        const id = randomUUID();
        let state = viaJson(await store.createUpload(id));
        state = viaJson((await store.appendUpload(id, state, 0, body(a), a.length)).state);
        state = viaJson((await other.appendUpload(id, state, a.length, body(b), b.length)).state);
        state = viaJson((await store.appendUpload(id, state, a.length + b.length, body(c), c.length)).state);
        await other.commitUpload(id, state, content.length, digest, async (stream) => {
          assertBytes(await readAll(stream), content, 'verify on the other instance sees the whole content');
        });
        assertBytes(await readStored(store, digest), content, 'visible on the first instance');
        assertBytes(await readStored(other, digest), content, 'visible on the second instance');
        await other.delete([{ digest: digest }]);
        assert.equal(await store.stat(digest), undefined);
      } finally {
        await other.close?.();
      }
    });
  });
}
