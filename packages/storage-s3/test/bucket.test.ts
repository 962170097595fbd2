// The one door to S3, without S3: a fake client answers every call, so these run everywhere.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { NotFoundError, StoreError, UnavailableError } from '@berthjs/core';
import { Bucket } from '../src/bucket.js';
import { S3BlobStore } from '../src/index.js';

/** An SDK-shaped failure: what the client throws for an HTTP error answer. */
function sdkError(name: string, status: number): Error {
  return Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
}

/** A client whose every call goes to `answer(command name, input)`. */
function fakeClient(answer: (command: string, input: Record<string, unknown>) => unknown): S3Client {
  const client = {
    config: {},
    send: async (command: { constructor: { name: string }; input: Record<string, unknown> }) => {
      const out = answer(command.constructor.name, command.input);
      if (out instanceof Error) throw out;
      return out;
    },
    destroy() {},
  };
  return client as unknown as S3Client;
}

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('Bucket', () => {
  it('is the only module that sends SDK commands', () => {
    const src = new URL('../src/', import.meta.url);
    const senders = readdirSync(src)
      .filter((name) => name.endsWith('.ts') && name !== 'testing.ts')
      .filter((name) => /\.send\(|getSignedUrl\(/.test(readFileSync(new URL(name, src), 'utf8')));
    assert.deepEqual(senders, ['bucket.ts']);
  });

  it('maps every failure once: missing → NotFoundError, unreachable or 5xx → UnavailableError, other 4xx → StoreError', async () => {
    const cases: [Error, new (...args: never[]) => Error][] = [
      [sdkError('NoSuchKey', 404), NotFoundError],
      [sdkError('InternalError', 503), UnavailableError],
      [sdkError('SlowDown', 429), UnavailableError],
      [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), UnavailableError],
      [sdkError('InvalidPart', 400), StoreError],
    ];
    for (const [failure, expected] of cases) {
      const bucket = new Bucket(
        fakeClient(() => failure),
        'b',
        's3',
      );
      for (const call of [
        () => bucket.get('k'),
        () => bucket.put('k', Buffer.from('x')),
        () => bucket.uploadPart('k', 'u', 1, Buffer.from('x')),
        () => bucket.completeMultipart('k', 'u', []),
        () => bucket.list('p').next(),
      ]) {
        await assert.rejects(call(), (error: Error) => error instanceof expected && error.message.startsWith('s3: '));
      }
    }
  });

  it('maps a failed pointer write like every other call', async () => {
    // A one-part blob: the commit completes the upload, then writes the pointer, which fails.
    const store = new S3BlobStore({
      bucket: 'b',
      partSize: 5 * 1024 * 1024,
      client: fakeClient((command) => {
        if (command === 'HeadObjectCommand') return sdkError('NotFound', 404);
        if (command === 'PutObjectCommand') return sdkError('ServiceUnavailable', 503);
        return {};
      }),
    });
    const state = {
      v: 1,
      key: 'data/id1/abc',
      uploadId: 'u',
      partSize: 5 * 1024 * 1024,
      grow: true,
      parts: [{ PartNumber: 1, ETag: '"e"', size: 5 * 1024 * 1024 }],
    };
    await assert.rejects(store.commitUpload('id1', state, 5 * 1024 * 1024, DIGEST), UnavailableError);
  });

  it('signs part and object bodies only when asked to', async () => {
    for (const signPayload of [false, true]) {
      const stacks: string[][] = [];
      const client = {
        send: async (command: { middlewareStack: { identify(): string[] } }) => {
          stacks.push(command.middlewareStack.identify());
          return { ETag: '"e"' };
        },
      } as unknown as S3Client;
      const bucket = new Bucket(client, 'b', 's3', signPayload);
      await bucket.uploadPart('k', 'u', 1, Buffer.from('x'));
      await bucket.put('k', Buffer.from('x'));
      for (const stack of stacks)
        assert.equal(
          stack.some((m) => m.startsWith('berthUnsignedPayload')),
          !signPayload,
        );
    }
  });

  it('hands out bodies that already have an error listener', async () => {
    const body = new PassThrough();
    const bucket = new Bucket(
      fakeClient(() => ({ Body: body })),
      'b',
      's3',
    );
    const got = await bucket.get('k');
    // With no listener, emitting 'error' throws (and would crash a process from a socket callback).
    assert.doesNotThrow(() => got.emit('error', new Error('socket reset before anyone read')));
  });
});
