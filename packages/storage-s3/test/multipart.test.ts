// Part arithmetic and the splitter's buffered mode, without S3 (streamed parts: splitter.test.ts).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { MAX_PARTS, MAX_PART_SIZE, MiB, choosePartSize, partSizeFor } from '../src/multipart.js';
import { splitIntoParts } from '../src/splitter.js';

test('part sizes double every 1,000 parts and reach 5 TiB within 10,000 parts', () => {
  assert.equal(partSizeFor(1, 8 * MiB, true), 8 * MiB);
  assert.equal(partSizeFor(1000, 8 * MiB, true), 8 * MiB);
  assert.equal(partSizeFor(1001, 8 * MiB, true), 16 * MiB);
  assert.equal(partSizeFor(10_000, 8 * MiB, true), 4096 * MiB);
  assert.equal(partSizeFor(10_000, 64 * MiB, true), MAX_PART_SIZE);
  let total = 0;
  for (let n = 1; n <= MAX_PARTS; n++) total += partSizeFor(n, 8 * MiB, true);
  assert.ok(total >= 5 * 1024 ** 4, `capacity ${total}`);
  assert.equal(partSizeFor(9999, 8 * MiB, false), 8 * MiB);
});

test('a known length picks one part size that fits 10,000 parts', () => {
  assert.equal(choosePartSize(8 * MiB, undefined), 8 * MiB);
  assert.equal(choosePartSize(8 * MiB, 1024 * MiB), 8 * MiB);
  const big = 200 * 1024 ** 3;
  const size = choosePartSize(8 * MiB, big);
  assert.ok(size * MAX_PARTS >= big && size % MiB === 0 && size < 22 * MiB);
});

test('the splitter cuts exact parts, keeps the remainder, and bounds uploads in flight', async () => {
  const data = randomBytes(23 * 1000 + 7);
  let inflight = 0;
  let peak = 0;
  const got = new Map<number, Buffer>();
  const chunks = Array.from({ length: 50 }, (_, i) => data.subarray(i * 461, Math.min(data.length, (i + 1) * 461)));
  const { parts, remainder } = await splitIntoParts(Readable.from(chunks.filter((c) => c.length)), {
    firstPartNumber: 3,
    sizeOf: () => 1000,
    concurrency: 2,
    tooManyParts: () => new Error('too many'),
    upload: async (n, buf) => {
      peak = Math.max(peak, ++inflight);
      await new Promise((r) => setTimeout(r, 2));
      inflight--;
      got.set(n, Buffer.from(buf));
      return `"e${n}"`;
    },
  });
  assert.equal(parts.length, 23);
  assert.deepEqual(
    parts.map((p) => p.PartNumber),
    Array.from({ length: 23 }, (_, i) => i + 3),
  );
  assert.ok(peak <= 2);
  assert.ok(Buffer.concat([...parts.map((p) => got.get(p.PartNumber)!), remainder]).equals(data));
  assert.equal(remainder.length, 7);
});

test('the splitter waits for in-flight uploads before surfacing a failure', async () => {
  let settled = 0;
  const failing = splitIntoParts(Readable.from([randomBytes(5000)]), {
    firstPartNumber: 1,
    sizeOf: () => 1000,
    concurrency: 3,
    tooManyParts: () => new Error('too many'),
    upload: async (n) => {
      await new Promise((r) => setTimeout(r, n === 1 ? 1 : 20));
      settled++;
      if (n === 1) throw new Error('part 1 failed');
      return 'x';
    },
  });
  await assert.rejects(failing, /part 1 failed/);
  assert.equal(settled, 3, 'parts 2 and 3 finished before the rejection');
});

test('bytes past part 10,000 are refused', async () => {
  await assert.rejects(
    splitIntoParts(Readable.from([Buffer.alloc(10)]), {
      firstPartNumber: MAX_PARTS + 1,
      sizeOf: () => 1000,
      concurrency: 1,
      tooManyParts: () => new Error('too many'),
      upload: async () => 'x',
    }),
    /too many/,
  );
  // An empty append at that point is fine.
  const empty = await splitIntoParts(Readable.from([]), {
    firstPartNumber: MAX_PARTS + 1,
    sizeOf: () => 1000,
    concurrency: 1,
    tooManyParts: () => new Error('too many'),
    upload: async () => 'x',
  });
  assert.equal(empty.remainder.length, 0);
});
