// /readyz of `berth serve` turns 503, naming the store, when each store in turn becomes unusable
// (the blob directory goes away, Postgres or S3 is cut off behind a TCP proxy), and 200 again
// once it is back. /healthz (liveness) stays 200 throughout.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBucket, deleteBucket, requireS3, s3Client } from '@berthjs/storage-s3/testing';
import { rawRequest } from './support/client.js';
import { spawnBerth, type BerthProcess } from './support/cli.js';
import { dropSchema, POSTGRES_URL } from './support/stores.js';
import { tcpProxy, type TcpProxy } from './support/tcp-proxy.js';

async function readiness(server: BerthProcess): Promise<{ status: number; body: { status: string; failing?: string[] } }> {
  const res = await rawRequest(server.url, '/readyz');
  return { status: res.status, body: res.json() };
}

/** /readyz is 200, turns 503 naming `store` while `breakIt` holds, and 200 again after `mendIt`. */
async function assertReadinessFollows(
  server: BerthProcess,
  store: string,
  breakIt: () => Promise<void> | void,
  mendIt: () => Promise<void> | void,
) {
  const ready = await readiness(server);
  assert.deepEqual([ready.status, ready.body.status], [200, 'ready']);
  await breakIt();
  const down = await readiness(server);
  assert.equal(down.status, 503);
  assert.deepEqual(down.body.failing, [store]);
  assert.equal((await rawRequest(server.url, '/healthz')).status, 200, 'still alive');
  await sleep(50);
  const warning = server.logs.find((l) => l.msg === 'not ready');
  assert.ok(warning, 'the reason is logged');
  await mendIt();
  // The backend may take a moment to take connections again (a pool, a client's backoff).
  let back = await readiness(server);
  for (let i = 0; i < 50 && back.status !== 200; i++) {
    await sleep(100);
    back = await readiness(server);
  }
  assert.equal(back.status, 200, JSON.stringify(back.body));
  return warning;
}

describe('readiness follows the stores', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-ready-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fs: the blob directory goes away and comes back', async () => {
    const server = await spawnBerth(['--data-dir', join(dir, 'fs')]);
    try {
      const blobs = join(dir, 'fs', 'blobs');
      const warning = await assertReadinessFollows(
        server,
        'fs',
        () => rename(blobs, `${blobs}.away`),
        () => rename(`${blobs}.away`, blobs),
      );
      assert.match(JSON.stringify(warning.failing), new RegExp(`fs.*${blobs}.*ENOENT`));
    } finally {
      await server.stop();
    }
  });

  it('postgres: the database cut off, then reachable again', async () => {
    const target = new URL(POSTGRES_URL);
    const proxy = await tcpProxy(target);
    const schema = `berth_ready_${randomBytes(6).toString('hex')}`;
    const url = new URL(POSTGRES_URL);
    url.port = String(proxy.port);
    url.hostname = '127.0.0.1';
    const server = await spawnBerth(['--data-dir', join(dir, 'pg'), '--database-url', url.href, '--database-schema', schema]);
    try {
      const warning = await assertReadinessFollows(
        server,
        'postgres',
        () => proxy.cut(),
        () => proxy.restore(),
      );
      assert.match(JSON.stringify(warning.failing), /postgres/);
    } finally {
      await server.stop();
      await proxy.close();
      await dropSchema(schema);
    }
  });
});

const s3 = requireS3();
if (s3)
  describe('readiness follows S3', () => {
    const admin = s3Client(s3);
    let bucket: string;
    let proxy: TcpProxy;
    let dir: string;
    before(async () => {
      [bucket, proxy, dir] = await Promise.all([
        createBucket(admin, 'ready'),
        tcpProxy(new URL(s3.endpoint)),
        mkdtemp(join(tmpdir(), 'berth-ready-s3-')),
      ]);
    });
    after(async () => {
      await proxy?.close();
      await deleteBucket(admin, bucket).catch(() => undefined);
      admin.destroy();
      await rm(dir, { recursive: true, force: true });
    });

    it('s3: the gateway cut off, then reachable again', async () => {
      const server = await spawnBerth(
        ['--data-dir', dir, '--s3-bucket', bucket, '--s3-endpoint', proxy.url, '--s3-force-path-style', '--s3-region', s3.region],
        { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
      );
      try {
        await assertReadinessFollows(
          server,
          's3',
          () => proxy.cut(),
          () => proxy.restore(),
        );
      } finally {
        await server.stop();
      }
    });
  });
