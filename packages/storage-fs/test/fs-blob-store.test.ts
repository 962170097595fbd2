// FsBlobStore specifics the shared contract cannot see: paths, layout on disk, fs-only failure
// modes and memory use. The BlobStore behaviour itself is covered by contract.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { ConflictError, IntegrityError, NotFoundError, StoreError, type BlobStore } from '@berthjs/core';
import { FsBlobStore } from '@berthjs/storage-fs';

const MiB = 1024 * 1024;

/** A store whose root sits next to a sentinel file, so escapes would be visible. */
async function setup(options: { fsync?: boolean } = {}) {
  const parent = await mkdtemp(join(tmpdir(), 'berth-fs-'));
  const root = join(parent, 'root');
  await writeFile(join(parent, 'sentinel'), 'keep me');
  const store = new FsBlobStore({ root, ...options });
  return { parent, root, store, cleanup: () => rm(parent, { recursive: true, force: true }) };
}

/** Every file below `dir`, as sorted relative paths (directories only through their files). */
async function files(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

function sha(data: Buffer, alg: 'sha256' | 'sha512' = 'sha256'): string {
  return `${alg}:${createHash(alg).update(data).digest('hex')}`;
}

async function push(store: BlobStore, content: Buffer, alg: 'sha256' | 'sha512' = 'sha256'): Promise<string> {
  const id = randomUUID();
  await store.createUpload(id);
  await store.appendUpload(id, {}, 0, Readable.from([content]), content.length);
  await store.commitUpload(id, {}, content.length, sha(content, alg));
  return sha(content, alg);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Rejected as malformed input (a plain StoreError), not as a missing blob or session. */
function isInvalid(err: unknown): boolean {
  return err instanceof StoreError && !(err instanceof NotFoundError) && /invalid/.test(err.message);
}

describe('FsBlobStore', () => {
  test('no digest, upload id, offset or range can reach outside the root', async () => {
    const { parent, root, store, cleanup } = await setup();
    try {
      const hex = 'a'.repeat(64);
      const good = `sha256:${hex}`;
      const badDigests: unknown[] = [
        '',
        'sha256',
        'sha256:',
        `sha256:${hex.slice(1)}`,
        `sha256:${hex}a`,
        `sha256:${hex.toUpperCase()}`,
        `SHA256:${hex}`,
        'sha256:../../../../../../etc/passwd',
        `sha256:../../${hex.slice(6)}`,
        `sha256:${hex.slice(0, 61)}/..`,
        `../sha256:${hex}`,
        `sha256/../../x:${hex}`,
        '/etc/passwd',
        'sha256:/etc/passwd',
        `/tmp/sha256:${hex}`,
        `sha256:${hex}/x`,
        `sha256:${hex}\n`,
        `sha256:${hex}\0`,
        ` ${good}`,
        `md5:${'a'.repeat(32)}`,
        `sha384:${'a'.repeat(96)}`,
        `sha512:${hex}`,
        `sha256+b64u:${hex}`,
        `..:${hex}`,
        undefined,
        null,
        42,
        { toString: () => good },
      ];
      const badIds: unknown[] = [
        '',
        '.',
        '..',
        '../x',
        '../../sentinel',
        '/etc/passwd',
        join(parent, 'sentinel'),
        'a/b',
        'a\\b',
        'x'.repeat(65),
        'a\0b',
        'a.b',
        ' a',
        'a\n',
        'uploads/../../x',
        undefined,
        null,
        7,
      ];
      // A real session, so that an id walking into uploads/ would find something to clobber.
      const id = randomUUID();
      await store.createUpload(id);

      for (const digest of badDigests as string[]) {
        const label = JSON.stringify(String(digest));
        await assert.rejects(store.stat(digest), isInvalid, `stat ${label}`);
        await assert.rejects(store.read(digest), isInvalid, `read ${label}`);
        await assert.rejects(store.delete([{ digest }]), isInvalid, `delete ${label}`);
        await assert.rejects(store.commitUpload(id, {}, 0, digest), isInvalid, `commit as ${label}`);
      }
      for (const bad of badIds as string[]) {
        const label = JSON.stringify(String(bad));
        await assert.rejects(store.createUpload(bad), isInvalid, `create ${label}`);
        await assert.rejects(store.appendUpload(bad, {}, 0, Readable.from([Buffer.from('x')])), isInvalid, `append ${label}`);
        await assert.rejects(store.commitUpload(bad, {}, 0, good), isInvalid, `commit ${label}`);
        await assert.rejects(store.abortUpload(bad, {}), isInvalid, `abort ${label}`);
      }
      for (const offset of [-1, 1.5, Number.NaN, Infinity, 2 ** 60]) {
        await assert.rejects(store.appendUpload(id, {}, offset, Readable.from([])), isInvalid, `offset ${offset}`);
        await assert.rejects(store.commitUpload(id, {}, offset, good), isInvalid, `size ${offset}`);
      }
      const blob = await push(store, Buffer.from('0123456789'));
      for (const range of [
        { start: -1, end: 3 },
        { start: 4, end: 3 },
        { start: 0.5, end: 3 },
        { start: 0, end: Number.NaN },
      ]) {
        await assert.rejects(store.read(blob, range), isInvalid, `range ${JSON.stringify(range)}`);
      }

      assert.equal(await readFile(join(parent, 'sentinel'), 'utf8'), 'keep me');
      assert.deepEqual((await readdir(parent)).sort(), ['root', 'sentinel'], 'nothing was created next to the root');
      assert.deepEqual(
        await files(root),
        [`blobs/sha256/${blob.slice(7, 9)}/${blob.slice(7)}`, `uploads/${id}`],
        'only the expected files',
      );
      await store.abortUpload(id, {});
    } finally {
      await cleanup();
    }
  });

  test('lays blobs and uploads out as documented', async () => {
    const { root, store, cleanup } = await setup();
    try {
      assert.deepEqual(await readdir(root).catch(() => 'absent'), 'absent', 'nothing is created before the first write');
      const content = randomBytes(3000);
      const id = randomUUID();
      await store.createUpload(id);
      assert.deepEqual(await files(root), [`uploads/${id}`]);
      assert.equal((await stat(join(root, 'uploads', id))).size, 0);
      await store.appendUpload(id, {}, 0, Readable.from([content]));
      assert.equal((await stat(join(root, 'uploads', id))).size, 3000);
      const digest = sha(content);
      await store.commitUpload(id, {}, content.length, digest);
      const hex = digest.slice('sha256:'.length);
      assert.deepEqual(await files(root), [`blobs/sha256/${hex.slice(0, 2)}/${hex}`], 'the upload file became the blob');
      assert.ok((await readFile(join(root, 'blobs', 'sha256', hex.slice(0, 2), hex))).equals(content), 'blob file content');

      const d512 = await push(store, content, 'sha512');
      const hex512 = d512.slice('sha512:'.length);
      assert.ok((await files(root)).includes(`blobs/sha512/${hex512.slice(0, 2)}/${hex512}`), 'sha512 layout');
      assert.deepEqual(await store.listUploads(), []);
      await store.delete([{ digest }]);
      await store.delete([{ digest: d512 }]);
      assert.deepEqual(await files(root), [], 'delete removes the files');
    } finally {
      await cleanup();
    }
  });

  test('an upload id cannot be opened twice', async () => {
    const { store, cleanup } = await setup();
    try {
      const id = randomUUID();
      await store.createUpload(id);
      await store.appendUpload(id, {}, 0, Readable.from([Buffer.from('data')]));
      await assert.rejects(store.createUpload(id), ConflictError);
      await store.commitUpload(id, {}, 4, sha(Buffer.from('data')));
      assert.deepEqual(await readAll(await store.read(sha(Buffer.from('data')))), Buffer.from('data'), 'the session was not reset');
    } finally {
      await cleanup();
    }
  });

  test('never zero-fills: an offset or size past the stored bytes is an IntegrityError', async () => {
    const { root, store, cleanup } = await setup();
    try {
      const id = randomUUID();
      await store.createUpload(id);
      await store.appendUpload(id, {}, 0, Readable.from([Buffer.alloc(10, 1)]));
      await assert.rejects(store.appendUpload(id, {}, 20, Readable.from([Buffer.alloc(5, 2)])), IntegrityError);
      const zeroFilled = Buffer.concat([Buffer.alloc(10, 1), Buffer.alloc(10)]);
      await assert.rejects(store.commitUpload(id, {}, 20, sha(zeroFilled)), IntegrityError);
      assert.equal(await store.stat(sha(zeroFilled)), undefined);
      assert.equal((await stat(join(root, 'uploads', id))).size, 10, 'the session is untouched');
      await store.abortUpload(id, {});
    } finally {
      await cleanup();
    }
  });

  test('commit cuts anything past size, and a failed verify removes the upload file', async () => {
    const { root, store, cleanup } = await setup();
    try {
      const content = randomBytes(100);
      const id = randomUUID();
      await store.createUpload(id);
      await store.appendUpload(id, {}, 0, Readable.from([content]));
      await store.commitUpload(id, {}, 60, sha(content.subarray(0, 60)));
      assert.deepEqual(await store.stat(sha(content.subarray(0, 60))), { size: 60 });

      const id2 = randomUUID();
      await store.createUpload(id2);
      await store.appendUpload(id2, {}, 0, Readable.from([content]));
      await assert.rejects(
        store.commitUpload(id2, {}, 100, sha(content), async () => {
          throw new Error('mismatch');
        }),
        /mismatch/,
      );
      assert.deepEqual(await files(join(root, 'uploads')), [], 'upload file removed');
      assert.equal(await store.stat(sha(content)), undefined);
    } finally {
      await cleanup();
    }
  });

  test('a range past the end of the blob is refused rather than answered short', async () => {
    const { store, cleanup } = await setup();
    try {
      const digest = await push(store, Buffer.from('0123456789'));
      await assert.rejects(store.read(digest, { start: 5, end: 10 }), StoreError);
      await assert.rejects(store.read(digest, { start: 10, end: 10 }), StoreError);
      assert.equal((await readAll(await store.read(digest, { start: 5, end: 9 }))).toString(), '56789');
    } finally {
      await cleanup();
    }
  });

  test('an open read survives a delete, and racing commits of one digest both succeed', async () => {
    const { root, store, cleanup } = await setup();
    try {
      const content = randomBytes(2 * MiB);
      const digest = await push(store, content);
      const reading = await store.read(digest);
      await store.delete([{ digest }]);
      assert.ok((await readAll(reading)).equals(content), 'the open stream still reads the deleted blob');

      const ids = [randomUUID(), randomUUID(), randomUUID()];
      for (const id of ids) {
        await store.createUpload(id);
        await store.appendUpload(id, {}, 0, Readable.from([content]));
      }
      await Promise.all(ids.map((id) => store.commitUpload(id, {}, content.length, digest)));
      assert.ok((await readAll(await store.read(digest))).equals(content), 'one intact blob');
      assert.equal((await files(root)).length, 1, 'no upload files left');
    } finally {
      await cleanup();
    }
  });

  test('works with fsync turned off', async () => {
    const { store, cleanup } = await setup({ fsync: false });
    try {
      const content = randomBytes(10_000);
      const digest = await push(store, content);
      assert.ok((await readAll(await store.read(digest))).equals(content), 'round trip');
    } finally {
      await cleanup();
    }
  });

  test('an append is handed to the disk in the background as soon as it ends', async (t) => {
    // Spy on every fdatasync the store issues (FileHandle is not exported; take it from a handle).
    const probe = await open(tmpdir(), 'r');
    const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void> };
    await probe.close();
    const original = proto.datasync;
    let datasyncs = 0;
    t.mock.method(proto, 'datasync', function (this: unknown) {
      datasyncs++;
      return original.call(this);
    });
    for (const fsync of [false, true]) {
      const { store, cleanup } = await setup({ fsync });
      try {
        datasyncs = 0;
        const id = randomUUID();
        await store.createUpload(id);
        // One short chunk, as a PATCH of a chunked push: done long before any periodic flush.
        await store.appendUpload(id, {}, 0, Readable.from([randomBytes(MiB)]), MiB);
        const deadline = Date.now() + 2000;
        while (fsync && datasyncs === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, 50));
        if (fsync) assert.ok(datasyncs >= 1, 'the chunk was flushed without waiting for the commit');
        else assert.equal(datasyncs, 0, 'fsync: false never flushes');
        await store.abortUpload(id, {});
      } finally {
        await cleanup();
      }
    }
  });

  test('rejects bad options', () => {
    assert.throws(() => new FsBlobStore({ root: '' }), TypeError);
    assert.throws(() => new FsBlobStore({ root: '/tmp/x', writeHighWaterMark: 0 }), TypeError);
    assert.throws(() => new FsBlobStore(undefined as never), TypeError);
    assert.equal(new FsBlobStore({ root: 'relative/dir' }).root, join(process.cwd(), 'relative/dir'));
  });

  test('memory stays flat for a 512 MiB blob streamed in and out', { timeout: 60_000 }, async (t) => {
    const { store, cleanup } = await setup();
    const size = 512 * MiB;
    const pattern = randomBytes(MiB);
    const sent = createHash('sha256');
    // 64 KiB chunks, each a fresh buffer, like an HTTP request body.
    async function* source() {
      const chunk = 64 * 1024;
      for (let at = 0; at < size; at += chunk) {
        const out = Buffer.allocUnsafe(chunk);
        pattern.copy(out, 0, at % MiB, (at % MiB) + chunk);
        out.writeUInt32BE(at / chunk, 0);
        sent.update(out);
        yield out;
      }
    }
    const baseline = process.memoryUsage.rss();
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, 10);
    try {
      const id = randomUUID();
      await store.createUpload(id);
      const { written } = await store.appendUpload(id, {}, 0, Readable.from(source(), { objectMode: false }), size);
      assert.equal(written, size);
      const digest = `sha256:${sent.digest('hex')}`;
      await store.commitUpload(id, {}, size, digest, async (content) => {
        const check = createHash('sha256');
        for await (const chunk of content) check.update(chunk as Buffer);
        assert.equal(`sha256:${check.digest('hex')}`, digest, 'verify hashes the stored upload');
      });
      const got = createHash('sha256');
      for await (const chunk of await store.read(digest)) got.update(chunk as Buffer);
      assert.equal(`sha256:${got.digest('hex')}`, digest);
      peak = Math.max(peak, process.memoryUsage.rss());
      const growth = (peak - baseline) / MiB;
      t.diagnostic(`peak RSS growth ${growth.toFixed(1)} MiB`);
      assert.ok(growth < 100, `RSS grew by ${growth.toFixed(1)} MiB while moving 3 x 512 MiB`);
    } finally {
      clearInterval(sampler);
      await cleanup();
    }
  });
});
