// The garbage collection scenario of `pnpm bench` (`--scenarios gc`): seed a registry with
// `blobs` blobs on fs + SQLite and on S3 + Postgres, then time `collectGarbage` on it in a process
// of its own (bench/gc-collect.mjs): a dry run, the collection, and a second, no-op collection.
//
// What is seeded, over `repositories` repositories shared out among `tenants` tenants:
//   kept        blobs of tagged images (a config and 10 layers each), plus 25 base layers per
//               tenant that every repository of the tenant mounts and every image uses
//   unreferenced blobs linked into a repository that no manifest references (an image deleted
//               by digest leaves these): their links and then their bytes go
//   unlinked    blob rows with no link left (a blob DELETE leaves these): their bytes go
//   orphans     bytes in the blob store that no metadata knows of (a crash before the row): they go
// Seeding is setup, not measured: bytes go straight to the blob store (fs: the store's own upload
// path without fsync; S3: one PutObject per blob at its address, which is what the store writes for
// a blob below 5 MiB: its upload path takes five requests per small blob); the rows a commit, mount
// and unlink leave (blobs, links, usage) are bulk-inserted (through the commit path, 100,000 blobs
// took ~8 min on SQLite and ~17 on Postgres here), checked by recomputeUsage; manifests go through
// putManifest, which refuses one whose blobs are not linked.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createSqlMetadataStore } from '@berthjs/metadata-sql';
import { FsBlobStore } from '@berthjs/storage-fs';

const POSTGRES_URL = process.env.BERTH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const CONFIG_TYPE = 'application/vnd.oci.image.config.v1+json';
const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar';
const BASE_LAYERS = 25;
const LAYERS_PER_IMAGE = 10;
/** Share of the blobs that tagged images keep, that are linked but unreferenced, that are unlinked rows; orphans fill the rest. */
const KEPT = 0.4;
const UNREFERENCED = 0.4;
const UNLINKED = 0.1;
/** Kept blobs read back in full (digest checked) after the collection; every one is listed. */
const READ_BACK = 500;

const sha256 = (data) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

// Blob bytes are made again from `index` when stored (one 64 KiB pool, a header naming the run
// and the blob), so the plan holds digests and sizes only.
const POOL = randomBytes(64 * 1024);
const NONCE = randomBytes(8);
let nextIndex = 0;

function bytesOf({ index, size }) {
  const header = Buffer.alloc(16);
  NONCE.copy(header);
  header.writeUInt32LE(index, 8);
  const start = Math.imul(index + 1, 2654435761) >>> 0;
  return Buffer.concat([header, POOL.subarray(start % (POOL.length - size), (start % (POOL.length - size)) + size - header.length)]);
}

/** `count` blobs of 256 B to 4 KiB: { index, digest, size }. */
function makeBlobs(count) {
  return Array.from({ length: count }, () => {
    const blob = { index: nextIndex++, size: 256 + Math.floor(Math.random() * 3841) };
    return { ...blob, digest: sha256(bytesOf(blob)) };
  });
}

/** Run `work(item)` for every item, `concurrency` at a time. */
async function eachLimit(items, concurrency, work) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** What to seed: every blob with its role, and per repository its links and images. */
export function plan({ blobs, repositories, tenants }) {
  const perRepo = (share) => Math.round((blobs * share) / repositories);
  const images = Math.max(1, Math.round((perRepo(KEPT) - (tenants * BASE_LAYERS) / repositories) / (LAYERS_PER_IMAGE + 1)));
  const base = Array.from({ length: tenants }, () => makeBlobs(BASE_LAYERS));
  const repos = Array.from({ length: repositories }, (_, r) => {
    const t = r % tenants;
    return {
      name: `t${t}/app-${r}`,
      tenant: `t${t}`,
      base: base[t],
      images: Array.from({ length: images }, () => ({ config: makeBlobs(1)[0], layers: makeBlobs(LAYERS_PER_IMAGE) })),
      unreferenced: makeBlobs(perRepo(UNREFERENCED)),
      unlinked: makeBlobs(perRepo(UNLINKED)),
    };
  });
  const kept = [...base.flat(), ...repos.flatMap((r) => r.images.flatMap((i) => [i.config, ...i.layers]))];
  const unreferenced = repos.flatMap((r) => r.unreferenced);
  const unlinked = repos.flatMap((r) => r.unlinked);
  const orphanCount = blobs - kept.length - unreferenced.length - unlinked.length;
  if (orphanCount < 0) throw new Error(`--gc-blobs ${blobs} is too few for ${repositories} repositories of ${tenants} tenants`);
  const orphans = makeBlobs(orphanCount);
  return { repos, base, kept, unreferenced, unlinked, orphans, all: [...kept, ...unreferenced, ...unlinked, ...orphans] };
}

/**
 * A fresh stack: `config` (what bench/gc-collect.mjs opens), `open()` → { blobs, metadata } with
 * the stores the collection uses, `putBytes(blobs)` for seeding, `destroy()`.
 */
export async function createStack(kind) {
  if (kind === 'fs') {
    const dir = await mkdtemp(join(tmpdir(), 'berth-bench-gc-'));
    const config = { kind, dir };
    // The store's own upload path, minus the fsyncs (setup, and the page cache is not the subject).
    const seeding = new FsBlobStore({ root: join(dir, 'blobs'), fsync: false });
    return {
      label: 'fs + SQLite',
      config,
      open: () => openStores(config),
      async putBytes(blobs, concurrency) {
        await eachLimit(blobs, concurrency, async (blob) => {
          const id = randomUUID();
          const state = await seeding.createUpload(id);
          const { state: next } = await seeding.appendUpload(id, state, 0, Readable.from([bytesOf(blob)]), blob.size, true);
          await seeding.commitUpload(id, next, blob.size, blob.digest);
        });
      },
      destroy: () => rm(dir, { recursive: true, force: true }),
    };
  }
  const { PutObjectCommand } = await import('@aws-sdk/client-s3');
  const { createBucket, deleteBucket, s3Client, s3TestEnv } = await import('@berthjs/storage-s3/testing');
  const env = s3TestEnv();
  const admin = s3Client(env);
  const bucket = await createBucket(admin, 'bench-gc');
  const config = { kind, bucket, prefix: 'gc/', schema: `berth_bench_gc_${randomBytes(4).toString('hex')}` };
  return {
    label: 'S3 + Postgres',
    config,
    open: () => openStores(config),
    async putBytes(blobs, concurrency) {
      await eachLimit(blobs, concurrency, (blob) =>
        admin.send(
          new PutObjectCommand({ Bucket: bucket, Key: `${config.prefix}blobs/sha256/${blob.digest.slice(7)}`, Body: bytesOf(blob) }),
        ),
      );
    },
    async destroy() {
      // What the collection kept, in batches (deleteBucket deletes one object per request).
      const { blobs, metadata } = await openStores(config);
      const left = [];
      for await (const stored of blobs.listBlobs()) left.push(stored);
      await blobs.delete(left);
      await blobs.close();
      await metadata.close();
      await deleteBucket(admin, bucket).catch(() => undefined);
      admin.destroy();
      dropSchema(config.schema);
    },
  };
}

function dropSchema(schema) {
  execFileSync('psql', [POSTGRES_URL, '-qc', `DROP SCHEMA IF EXISTS "${schema}" CASCADE`], { stdio: 'ignore' });
}

/** The stores of a stack, as `berth gc` would open them. */
export async function openStores(config) {
  if (config.kind === 'fs') {
    return {
      blobs: new FsBlobStore({ root: join(config.dir, 'blobs') }),
      metadata: await createSqlMetadataStore({ filename: join(config.dir, 'berth.sqlite') }),
    };
  }
  const { S3BlobStore } = await import('@berthjs/storage-s3');
  const { s3TestEnv } = await import('@berthjs/storage-s3/testing');
  const env = s3TestEnv();
  return {
    blobs: new S3BlobStore({
      bucket: config.bucket,
      prefix: config.prefix,
      endpoint: env.endpoint,
      region: env.region,
      forcePathStyle: true,
      credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
    }),
    metadata: await createSqlMetadataStore({ url: POSTGRES_URL, schema: config.schema }),
  };
}

function imageRecord(repo, image) {
  const descriptor = (mediaType, b) => ({ mediaType, digest: b.digest, size: b.size });
  const layers = [...repo.base, ...image.layers];
  const content = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor(CONFIG_TYPE, image.config),
      layers: layers.map((l) => descriptor(LAYER_TYPE, l)),
    }),
  );
  return {
    repository: repo.name,
    digest: sha256(content),
    mediaType: OCI_MANIFEST,
    content,
    artifactType: CONFIG_TYPE,
    blobs: [image.config.digest, ...layers.map((l) => l.digest)],
    children: [],
  };
}

/**
 * The rows the commit path would leave (blobs, links, usage), in one transaction: bulk inserts
 * through the store's own knex instance. Its figures are checked by recomputeUsage afterwards.
 */
async function insertRows(db, seed, now) {
  const blobs = new Map();
  const links = [];
  const tenantBlobs = new Map();
  const repositories = [];
  for (const repo of seed.repos) {
    const linked = [...repo.base, ...repo.images.flatMap((i) => [i.config, ...i.layers]), ...repo.unreferenced];
    for (const blob of [...linked, ...repo.unlinked])
      blobs.set(blob.digest, { digest: blob.digest, size: blob.size, state: 'live', run: null, touched_at: now });
    for (const blob of linked) {
      links.push({ repository: repo.name, digest: blob.digest, size: blob.size, linked_at: now });
      const key = `${repo.tenant} ${blob.digest}`;
      const held = tenantBlobs.get(key) ?? { tenant: repo.tenant, digest: blob.digest, size: blob.size, links: 0 };
      held.links++;
      tenantBlobs.set(key, held);
    }
    const bytes = linked.reduce((n, b) => n + b.size, 0);
    repositories.push({ name: repo.name, tenant: repo.tenant, created_at: now, bytes, blobs: linked.length });
  }
  const tenants = new Map();
  for (const held of tenantBlobs.values()) {
    const t = tenants.get(held.tenant) ?? { name: held.tenant, bytes: 0, blobs: 0, reserved: 0 };
    t.bytes += held.size;
    t.blobs++;
    tenants.set(held.tenant, t);
  }
  await db.transaction(async (trx) => {
    const insert = async (table, rows) => {
      for (let i = 0; i < rows.length; i += 500) await trx(table).insert(rows.slice(i, i + 500));
    };
    await insert('repositories', repositories);
    await insert('blobs', [...blobs.values()]);
    await insert('blob_links', links);
    await insert('tenant_blobs', [...tenantBlobs.values()]);
    await insert('tenants', [...tenants.values()]);
  });
}

/**
 * Seed the stack with `seed` (from `plan`): bytes (orphans too), then the rows of every blob with
 * metadata, then the manifests through putManifest (which refuses one whose blobs are not linked);
 * recomputeUsage must then find nothing to correct. Returns the seconds each step took.
 */
export async function seedStack(stack, seed, { concurrency, log }) {
  const took = {};
  const step = async (name, work) => {
    const start = performance.now();
    await work();
    took[name] = (performance.now() - start) / 1000;
    log(`  seeded ${name} in ${took[name].toFixed(1)} s`);
  };
  await step('bytes', () => stack.putBytes(seed.all, stack.config.kind === 's3' ? 4 * concurrency : concurrency));
  const { blobs, metadata } = await stack.open();
  try {
    // The knex instance behind the store (a TypeScript-private field, reachable from JavaScript).
    await step('rows', () => insertRows(metadata.db, seed, Date.now()));
    const images = seed.repos.flatMap((repo) => repo.images.map((image, i) => [repo, image, i]));
    await step('manifests', () =>
      eachLimit(images, concurrency, async ([repo, image, i]) => {
        const missing = await metadata.putManifest(imageRecord(repo, image), [`v${i}`], repo.tenant);
        if (missing.length > 0) throw new Error(`seeding: manifest in ${repo.name} misses ${missing.length} blobs`);
      }),
    );
    await step('usage check', async () => {
      const { corrections } = await metadata.recomputeUsage();
      if (corrections.length > 0) throw new Error(`seeding: usage figures off: ${JSON.stringify(corrections.slice(0, 3))}`);
    });
  } finally {
    await blobs.close?.();
    await metadata.close();
  }
  return took;
}

const collector = fileURLToPath(new URL('gc-collect.mjs', import.meta.url));

/** One collection in a process of its own (so its peak RSS is its own); the JSON gc-collect.mjs prints. */
export async function collectIn(config, options, profileDir) {
  const flags = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const child = spawn(process.execPath, [...flags, collector, JSON.stringify({ config, options })], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr = (stderr + c).slice(-4000)));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`gc-collect exited with ${code}: ${stderr}`);
  return JSON.parse(stdout);
}

/**
 * After the collection: the blob store holds exactly the kept blobs (every digest listed, nothing
 * else), a sample of them reads back whole, each tenant holds exactly its kept blobs, and nothing
 * is left to collect. Throws on any difference, so a broken run never reports figures.
 */
export async function verify(stack, seed) {
  const { blobs, metadata } = await stack.open();
  try {
    const kept = new Map(seed.kept.map((b) => [b.digest, b]));
    const listed = new Set();
    for await (const stored of blobs.listBlobs()) {
      if (!kept.has(stored.digest)) throw new Error(`verify: ${stored.digest} should have been collected`);
      listed.add(stored.digest);
    }
    if (listed.size !== kept.size) throw new Error(`verify: ${kept.size - listed.size} kept blobs are gone from the blob store`);
    const step = Math.max(1, seed.kept.length / READ_BACK);
    const sample = Array.from({ length: Math.min(READ_BACK, seed.kept.length) }, (_, i) => seed.kept[Math.floor(i * step)]);
    await eachLimit(sample, 8, async (blob) => {
      const hash = createHash('sha256');
      for await (const chunk of await blobs.read(blob.digest)) hash.update(chunk);
      if (`sha256:${hash.digest('hex')}` !== blob.digest) throw new Error(`verify: ${blob.digest} reads back different bytes`);
    });
    for (const [t, base] of seed.base.entries()) {
      const tenant = `t${t}`;
      const own = seed.repos.filter((r) => r.tenant === tenant).flatMap((r) => r.images.flatMap((i) => [i.config, ...i.layers]));
      const expected = base.length + own.length;
      const usage = await metadata.tenantUsage(tenant);
      if (usage.blobs !== expected) throw new Error(`verify: tenant ${tenant} holds ${usage.blobs} blobs, not ${expected}`);
    }
    const left = await metadata.listCollectableBlobs(Date.now(), { limit: 1 });
    if (left.length > 0) throw new Error(`verify: ${left[0].digest} is still collectable`);
    return { listed: listed.size, readBack: sample.length };
  } finally {
    await blobs.close?.();
    await metadata.close();
  }
}

const GC_METRICS = [
  { key: 'collect', label: 'collection, total (s)' },
  { key: 'uploads', label: '  lease + upload sweep (s)' },
  { key: 'repositories', label: '  repositories: unreferenced links (s)' },
  { key: 'blobs', label: '  collectable blobs: mark, delete, forget (s)' },
  { key: 'orphans', label: '  orphans: list the blob store (s)' },
  { key: 'examinedRate', label: 'blobs examined per second (seeded / total)' },
  { key: 'deletedRate', label: 'blobs deleted per second' },
  { key: 'blobsDeleted', label: 'blobs deleted' },
  { key: 'linksDeleted', label: 'links deleted' },
  { key: 'freedMB', label: 'bytes freed (MB)' },
  { key: 'cpu', label: 'collector CPU, user + system (s)' },
  { key: 'peakRss', label: 'peak RSS of the collecting process (MB)', max: true },
  { key: 'dryRun', label: 'dry run, total (s)' },
  { key: 'noop', label: 'second collection, nothing to do (s)' },
  { key: 'seed', label: 'seeding, not measured above (s)' },
];

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const fmt = (value) =>
  value === undefined ? '–' : value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(value >= 10 ? 1 : 2);

function check(what, actual, expected) {
  if (actual !== expected) throw new Error(`${what}: ${actual}, expected ${expected}`);
}

/**
 * The scenario: for each stack in `kinds` (fs, s3), `rounds` times: a fresh stack, seeded, a dry
 * run, the collection, a no-op collection, the check; returns the results section.
 */
export async function gcScenario({ kinds, rounds, blobs, repositories, tenants, concurrency, profileDir, log }) {
  const samples = {};
  const detail = {};
  const record = (kind, key, value) => ((samples[kind] ??= {})[key] ??= []).push(value);
  const labels = {};
  let counts = '';
  for (let round = 0; round < rounds; round++) {
    for (const kind of kinds) {
      log(`gc round ${round + 1}, ${kind}: seeding ${blobs.toLocaleString('en-US')} blobs`);
      const seed = plan({ blobs, repositories, tenants });
      counts = seedCounts(seed);
      const doomed = [...seed.unreferenced, ...seed.unlinked, ...seed.orphans];
      const stack = await createStack(kind);
      labels[kind] = stack.label;
      try {
        const took = await seedStack(stack, seed, { concurrency, log });
        record(
          kind,
          'seed',
          Object.values(took).reduce((a, b) => a + b, 0),
        );
        // Every push so far is older than the cutoff of a collection with no grace period.
        await new Promise((resolve) => setTimeout(resolve, 5));
        const dry = await collectIn(stack.config, { gracePeriodMs: 0, dryRun: true });
        check('dry run: blobs it would delete', dry.report.blobsDeleted, doomed.length);
        const run = await collectIn(stack.config, { gracePeriodMs: 0 }, profileDir);
        const { report } = run;
        check('blobs deleted', report.blobsDeleted, doomed.length);
        check('links deleted', report.linksDeleted, seed.unreferenced.length);
        check('manifests deleted', report.manifestsDeleted, 0);
        check(
          'bytes freed',
          report.bytesFreed,
          doomed.reduce((n, b) => n + b.size, 0),
        );
        const noop = await collectIn(stack.config, { gracePeriodMs: 0 });
        check('second collection: blobs deleted', noop.report.blobsDeleted, 0);
        const verified = await verify(stack, seed);
        const seconds = run.totalMs / 1000;
        record(kind, 'collect', seconds);
        for (const [phase, ms] of Object.entries(run.phases)) record(kind, phase, ms / 1000);
        record(kind, 'examinedRate', blobs / seconds);
        record(kind, 'deletedRate', report.blobsDeleted / seconds);
        record(kind, 'blobsDeleted', report.blobsDeleted);
        record(kind, 'linksDeleted', report.linksDeleted);
        record(kind, 'freedMB', report.bytesFreed / 1e6);
        record(kind, 'cpu', run.cpuMs / 1000);
        record(kind, 'peakRss', run.peakRss / 1e6);
        record(kind, 'dryRun', dry.totalMs / 1000);
        record(kind, 'noop', noop.totalMs / 1000);
        const calls = Object.fromEntries(
          Object.entries(run.calls)
            .sort(([, a], [, b]) => b.ms - a.ms)
            .map(([name, c]) => [name, `${c.calls} calls, ${(c.ms / 1000).toFixed(2)} s`]),
        );
        (detail[kind] ??= []).push({ seeding: took, verified, calls });
        log(
          `gc ${kind}: ${seconds.toFixed(1)} s (${Object.entries(run.phases)
            .map(([p, ms]) => `${p} ${(ms / 1000).toFixed(1)}`)
            .join(
              ', ',
            )}), dry run ${(dry.totalMs / 1000).toFixed(1)} s, no-op ${(noop.totalMs / 1000).toFixed(1)} s, peak RSS ${(run.peakRss / 1e6).toFixed(0)} MB`,
        );
      } finally {
        await stack.destroy();
      }
    }
  }
  const columns = kinds.map((k) => labels[k]);
  const rows = [['metric', ...columns]];
  for (const metric of GC_METRICS) {
    const cells = kinds.map((k) => {
      const values = samples[k]?.[metric.key];
      return fmt(values?.length ? (metric.max ? Math.max(...values) : median(values)) : undefined);
    });
    rows.push([metric.label, ...cells]);
  }
  const settings = `${rounds} round${rounds === 1 ? '' : 's'} per stack; ${blobs.toLocaleString('en-US')} blobs of 256 B–4 KiB in ${repositories} repositories of ${tenants} tenants: ${counts}; \`collectGarbage({ gracePeriodMs: 0 })\``;
  const notes = [
    'fs + SQLite: `FsBlobStore` and the SQLite file in one temp directory. S3 + Postgres: `S3BlobStore` on the local Ceph RGW (a fresh bucket) and a fresh Postgres schema on 127.0.0.1; both on the same 2 cores as the collector.',
    "Each collection runs in a process of its own (bench/gc-collect.mjs, stores opened as `berth gc` opens them), after seeding in the bench process (bytes straight into the blob store; the rows of blobs, links and usage in bulk, then every manifest through `putManifest`, then `recomputeUsage` must correct nothing). Peak RSS is that process's maxrss, the stores' client libraries included.",
    "Phases are cut where the collector first lists repositories, collectable blobs and the blob store. After every run the bench checks the report's counts and bytes against what it seeded, that the blob store lists exactly the kept blobs, that 500 of them read back with their digest, that each tenant's usage counts its kept blobs, and that nothing is left to collect.",
  ];
  return {
    title: `Garbage collection, ${blobs.toLocaleString('en-US')} blobs`,
    settings,
    rows,
    notes,
    samples: { rounds: samples, storeCalls: detail },
  };
}

/** The seeded mix, in words. */
function seedCounts(seed) {
  const n = (x) => x.toLocaleString('en-US');
  const images = seed.repos.reduce((sum, r) => sum + r.images.length, 0);
  return `${n(seed.kept.length)} kept (${n(images)} tagged images of a config and ${LAYERS_PER_IMAGE} layers, plus ${BASE_LAYERS} base layers per tenant that each of its repositories mounts), ${n(seed.unreferenced.length)} linked but unreferenced, ${n(seed.unlinked.length)} unlinked, ${n(seed.orphans.length)} orphans`;
}
