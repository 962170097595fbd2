// The S3 targets of `pnpm bench`: Berth on S3 + Postgres (`berth serve`), Distribution on the same
// gateway (its s3 driver), and the gateway itself: presigned PUT/GET of the same blobs from the
// same client (undici, one connection per transfer, pieces streamed, pulls hashed). All three
// share one bucket of the bench's own, each under its own prefix.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { createBucket, deleteBucket, emptyBucket, s3Client, s3TestEnv } from '@berthjs/storage-s3/testing';
import { pieces } from './data.mjs';
import { pullRun, pushChunked, pushMonolithic, timed } from './load.mjs';
import { distributionConfig, freePort, spawnServer, waitUntilServing } from './servers.mjs';

const POSTGRES_URL = process.env.BERTH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** Where start-rgw.sh keeps its pid files (its DIR argument). */
const RGW_DIR = process.env.RGW_DIR ?? '/tmp/berth-rgw';

/** The gateway, or undefined when S3_ENDPOINT is not set. */
export const s3Env = s3TestEnv;

/** Processes of the gateway (radosgw, ceph-osd, ceph-mon), from start-rgw.sh's pid files. */
async function gatewayPids() {
  const dir = join(RGW_DIR, 'run');
  const files = (await readdir(dir).catch(() => [])).filter((f) => f.endsWith('.pid'));
  const pids = await Promise.all(files.map(async (f) => Number((await readFile(join(dir, f), 'utf8')).trim())));
  return [...new Set(pids.filter((pid) => pid > 0))];
}

/**
 * Start the S3 targets named in `kinds` (berth, distribution, raw). Each has `kind`, `pids()`
 * (registry processes; none for raw), `push(blobs, chunkSize)` → seconds,
 * `pull(blobs, threads)` → seconds, `drop()` (delete what it stored). `close()` stops them all
 * and deletes the bucket and the Postgres schema.
 */
export async function startS3Targets(kinds, { repo, profileDir }) {
  const env = s3TestEnv();
  const admin = s3Client(env);
  const bucket = await createBucket(admin, 'bench');
  const schema = `berth_bench_${randomBytes(4).toString('hex')}`;
  const targets = [];
  const stops = [];
  const close = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await deleteBucket(admin, bucket).catch(() => undefined);
    admin.destroy();
  };
  try {
    for (const kind of kinds) {
      const prefix = `${kind}/`;
      const drop = () => emptyBucket(admin, bucket, prefix);
      if (kind === 'raw') {
        targets.push(rawTarget(admin, env, bucket, prefix, drop));
        continue;
      }
      const server =
        kind === 'berth' ? await startBerth(env, bucket, prefix, schema, profileDir) : await startDistribution(env, bucket, prefix);
      stops.push(server.stop);
      targets.push({
        kind,
        base: server.base,
        pids: server.pids,
        push: (blobs, chunkSize) =>
          timed(server.base, blobs.length, (client, i) =>
            chunkSize ? pushChunked(client, server.base, repo, blobs[i], chunkSize) : pushMonolithic(client, server.base, repo, blobs[i]),
          ),
        pull: async (blobs, threads) => (await pullRun(server.base, repo, blobs, threads)).seconds,
        drop,
      });
    }
    stops.push(async () => execFileSync('psql', [POSTGRES_URL, '-qc', `DROP SCHEMA IF EXISTS "${schema}" CASCADE`], { stdio: 'ignore' }));
  } catch (error) {
    await close();
    throw error;
  }
  return { targets, gatewayPids, close };
}

/** The gateway itself: one presigned PUT (GET) per blob, signed before the clock starts. */
function rawTarget(admin, env, bucket, prefix, drop) {
  const origin = new URL(env.endpoint).origin;
  const sign = async (Command, blob) => {
    const url = new URL(await getSignedUrl(admin, new Command({ Bucket: bucket, Key: `${prefix}${blob.seed}` }), { expiresIn: 3600 }));
    return url.pathname + url.search;
  };
  return {
    kind: 'raw',
    pids: () => [],
    async push(blobs) {
      const paths = await Promise.all(blobs.map((blob) => sign(PutObjectCommand, blob)));
      return timed(origin, blobs.length, async (client, i) => {
        const res = await client.request({
          method: 'PUT',
          path: paths[i],
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(blobs[i].size) },
          body: pieces(blobs[i].seed, 0, blobs[i].size),
        });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`raw PUT: HTTP ${res.statusCode} ${text.slice(0, 300)}`);
      });
    },
    async pull(blobs, threads) {
      const paths = new Map(await Promise.all(blobs.map(async (blob) => [blob.seed, await sign(GetObjectCommand, blob)])));
      return (await pullRun(origin, undefined, blobs, threads, (blob) => paths.get(blob.seed))).seconds;
    },
    drop,
  };
}

async function startBerth(env, bucket, prefix, schema, profileDir) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const nodeFlags = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const args = ['serve', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'silent', '--database-url', POSTGRES_URL];
  const s3 = [
    '--s3-bucket',
    bucket,
    '--s3-endpoint',
    env.endpoint,
    '--s3-region',
    env.region,
    '--s3-force-path-style',
    '--s3-prefix',
    prefix,
  ];
  const proc = spawnServer(process.execPath, [...nodeFlags, 'packages/cli/dist/bin.cjs', ...args, ...s3], {
    env: {
      ...process.env,
      BERTH_DATABASE_SCHEMA: schema,
      AWS_ACCESS_KEY_ID: env.accessKeyId,
      AWS_SECRET_ACCESS_KEY: env.secretAccessKey,
    },
  });
  return running(proc, base);
}

async function startDistribution(env, bucket, prefix) {
  const dir = await mkdtemp(join(tmpdir(), 'berth-bench-distribution-s3-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const config = join(dir, 'config.yml');
  // The same footing as Berth: blobs served through the registry (no redirects to S3), default
  // s3 driver settings (10 MiB chunks).
  const s3 = [
    '  s3:',
    `    accesskey: ${env.accessKeyId}`,
    `    secretkey: ${env.secretAccessKey}`,
    `    region: ${env.region}`,
    `    regionendpoint: ${env.endpoint}`,
    `    bucket: ${bucket}`,
    `    secure: ${env.endpoint.startsWith('https:')}`,
    '    v4auth: true',
    `    rootdirectory: /${prefix}`,
    '  redirect:',
    '    disable: true',
  ];
  await writeFile(config, distributionConfig(port, s3));
  // Its AWS SDK refuses to start with AWS_CA_BUNDLE set (a custom bundle needs its own transport).
  const { AWS_CA_BUNDLE: _, ...childEnv } = process.env;
  const proc = spawnServer('docker-registry', ['serve', config], { env: childEnv });
  return running(proc, base, () => rm(dir, { recursive: true, force: true }));
}

/** A server once it answers: its `base`, `pids()` and `stop()` (then `cleanup`). */
async function running(proc, base, cleanup = async () => {}) {
  await waitUntilServing(base, proc.child, proc.stderr);
  return {
    base,
    pids: () => [proc.child.pid],
    async stop() {
      if (proc.child.exitCode === null) proc.child.kill('SIGTERM');
      await proc.exited;
      await cleanup();
    },
  };
}
