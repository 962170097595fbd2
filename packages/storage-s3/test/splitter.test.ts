// The splitter filling parts into reused buffers, without S3 (part arithmetic: multipart.test.ts).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { MiB } from '../src/multipart.js';
import { PartBuffers, splitIntoParts } from '../src/splitter.js';

/** `data` as 64 KiB chunks, like a request body. */
const body = (data: Buffer) =>
  Readable.from(Array.from({ length: Math.ceil(data.length / 65536) }, (_, i) => data.subarray(i * 65536, (i + 1) * 65536)));

test('parts fill pooled buffers, which come back once S3 holds their part', async () => {
  const buffers = new PartBuffers(16 * MiB);
  const data = randomBytes(4 * MiB + 300 * 1024);
  const seen: Buffer[] = [];
  const stored = new Map<number, Buffer>();
  const { parts, remainder } = await splitIntoParts(body(data), {
    firstPartNumber: 1,
    sizeOf: () => 2 * MiB,
    concurrency: 2,
    tooManyParts: () => new Error('too many'),
    buffers,
    upload: async (n, part) => {
      seen.push(part);
      await new Promise((r) => setTimeout(r, 20)); // both parts in flight at once
      stored.set(n, Buffer.from(part));
      return `"e${n}"`;
    },
  });
  assert.deepEqual(
    parts.map((p) => p.PartNumber),
    [1, 2],
  );
  assert.ok(Buffer.concat([stored.get(1)!, stored.get(2)!, remainder]).equals(data));
  // The 300 KiB remainder stays a list of chunks: no part-sized buffer for a few bytes.
  assert.equal(remainder.buffer.byteLength < 2 * MiB, true);
  assert.equal(buffers.idleSize, 4 * MiB, 'both part buffers are back for reuse');

  // The next split fills those same buffers.
  const again: Buffer[] = [];
  await splitIntoParts(body(randomBytes(4 * MiB)), {
    firstPartNumber: 1,
    sizeOf: () => 2 * MiB,
    concurrency: 1,
    tooManyParts: () => new Error('too many'),
    buffers,
    upload: async (_n, part) => {
      again.push(part);
      return 'x';
    },
  });
  assert.ok(
    again.every((b) => seen.some((s) => s.buffer === b.buffer)),
    'reused, not allocated',
  );
});

test('a part whose upload failed does not give its buffer back', async () => {
  const buffers = new PartBuffers(16 * MiB);
  await assert.rejects(
    splitIntoParts(body(randomBytes(4 * MiB)), {
      firstPartNumber: 1,
      sizeOf: () => 2 * MiB,
      concurrency: 2,
      tooManyParts: () => new Error('too many'),
      buffers,
      upload: async (n) => {
        await new Promise((r) => setTimeout(r, 20));
        if (n === 2) throw new Error('part 2 failed');
        return 'x';
      },
    }),
    /part 2 failed/,
  );
  assert.equal(buffers.idleSize, 2 * MiB, 'only part 1 came back');
});

test('idle buffers are bounded, and dropped once unused for a while', async () => {
  const buffers = new PartBuffers(3 * MiB, 20);
  for (const b of [buffers.take(MiB), buffers.take(MiB), buffers.take(MiB), buffers.take(MiB)]) buffers.give(b);
  assert.equal(buffers.idleSize, 3 * MiB);
  const deadline = Date.now() + 5000;
  while (buffers.idleSize > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(buffers.idleSize, 0);
});
