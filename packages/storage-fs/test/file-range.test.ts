// BlobReadStream as a file-range body: what it hands a writer that sends with sendfile(2) (the
// core's writeBody, tested in packages/core/test/node-response.test.ts), and how it ends.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fstatSync } from 'node:fs';
import { mkdtemp, open, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isFileRangeBody } from '@berthjs/core';
import { BlobReadStream } from '../src/blob-read-stream.js';
import { readAll, withFile } from './files.js';
import { FsBlobStore } from '../src/fs-blob-store.js';

const KiB = 1024;

const stream = async (path: string, start = 0, end = Infinity) => new BlobReadStream(await open(path), start, end, { chunkSize: 64 * KiB });

describe('BlobReadStream.fileRange', () => {
  test("the store's reads are file-range bodies", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-range-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const store = new FsBlobStore({ root: dir, fsync: false });
    const content = Buffer.from('hello');
    const id = 'u1';
    const state = await store.createUpload(id);
    await store.appendUpload(id, state, 0, Readable.from([content]));
    const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
    await store.commitUpload(id, state, content.length, digest);
    const body = await store.read(digest, { start: 1, end: 3 });
    assert.ok(isFileRangeBody(body));
    assert.deepEqual({ ...body.fileRange.take(), fd: 0 }, { fd: 0, start: 1, length: 3 });
    body.destroy();
  });

  test('takes the whole file or a range, as a span of the open descriptor', async (t) => {
    const content = randomBytes(300 * KiB + 5);
    const path = await withFile(t, content);
    const whole = await stream(path);
    const span = whole.fileRange.take();
    assert.ok(span);
    assert.equal(fstatSync(span.fd).size, content.length);
    assert.deepEqual({ start: span.start, length: span.length }, { start: 0, length: content.length });
    whole.destroy();
    const part = await stream(path, 10, 1009);
    assert.deepEqual({ ...part.fileRange.take(), fd: 0 }, { fd: 0, start: 10, length: 1000 });
    part.destroy();
  });

  test('once sent, the stream ends without reading and closes its file', async (t) => {
    const path = await withFile(t, randomBytes(200 * KiB));
    const body = await stream(path);
    const span = body.fileRange.take();
    assert.ok(span);
    const chunks: Buffer[] = [];
    body.on('data', (chunk: Buffer) => chunks.push(chunk));
    body.fileRange.sent();
    await once(body, 'close');
    assert.equal(chunks.length, 0);
    assert.ok(body.readableEnded);
    assert.throws(() => fstatSync(span.fd), { code: 'EBADF' });
  });

  test('released, it reads every byte as usual, even when asked for data while taken', async (t) => {
    const content = randomBytes(200 * KiB + 1);
    const path = await withFile(t, content);
    const body = await stream(path);
    assert.ok(body.fileRange.take());
    const read = readAll(body);
    await new Promise((r) => setTimeout(r, 20));
    body.fileRange.release();
    assert.ok((await read).equals(content));
  });

  test('refuses once the stream was read from, or when the file is shorter than the range', async (t) => {
    const content = randomBytes(200 * KiB);
    const path = await withFile(t, content);
    const started = await stream(path);
    await once(started, 'readable');
    assert.equal(started.fileRange.take(), undefined);
    started.destroy();
    const short = await stream(path, 0, 200 * KiB - 1);
    await truncate(path, 100 * KiB);
    assert.equal(short.fileRange.take(), undefined);
    short.destroy();
  });
});
