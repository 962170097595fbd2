// BlobReadStream: ranges, the end of the file, errors, descriptors, and when it reads synchronously.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readdir, readlink, realpath, truncate, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { BlobReadStream } from '../src/blob-read-stream.js';
import { readAll, withFile } from './files.js';

const KiB = 1024;

/** Counts reads that went through the threadpool (FileHandle.read) while `work` runs. */
async function threadpoolReads(t: TestContext, work: () => Promise<unknown>): Promise<number> {
  const probe = await open(tmpdir(), 'r');
  const proto = Object.getPrototypeOf(probe) as FileHandle;
  await probe.close();
  const original = proto.read;
  let reads = 0;
  const spy = t.mock.method(proto, 'read', function (this: FileHandle, ...args: Parameters<FileHandle['read']>) {
    reads++;
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  });
  try {
    await work();
  } finally {
    spy.mock.restore();
  }
  return reads;
}

/** Descriptors of this process open on `path` (counting all of them raced with unrelated ones closing). */
async function fdsOn(path: string): Promise<number> {
  const target = await realpath(path);
  const links = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => undefined)));
  return links.filter((link) => link === target).length;
}

describe('BlobReadStream', () => {
  test('streams a whole file, or any inclusive range of it, in chunks of the given size', async (t) => {
    const content = randomBytes(1000 * KiB + 7);
    const path = await withFile(t, content);
    assert.ok((await readAll(new BlobReadStream(await open(path), 0, Infinity, { chunkSize: 64 * KiB }))).equals(content));
    for (const [start, end] of [
      [0, 0],
      [5, 64 * KiB],
      [64 * KiB, 128 * KiB - 1],
      [999 * KiB, content.length - 1],
    ]) {
      const stream = new BlobReadStream(await open(path), start, end, { chunkSize: 64 * KiB });
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      assert.ok(Buffer.concat(chunks).equals(content.subarray(start, end + 1)), `range ${start}-${end}`);
      assert.ok(chunks.every((c) => c.length <= 64 * KiB));
    }
  });

  test('an empty file is an empty stream', async (t) => {
    const path = await withFile(t, Buffer.alloc(0));
    assert.equal((await readAll(new BlobReadStream(await open(path), 0, Infinity, { chunkSize: 64 * KiB }))).length, 0);
  });

  test('a file shorter than the range fails the stream instead of ending it early', async (t) => {
    const path = await withFile(t, randomBytes(100 * KiB));
    const stream = new BlobReadStream(await open(path), 0, 100 * KiB - 1, { chunkSize: 16 * KiB });
    await truncate(path, 50 * KiB);
    await assert.rejects(readAll(stream), /file ended at byte 51200, before byte 102399/);
  });

  test('closes its descriptor when it ends, fails or is destroyed midway', async (t) => {
    const path = await withFile(t, randomBytes(512 * KiB));
    await readAll(new BlobReadStream(await open(path), 0, Infinity, { chunkSize: 64 * KiB }));
    const destroyed = new BlobReadStream(await open(path), 0, Infinity, { chunkSize: 64 * KiB });
    await new Promise((resolve) => destroyed.once('data', resolve));
    destroyed.destroy();
    await new Promise((resolve) => destroyed.once('close', resolve));
    const failed = new BlobReadStream(await open(path), 0, 1024 * KiB, { chunkSize: 64 * KiB });
    await assert.rejects(readAll(failed));
    assert.equal(await fdsOn(path), 0);
  });

  test('reads through the threadpool first, then synchronously while reads stay fast', async (t) => {
    const content = randomBytes(640 * KiB);
    const path = await withFile(t, content);
    // 10 chunks of 64 KiB: one threadpool read, then cache hits read in place (no block input).
    let data: Buffer = Buffer.alloc(0);
    const reads = await threadpoolReads(t, async () => {
      data = await readAll(new BlobReadStream(await open(path), 0, Infinity, { chunkSize: 64 * KiB, blocksRead: () => 0 }));
    });
    assert.ok(data.equals(content));
    assert.equal(reads, 1);
  });

  test('goes back to the threadpool for good after a synchronous read that came from the disk', async (t) => {
    const content = randomBytes(640 * KiB);
    const path = await withFile(t, content);
    // The block-input count moves during the third read (the second synchronous one): reads 1-3
    // as before, then the remaining seven and the final end-of-file read through the threadpool.
    let reads = 0;
    const blocksRead = () => (++reads >= 4 ? 8 : 0);
    let data: Buffer = Buffer.alloc(0);
    const poolReads = await threadpoolReads(t, async () => {
      data = await readAll(new BlobReadStream(await open(path), 0, Infinity, { chunkSize: 64 * KiB, blocksRead }));
    });
    assert.ok(data.equals(content));
    assert.equal(poolReads, 1 + 7 + 1);
  });

  test('goes back to the threadpool for good after one slow synchronous read', async (t) => {
    const content = randomBytes(640 * KiB);
    const path = await withFile(t, content);
    // Every read counts as slow: the first is asynchronous, the second synchronous (and slow), the
    // remaining eight and the final end-of-file read asynchronous again.
    let data: Buffer = Buffer.alloc(0);
    const reads = await threadpoolReads(t, async () => {
      data = await readAll(new BlobReadStream(await open(path), 0, Infinity, { chunkSize: 64 * KiB, slowReadMs: -1 }));
    });
    assert.ok(data.equals(content));
    assert.equal(reads, 10);
  });
});
