// What the BlobReadStream tests share: a file with given content, and a stream read to the end.
import type { TestContext } from 'node:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

/** A file holding `content` in a directory removed after the test. */
export async function withFile(t: TestContext, content: Buffer): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-blob-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'blob');
  await writeFile(path, content);
  return path;
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
