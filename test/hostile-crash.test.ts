// A body that announces more bytes than it sends and then closes the connection used to kill the
// process (an unhandled 'error' on the core's hashing stream). Run against `berth serve` itself,
// on fs + SQLite and on S3 + Postgres, since that is what a stranger on the network reaches; and
// what it logs for such clients (an abort, not a failure) and for a too-large manifest.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBucket, deleteBucket, requireS3, s3Client, type S3TestEnv } from '@berthjs/storage-s3/testing';
import { s3ServeEnv, spawnBerth, type BerthProcess } from './support/cli.js';
import { TestClient, randomBlob, sha256 } from './support/client.js';
import { cutRequest, head, openRaw } from './support/hostile.js';
import { dropSchema, POSTGRES_URL } from './support/stores.js';

const OCTETS = { 'Content-Type': 'application/octet-stream' };

function describeCrash(name: string, start: () => Promise<{ berth: BerthProcess; cleanup(): Promise<void> }>) {
  describe(`hostile clients: bodies cut short (berth serve, ${name})`, () => {
    let berth: BerthProcess;
    let cleanup: () => Promise<void>;
    let client: TestClient;

    before(async () => {
      ({ berth, cleanup } = await start());
      client = new TestClient(berth.url);
    });
    after(async () => {
      await berth?.stop();
      await cleanup?.();
    });

    async function alive(): Promise<void> {
      // Give the server a moment to trip over the cut request before asking.
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(berth.child.exitCode, null, 'the server process died');
      const res = await client.req('/v2/');
      assert.equal(res.status, 200);
    }

    /** The request log lines for `path`, and whether anything was logged as a failure. */
    function logsOf(path: string) {
      const lines = berth.logs.filter((l) => typeof l.url === 'string' && l.url.startsWith(path));
      return { statuses: lines.map((l) => l.status).filter(Boolean), failures: lines.filter((l) => l.msg === 'request failed') };
    }

    it('a PATCH cut short leaves the process up and the session at its last good offset', async () => {
      const start = await client.req('/v2/cut/patch/blobs/uploads/', { method: 'POST' });
      const location = start.header('location')!;
      const first = randomBlob(1000);
      const ok = await client.req(location, { method: 'PATCH', body: first, headers: OCTETS });
      assert.equal(ok.status, 202);
      for (let i = 0; i < 5; i++) {
        await cutRequest(berth.url, head(`PATCH ${location}`, { ...OCTETS, 'Content-Length': 1000000 }), randomBlob(10 * i));
      }
      await alive();
      const status = await client.req(location);
      assert.equal(status.status, 204);
      assert.equal(status.header('range'), '0-999');
    });

    it('a closing PUT cut short stores nothing under the digest', async () => {
      const blob = randomBlob(5000);
      const digest = sha256(blob);
      const start = await client.req('/v2/cut/put/blobs/uploads/', { method: 'POST' });
      const location = start.header('location')!;
      await cutRequest(
        berth.url,
        head(`PUT ${location}?digest=${digest}`, { ...OCTETS, 'Content-Length': blob.length }),
        blob.subarray(0, 100),
      );
      await alive();
      assert.equal((await client.req(`/v2/cut/put/blobs/${digest}`, { method: 'HEAD' })).status, 404);
      assert.equal((await client.req(location)).header('range'), '0-0');
    });

    it('a monolithic POST cut short stores nothing under the digest', async () => {
      const blob = randomBlob(5000);
      const digest = sha256(blob);
      await cutRequest(
        berth.url,
        head(`POST /v2/cut/post/blobs/uploads/?digest=${digest}`, { ...OCTETS, 'Content-Length': blob.length }),
        blob.subarray(0, 100),
      );
      await alive();
      assert.equal((await client.req(`/v2/cut/post/blobs/${digest}`, { method: 'HEAD' })).status, 404);
    });

    it('a manifest PUT cut short leaves the process up and is logged as an abort (499), not a failure', async () => {
      const headers = { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', 'Content-Length': 1000 };
      await cutRequest(berth.url, head('PUT /v2/cut/manifest/manifests/latest', headers), Buffer.from('{"schemaVersion":'));
      await alive();
      assert.equal((await client.req('/v2/cut/manifest/manifests/latest')).status, 404);
      const { statuses, failures } = logsOf('/v2/cut/manifest/manifests/latest');
      assert.deepEqual(failures, []);
      assert.equal(statuses[0], 499);
    });

    it('a too-large manifest sent with Connection: close gets its 413, not a reset', async () => {
      const body = Buffer.alloc(5 << 20, 0x20);
      for (let i = 0; i < 5; i++) {
        const request = head('PUT /v2/big/app/manifests/v1', {
          'Content-Type': 'application/vnd.oci.image.manifest.v1+json',
          'Content-Length': body.length,
          Connection: 'close',
        });
        const exchange = openRaw(berth.url, request, body);
        const { status, error } = await exchange.done;
        assert.equal(status, 413, `round ${i}: ${error ?? 'no status'}`);
        assert.equal(error, undefined, `round ${i}: the connection was reset after the 413`);
      }
    });
  });
}

describeCrash('fs + sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-hostile-'));
  return { berth: await spawnBerth(['--data-dir', dir]), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

const s3 = requireS3();
if (s3) describeCrash('s3 + postgres', () => onS3(s3));

async function onS3(env: S3TestEnv) {
  const admin = s3Client(env);
  const bucket = await createBucket(admin, 'hostile');
  const schema = `berth_hostile_${randomBytes(5).toString('hex')}`;
  const berth = await spawnBerth(['--database-url', POSTGRES_URL], s3ServeEnv(env, bucket, schema));
  return {
    berth,
    async cleanup() {
      await deleteBucket(admin, bucket);
      await dropSchema(schema);
      admin.destroy();
    },
  };
}
