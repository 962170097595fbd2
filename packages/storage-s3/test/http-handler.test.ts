// The SDK's transport on undici (src/http-handler.ts), against a local HTTP server that plays a
// misbehaving gateway: no S3 needed, so these run everywhere.
import assert from 'node:assert/strict';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { UnavailableError } from '@berthjs/core';
import { Bucket } from '../src/bucket.js';
import { type S3BlobStoreOptions, clientConfig } from '../src/options.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('the undici transport', { timeout: 30_000 }, () => {
  let server: Server;
  let endpoint: string;
  let handler: Handler = (_req, res) => res.end();
  const sockets = new Set<import('node:net').Socket>();

  before(async () => {
    server = createServer((req, res) => handler(req, res));
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  function bucketWith(options: Partial<S3BlobStoreOptions> = {}): { bucket: Bucket; client: S3Client } {
    const client = new S3Client({
      ...clientConfig({ bucket: 'b', endpoint, forcePathStyle: true, maxAttempts: 1, ...options }),
      credentials: { accessKeyId: 'k', secretAccessKey: 's' },
    });
    return { bucket: new Bucket(client, 'b', 's3'), client };
  }

  it('sends the SDK’s path, query and headers as the SDK built them', async () => {
    const seen: { url?: string; headers?: IncomingMessage['headers']; body?: string } = {};
    handler = (req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        Object.assign(seen, { url: req.url, headers: req.headers, body });
        res.setHeader('etag', '"e"');
        res.end();
      });
    };
    const { bucket, client } = bucketWith();
    try {
      await bucket.put('blobs/sha256/a b+c', Buffer.from('hello'), { metadata: { 'berth-size': '5' }, ifNoneMatch: true });
      assert.equal(seen.url, '/b/blobs/sha256/a%20b%2Bc?x-id=PutObject');
      assert.equal(seen.body, 'hello');
      assert.equal(seen.headers?.['content-length'], '5');
      assert.equal(seen.headers?.['if-none-match'], '*');
      assert.equal(seen.headers?.['x-amz-meta-berth-size'], '5');
      assert.match(String(seen.headers?.authorization), /^AWS4-HMAC-SHA256 /);
    } finally {
      client.destroy();
    }
  });

  it('frees the connection of a body destroyed half-read', async () => {
    // The server never finishes a body: only destroying it can give the one socket back.
    handler = (_req, res) => {
      res.writeHead(200, { 'content-length': String(1 << 30) });
      res.write(Buffer.alloc(64 * 1024));
    };
    const { bucket, client } = bucketWith({ maxSockets: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        const body = await bucket.get('k');
        for await (const _ of body) break; // one chunk, then destroyed
        assert.equal(body.destroyed, true);
      }
    } finally {
      client.destroy();
    }
  });

  it('times out a gateway that never answers, as UnavailableError', async () => {
    handler = () => {};
    const { bucket, client } = bucketWith({ requestTimeoutMs: 200 });
    try {
      const started = Date.now();
      await assert.rejects(bucket.head('k'), (error: Error) => error instanceof UnavailableError && /TimeoutError/.test(error.message));
      assert.ok(Date.now() - started < 5_000);
    } finally {
      client.destroy();
    }
  });

  it('fails a body that stops arriving, after socketTimeoutMs', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('x'.repeat(10));
    };
    const { bucket, client } = bucketWith({ socketTimeoutMs: 200 });
    try {
      const body = await bucket.get('k');
      const started = Date.now();
      await assert.rejects(
        (async () => {
          for await (const _ of body);
        })(),
        { code: 'UND_ERR_BODY_TIMEOUT' },
      );
      assert.ok(Date.now() - started < 5_000);
    } finally {
      client.destroy();
    }
  });

  it('has the SDK retry a connection the gateway resets, like node:http’s ECONNRESET', async () => {
    let attempts = 0;
    handler = (req) => {
      attempts++;
      req.socket.destroy();
    };
    const { bucket, client } = bucketWith({ maxAttempts: 3 });
    try {
      await assert.rejects(bucket.head('k'), UnavailableError);
      assert.equal(attempts, 3);
    } finally {
      client.destroy();
    }
  });
});
