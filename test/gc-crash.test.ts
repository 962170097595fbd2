// `berth gc` as separate processes on fs + SQLite and S3 + Postgres, configured like `berth serve`:
// a collection killed with SIGKILL in the middle of deleting is completed by the next run, and
// two collecting at once do no harm (one runs, the other finds the lease taken or nothing left).
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRegistry, type BlobStore, type Registry } from '@berthjs/core';
import { createSqlMetadataStore, type SqlMetadataStore } from '@berthjs/metadata-sql';
import { FsBlobStore } from '@berthjs/storage-fs';
import { S3BlobStore } from '@berthjs/storage-s3';
import { createBucket, deleteBucket, requireS3, s3Client, type S3TestEnv } from '@berthjs/storage-s3/testing';
import { Readable } from 'node:stream';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { linkBlob } from '@berthjs/testkit';
import { assertError, OCI_MANIFEST, sha256, TestClient } from './support/client.js';
import { spawnBerth } from './support/cli.js';
import { dropSchema, POSTGRES_URL } from './support/stores.js';

const root = fileURLToPath(new URL('..', import.meta.url));

interface Stack {
  /** The flags (and environment) `berth serve` would be given. */
  args: string[];
  env: NodeJS.ProcessEnv;
  open(): Promise<{ blobs: BlobStore; metadata: SqlMetadataStore }>;
  destroy(): Promise<void>;
  /** Store a small blob's bytes quickly (S3: straight to its inline address, as the layout in the README has it). */
  put?(data: Buffer): Promise<void>;
  garbage: number;
}

async function fsSqlite(): Promise<Stack> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-gc-crash-'));
  return {
    args: ['--data-dir', dir],
    env: {},
    open: async () => ({
      blobs: new FsBlobStore({ root: join(dir, 'blobs'), fsync: false }),
      metadata: await createSqlMetadataStore({ filename: join(dir, 'berth.sqlite') }),
    }),
    destroy: () => rm(dir, { recursive: true, force: true }),
    garbage: 1500,
  };
}

async function s3Postgres(env: S3TestEnv): Promise<Stack> {
  const admin = s3Client(env);
  const bucket = await createBucket(admin, 'gc-crash');
  const schema = `berth_gc_crash_${randomBytes(6).toString('hex')}`;
  const s3 = { bucket, endpoint: env.endpoint, region: env.region, forcePathStyle: true };
  return {
    args: [
      '--s3-bucket',
      bucket,
      '--s3-endpoint',
      env.endpoint,
      '--s3-region',
      env.region,
      '--s3-force-path-style',
      '--database-url',
      POSTGRES_URL,
      '--database-schema',
      schema,
    ],
    env: { AWS_ACCESS_KEY_ID: env.accessKeyId, AWS_SECRET_ACCESS_KEY: env.secretAccessKey },
    open: async () => ({
      blobs: new S3BlobStore({ ...s3, credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey } }),
      metadata: await createSqlMetadataStore({ url: POSTGRES_URL, schema }),
    }),
    async destroy() {
      await deleteBucket(admin, bucket);
      await dropSchema(schema);
      admin.destroy();
    },
    put: async (data) => {
      await admin.send(new PutObjectCommand({ Bucket: bucket, Key: `blobs/sha256/${sha256(data).slice(7)}`, Body: data }));
    },
    garbage: 600,
  };
}

interface Run {
  code: Promise<number | null>;
  stdout: () => string;
  kill(): void;
}

/** Runs not ended yet: a test that fails or times out must not leave one collecting under the next test. */
const running = new Set<ChildProcess>();
const killRunning = () => {
  for (const child of running) child.kill('SIGKILL');
};

/** `berth gc <args>` from the sources; `onStderr` sees its progress as it comes. */
function berthGc(args: string[], env: NodeJS.ProcessEnv, onStderr?: (text: string, run: Run) => void): Run {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'packages/cli/src/bin.cts', 'gc', ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  const run: Run = {
    code: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    stdout: () => stdout,
    kill: () => child.kill('SIGKILL'),
  };
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
    onStderr?.(stderr, run);
  });
  return run;
}

const stacks: [string, () => Promise<Stack>][] = [['fs + SQLite', fsSqlite]];
const s3 = requireS3();
if (s3) stacks.push(['S3 + Postgres', () => s3Postgres(s3)]);

for (const [name, makeStack] of stacks) {
  describe(`berth gc processes on ${name}`, () => {
    let stack: Stack;
    let registry: Registry;
    let metadata: SqlMetadataStore;
    let blobs: BlobStore;
    const kept = { config: Buffer.from('{"kept":true}'), layer: randomBytes(5000) };

    before(async () => {
      stack = await makeStack();
      ({ blobs, metadata } = await stack.open());
      registry = createRegistry({ blobs, metadata, tenantOf: (r) => r.split('/')[0] });
    });
    afterEach(killRunning);
    after(async () => {
      await registry?.close();
      await stack?.destroy();
    });

    /** A kept image, and `stack.garbage` small blobs stored and linked, then unlinked: all collectable. */
    async function seed(label: string): Promise<string[]> {
      const digests: string[] = [];
      const put = async (data: Buffer) => {
        if (stack.put) return stack.put(data);
        const id = randomBytes(8).toString('hex');
        let state = await blobs.createUpload(id);
        ({ state } = await blobs.appendUpload(id, state, 0, Readable.from([data]), data.length));
        await blobs.commitUpload(id, state, data.length, sha256(data));
      };
      for (let i = 0; i < stack.garbage; i += 50) {
        await Promise.all(
          Array.from({ length: Math.min(50, stack.garbage - i) }, async (_, j) => {
            const data = Buffer.from(`${label} garbage ${i + j}`);
            await put(data);
            await linkBlob(metadata, `junk/${label}`, sha256(data), data.length, 'junk');
            digests.push(sha256(data));
          }),
        );
      }
      // One transaction for all of them (what a collection does), not one per link.
      await metadata.deleteUnreferencedLinks(`junk/${label}`, digests, Date.now() + 1);
      for (const data of [kept.config, kept.layer]) {
        await put(data);
        await linkBlob(metadata, 'team/app', sha256(data), data.length, 'team');
      }
      const manifest = {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(kept.config), size: kept.config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(kept.layer), size: kept.layer.length }],
      };
      const content = Buffer.from(JSON.stringify(manifest));
      const missing = await metadata.putManifest(
        {
          repository: 'team/app',
          digest: sha256(content),
          mediaType: OCI_MANIFEST,
          content,
          blobs: [sha256(kept.config), sha256(kept.layer)],
          children: [],
        },
        ['latest'],
        'team',
      );
      assert.deepEqual(missing, []);
      await sleep(5);
      return digests;
    }

    async function storedOf(digests: string[]): Promise<number> {
      let n = 0;
      for (const digest of digests) if (await blobs.stat(digest)) n++;
      return n;
    }

    async function assertKeptIntact() {
      for (const data of [kept.config, kept.layer]) {
        assert.deepEqual(await metadata.getBlob('team/app', sha256(data)), { size: data.length });
        const chunks: Buffer[] = [];
        for await (const c of await blobs.read(sha256(data))) chunks.push(c as Buffer);
        assert.ok(Buffer.concat(chunks).equals(data), 'the kept image keeps its bytes');
      }
      assert.ok(await metadata.resolveTag('team/app', 'latest'));
    }

    it('a collection killed with SIGKILL midway is completed by the next run', { timeout: 240_000 }, async () => {
      const garbage = await seed('killed');
      let killedAt = '';
      const first = berthGc([...stack.args, '--grace-period', '0', '--gc-lease', '2s'], stack.env, (stderr, run) => {
        // Killed as soon as it reports its first batch of deletions.
        if (!killedAt && /blobs \d+, manifests deleted \d+, blobs deleted [1-9]/.test(stderr)) {
          killedAt = stderr.slice(stderr.lastIndexOf('berth gc:'));
          run.kill();
        }
      });
      assert.equal(await first.code, null, 'killed');
      assert.ok(killedAt, 'it was killed while deleting');
      const left = await storedOf(garbage);
      assert.ok(left > 0 && left < stack.garbage, `killed midway (${killedAt.trim()}): ${left} of ${stack.garbage} blobs left`);

      // The dead run's lease runs out (2 s); the next run takes over and finishes.
      await sleep(2500);
      const second = berthGc([...stack.args, '--grace-period', '0', '--json'], stack.env);
      assert.equal(await second.code, 0);
      const report = JSON.parse(second.stdout());
      assert.equal(report.blobsDeleted, left, 'the next run deletes what was left, blobs marked by the dead run included');
      assert.equal(await storedOf(garbage), 0);
      assert.deepEqual(await metadata.listCollectableBlobs(Date.now()), [], 'no blob row is left marked');
      await assertKeptIntact();
    });

    it('two replicas collecting at once do no harm', { timeout: 240_000 }, async () => {
      const garbage = await seed('replicas');
      const runs = [0, 1].map(() => berthGc([...stack.args, '--grace-period', '0', '--json'], stack.env));
      const codes = await Promise.all(runs.map((r) => r.code));
      for (const code of codes) assert.ok(code === 0 || code === 3, `exit ${code}`); // 3: the lease was taken
      const reports = runs.filter((_, i) => codes[i] === 0).map((r) => JSON.parse(r.stdout()));
      assert.equal(
        reports.reduce((sum, r) => sum + r.blobsDeleted, 0),
        stack.garbage,
        'every blob deleted once',
      );
      assert.equal(await storedOf(garbage), 0);
      await assertKeptIntact();
    });
  });
}

describe('berth serve collects on a schedule and enforces --quota', () => {
  it('--gc-interval deletes an unreferenced blob; --quota refuses a push past it', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-gc-serve-'));
    const server = await spawnBerth([
      '--data-dir',
      dir,
      '--gc-interval',
      '1s',
      '--gc-grace-period',
      '0',
      '--quota',
      '4KiB',
      '--log-level',
      'info',
    ]);
    try {
      const client = new TestClient(server.url);
      const big = randomBytes(5000);
      const refused = await client.req(`/v2/team/app/blobs/uploads/?digest=${sha256(big)}`, { method: 'POST', body: big });
      assertError(refused, 403, 'DENIED');
      assert.match(refused.text, /quota exceeded: tenant \\"team\\" stores 0 bytes of its 4\.0 KiB/);
      const small = randomBytes(1000);
      await client.pushBlob('team/app', small);
      assert.equal((await client.req(`/v2/team/app/blobs/${sha256(small)}`, { method: 'HEAD' })).status, 200);
      // The link goes first (the blob leaves the repository: 404), its bytes in the same or the next
      // run, whose report is logged when that run ends.
      const collected = () => server.logs.some((l) => l.msg === 'garbage collected' && Number(l.blobsDeleted) >= 1);
      const deadline = Date.now() + 30_000;
      while ((await client.req(`/v2/team/app/blobs/${sha256(small)}`, { method: 'HEAD' })).status !== 404 || !collected()) {
        assert.ok(Date.now() < deadline, 'a scheduled collection deleted the unreferenced blob and logged it');
        await sleep(200);
      }
    } finally {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
