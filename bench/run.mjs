#!/usr/bin/env node
// `pnpm bench`: Berth (built CLI, fs + SQLite), Berth as a 2-process node:cluster, and Debian's
// docker-registry (CNCF Distribution 2.8, filesystem storage), all on loopback, driven by the
// same load generator. Each scenario runs in rounds, alternating the servers inside each round
// (A B C A B C ...), so slow drift (page cache, thermal, disk writeback) hits all of them alike.
// Figures are medians over rounds; peak RSS is the maximum seen during the push runs.
//
// The S3 scenario (bench/s3.mjs) runs when S3_ENDPOINT is set: Berth on S3 + Postgres, Distribution
// on the same gateway and the gateway itself (presigned PUT/GET), alternating in the same way.
//
// The hostile soak (bench/soak.mjs) runs normal and hostile clients together against Berth and
// Distribution in turn, sampling their memory.
//
// The garbage collection scenario (bench/gc.mjs) seeds 100,000 blobs on fs + SQLite and (when
// S3_ENDPOINT is set) on S3 + Postgres, and times registry.collectGarbage() over them.
//
// Options: --scenarios push,chunked,pull,requests,s3,soak,gc  --rounds 5  --blob-mib 256  --concurrency 4  --chunk-mib 8  --seconds 8
//          --connections 64  --pull-threads <cores>  --servers berth,distribution,cluster  --profile  --out <file>|-
//          --s3-servers berth,distribution,raw  --s3-blob-mib 64  --s3-big-mib 256  --s3-concurrency 4
//          --s3-cases s3Push4,s3Chunked4,s3Push1  --soak-seconds 180  --soak-manifests 2000  --soak-servers berth,distribution
//          --gc-blobs 100000  --gc-repositories 400  --gc-tenants 4  --gc-stacks fs,s3  --gc-rounds 1  --gc-concurrency 8
// --profile starts Berth with --cpu-prof and leaves .cpuprofile files in bench/profiles/.
import { execFileSync } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { headRate } from './head.mjs';
import { MiB, newBlob } from './data.mjs';
import { MANIFEST_ACCEPT, pullRun, pushRun, pushSmallImage, rate } from './load.mjs';
import { S3_METRICS, machine, markdown, printTable, s3TableRows, summarize, tableRows } from './report.mjs';
import { s3Env, startS3Targets } from './s3.mjs';
import { gcScenario } from './gc.mjs';
import { soakScenario } from './soak.mjs';
import { cpuSeconds, sampleRss, startServer } from './servers.mjs';

const { values: opts } = parseArgs({
  // `pnpm bench -- --rounds 5` hands the `--` through.
  args: process.argv.slice(2).filter((arg, i) => !(i === 0 && arg === '--')),
  options: {
    rounds: { type: 'string', default: '5' },
    'blob-mib': { type: 'string', default: '256' },
    concurrency: { type: 'string', default: '4' },
    'chunk-mib': { type: 'string', default: '8' },
    seconds: { type: 'string', default: '8' },
    connections: { type: 'string', default: '64' },
    'pull-threads': { type: 'string', default: String(availableParallelism()) },
    servers: { type: 'string', default: 'berth,distribution,cluster' },
    scenarios: { type: 'string', default: 'push,chunked,pull,requests,s3,soak,gc' },
    's3-servers': { type: 'string', default: 'berth,distribution,raw' },
    's3-blob-mib': { type: 'string', default: '64' },
    's3-big-mib': { type: 'string', default: '256' },
    's3-concurrency': { type: 'string', default: '4' },
    's3-cases': { type: 'string', default: 's3Push4,s3Chunked4,s3Push1' },
    'soak-seconds': { type: 'string', default: '180' },
    'soak-manifests': { type: 'string', default: '2000' },
    'soak-servers': { type: 'string', default: 'berth,distribution' },
    'gc-blobs': { type: 'string', default: '100000' },
    'gc-repositories': { type: 'string', default: '400' },
    'gc-tenants': { type: 'string', default: '4' },
    'gc-stacks': { type: 'string', default: 'fs,s3' },
    'gc-rounds': { type: 'string', default: '1' },
    'gc-concurrency': { type: 'string', default: '8' },
    profile: { type: 'boolean', default: false },
    out: { type: 'string', default: fileURLToPath(new URL('results/latest.md', import.meta.url)) },
  },
});
const rounds = Number(opts.rounds);
const size = Number(opts['blob-mib']) * MiB;
const concurrency = Number(opts.concurrency);
const chunkSize = Number(opts['chunk-mib']) * MiB;
const seconds = Number(opts.seconds);
const connections = Number(opts.connections);
const pullThreads = Number(opts['pull-threads']);
const kinds = opts.servers.split(',').filter(Boolean);
const scenarios = new Set(opts.scenarios.split(','));
const s3Size = Number(opts['s3-blob-mib']) * MiB;
const s3BigSize = Number(opts['s3-big-mib']) * MiB;
const s3Concurrency = Number(opts['s3-concurrency']);
const loadAtStart = loadavg();
const profileDir = opts.profile ? fileURLToPath(new URL('profiles/', import.meta.url)) : undefined;
if (profileDir) await mkdir(profileDir, { recursive: true });

const REPO = 'bench/app';
const servers = [];
const samples = {};
const record = (kind, key, value) => ((samples[kind] ??= {})[key] ??= []).push(value);
const log = (message) => process.stderr.write(`${message}\n`);
// Before every timed transfer: write back all dirty pages, so no server pays for the disk
// writeback of the previous one's blobs (Distribution does not fsync; Berth fsyncs on commit).
const settleDisk = () => execFileSync('sync');
const GiB = 2 ** 30;

/** One timed push of `concurrency` fresh blobs, recording throughput, CPU per GiB and peak RSS. */
async function measuredPush(server, key, chunk, recorded) {
  settleDisk();
  const sampler = sampleRss(server.pids);
  const cpuBefore = await cpuSeconds(server.pids());
  const { mbps, blobs } = await pushRun(server.base, REPO, { size, concurrency, chunkSize: chunk });
  const cpu = (await cpuSeconds(server.pids())) - cpuBefore;
  const memory = await sampler.stop();
  if (recorded) {
    record(server.kind, 'peakRss', memory.total / 1e6);
    record(server.kind, 'peakRssProcess', memory.largest / 1e6);
    record(server.kind, key, mbps);
    record(server.kind, `${key}Cpu`, cpu / ((size * concurrency) / GiB));
    log(`${key} ${server.kind}: ${mbps.toFixed(0)} MiB/s`);
  }
  return blobs;
}

async function measuredPull(server, blobs) {
  settleDisk();
  const cpuBefore = await cpuSeconds(server.pids());
  const { mbps } = await pullRun(server.base, REPO, blobs, pullThreads);
  record(server.kind, 'pullCpu', ((await cpuSeconds(server.pids())) - cpuBefore) / ((size * concurrency) / GiB));
  record(server.kind, 'pull', mbps);
  log(`pull ${server.kind}: ${mbps.toFixed(0)} MiB/s`);
}

const FS_SCENARIOS = ['push', 'chunked', 'pull', 'requests'];

/** Berth (fs + SQLite), the cluster and Distribution (filesystem); returns the results section. */
async function fsScenarios() {
  for (const kind of kinds) servers.push(await startServer(kind, { profileDir: kind === 'distribution' ? undefined : profileDir }));
  log(`servers: ${servers.map((s) => `${s.kind} ${s.base}`).join(', ')}`);

  // An untimed warm-up push and pull first: V8 compiles the hot path, Go grows its heap. Then each
  // round: every server pushes (RSS sampled) and pulls those blobs back while they are fresh, then
  // the bench deletes its blob files (see dropBlobs in servers.mjs for why); the same for chunked
  // pushes.
  const wantsMono = scenarios.has('push') || scenarios.has('pull');
  const transfers = scenarios.has('push') || scenarios.has('pull') || scenarios.has('chunked');
  for (const server of transfers ? servers : []) {
    const blobs = await measuredPush(server, 'pushMono', 0, false);
    await pullRun(server.base, REPO, blobs, pullThreads);
    await server.dropBlobs();
  }
  for (let round = 0; round < rounds; round++) {
    log(`round ${round + 1}`);
    for (const server of wantsMono ? servers : []) {
      const blobs = await measuredPush(server, 'pushMono', 0, scenarios.has('push'));
      if (scenarios.has('pull')) await measuredPull(server, blobs);
      await server.dropBlobs();
    }
    for (const server of scenarios.has('chunked') ? servers : []) {
      await measuredPush(server, 'pushChunked', chunkSize, true);
      await server.dropBlobs();
    }
  }

  // Request rates: one small image per server, a short warm-up, then the measured rounds.
  const layers = new Map();
  for (const server of scenarios.has('requests') ? servers : []) {
    const { layer } = await pushSmallImage(server.base, REPO, 'latest');
    layers.set(server, layer);
    await rate(`${server.base}/v2/${REPO}/manifests/latest`, { headers: { accept: MANIFEST_ACCEPT }, connections, seconds: 2 });
    await headRate(`${server.base}/v2/${REPO}/blobs/${layer.digest}`, { connections, seconds: 2 });
  }
  for (let round = 0; round < rounds && scenarios.has('requests'); round++) {
    for (const server of servers) {
      const m = await rate(`${server.base}/v2/${REPO}/manifests/latest`, { headers: { accept: MANIFEST_ACCEPT }, connections, seconds });
      if (m.errors > 0) throw new Error(`${server.kind}: ${m.errors} failed manifest GETs`);
      record(server.kind, 'manifestRps', m.rps);
      record(server.kind, 'manifestP99', m.p99);
      const h = await headRate(`${server.base}/v2/${REPO}/blobs/${layers.get(server).digest}`, { connections, seconds });
      if (h.errors > 0) throw new Error(`${server.kind}: ${h.errors} failed blob HEADs`);
      record(server.kind, 'headRps', h.rps);
      record(server.kind, 'headP99', h.p99);
      log(
        `requests round ${round + 1} ${server.kind}: manifest ${m.rps.toFixed(0)}/s p99 ${m.p99} ms, HEAD ${h.rps.toFixed(0)}/s p99 ${h.p99} ms`,
      );
    }
  }

  await Promise.all(servers.splice(0).map((s) => s.stop()));
  const rows = tableRows(summarize(samples));
  console.log();
  printTable(rows);
  const settings = `${rounds} rounds, ${concurrency} × ${opts['blob-mib']} MiB blobs, ${opts['chunk-mib']} MiB chunks, pulls on ${pullThreads} client threads, ${connections} connections × ${seconds} s (autocannon)`;
  const notes = [
    'Berth: `node packages/cli/dist/bin.cjs serve --log-level silent` (fs blobs with fsync on commit + SQLite); cluster: `bench/cluster.mjs`, node:cluster with 2 workers on one port sharing the data dir and SQLite.',
    'Distribution: `docker-registry serve` with filesystem storage, `log.level: error`, access log disabled (neither side logs per request).',
    'Throughput: one undici keep-alive connection per concurrent transfer; pushes stream a pseudo-random blob (no 256 MiB buffers), pulls hash every byte and compare the digest, spread over one client thread per core (worker_threads; the 4 streams in one thread held its core at 100 % near 750 MiB/s whoever served them, so the run measured the client).',
    "Request rates: keep-alive, one request in flight per connection; manifest GET by tag (Docker schema2, 1 layer) with autocannon; blob HEAD of a 1 MiB layer with bench/head.mjs (autocannon waits for a HEAD body that never comes). Medians over rounds. Memory is sampled every 20 ms during push runs: peak VmRSS of the largest process (the target is per process: each replica), and the peak of all processes together (primary + 2 workers), counting each one's anonymous memory plus the shared node binary once.",
    "Transfers: one untimed warm-up push and pull per server first; `sync` before every timed run writes back dirty pages; after each push (and its pull) the bench deletes the server's blob files, so the page cache never grows by gigabytes (on this VM, page cache pages the guest never touched before cost ~2.2 s of kernel time per GiB written, recycled ones ~0.2-0.4 s). Berth fsyncs every blob before its 201; Distribution never fsyncs.",
    "The load generator shares the 2 cores with the servers, so a pull is bound by the whole machine: a client hashing at ~1 GiB/s per core plus whatever the server takes. Berth sends fs blobs with sendfile(2) (the bytes never enter the process); Distribution copies them through user space. Distribution (Go) and the cluster run code on both cores; a single Berth process runs JavaScript on one, file I/O on libuv's threadpool.",
  ];
  return { title: 'Filesystem: Berth (fs + SQLite) vs Distribution (filesystem)', settings, rows, notes, samples };
}

const s3Samples = {};
const s3Record = (kind, key, value) => ((s3Samples[kind] ??= {})[key] ??= []).push(value);

/**
 * One timed S3 transfer of `blobs` by `target`: throughput, CPU per GiB of the registry process
 * and of the gateway, peak RSS of the registry.
 */
async function measuredS3(target, gatewayPids, key, blobs, work) {
  settleDisk();
  const gateway = await gatewayPids();
  const sampler = sampleRss(target.pids);
  const [cpuBefore, gatewayBefore] = [await cpuSeconds(target.pids()), await cpuSeconds(gateway)];
  const seconds = await work();
  const cpu = (await cpuSeconds(target.pids())) - cpuBefore;
  const gatewayCpu = (await cpuSeconds(gateway)) - gatewayBefore;
  const memory = await sampler.stop();
  const bytes = blobs.reduce((n, b) => n + b.size, 0);
  const mbps = bytes / MiB / seconds;
  s3Record(target.kind, key, mbps);
  if (target.kind !== 'raw') s3Record(target.kind, `${key}Cpu`, cpu / (bytes / GiB));
  s3Record(target.kind, `${key}GatewayCpu`, gatewayCpu / (bytes / GiB));
  if (!key.includes('Pull') && memory.largest) s3Record(target.kind, 's3PeakRss', memory.largest / 1e6);
  log(`${key} ${target.kind}: ${mbps.toFixed(0)} MiB/s`);
}

/** Berth on S3 + Postgres, Distribution on the same gateway, and the gateway itself; returns the results section. */
async function s3Scenario() {
  const { targets, gatewayPids, close } = await startS3Targets(opts['s3-servers'].split(',').filter(Boolean), {
    repo: REPO,
    profileDir,
  });
  try {
    log(`S3 targets: ${targets.map((t) => t.kind).join(', ')}`);
    const cases = [
      { key: 's3Push4', count: s3Concurrency, size: s3Size, chunk: 0, pull: 's3Pull4' },
      { key: 's3Chunked4', count: s3Concurrency, size: s3Size, chunk: chunkSize },
      { key: 's3Push1', count: 1, size: s3BigSize, chunk: 0, pull: 's3Pull1' },
    ].filter((c) => opts['s3-cases'].split(',').includes(c.key));
    // Untimed warm-up: V8 compiles the hot path, Go grows its heap, connections open.
    for (const target of targets) {
      const blobs = Array.from({ length: s3Concurrency }, () => newBlob(s3Size));
      await target.push(blobs, 0);
      await target.pull(blobs, pullThreads);
      await target.drop();
    }
    for (let round = 0; round < rounds; round++) {
      log(`S3 round ${round + 1}`);
      for (const c of cases) {
        for (const target of targets) {
          if (c.chunk && target.kind === 'raw') continue;
          const blobs = Array.from({ length: c.count }, () => newBlob(c.size));
          await measuredS3(target, gatewayPids, c.key, blobs, () => target.push(blobs, c.chunk));
          if (c.pull) await measuredS3(target, gatewayPids, c.pull, blobs, () => target.pull(blobs, pullThreads));
          await target.drop();
        }
      }
    }
  } finally {
    await close();
  }
  const rows = s3TableRows(summarize(s3Samples, S3_METRICS));
  console.log();
  printTable(rows);
  const settings = `${rounds} rounds; ${s3Concurrency} × ${opts['s3-blob-mib']} MiB and 1 × ${opts['s3-big-mib']} MiB blobs, ${opts['chunk-mib']} MiB chunks, pulls on ${pullThreads} client threads`;
  const notes = [
    'Gateway: the local Ceph RGW of `start-rgw.sh` (radosgw + one bluestore OSD on a sparse file, loopback), shared with whoever else uses the machine; its CPU counts radosgw, ceph-osd and ceph-mon.',
    'Berth: `berth serve --s3-bucket … --database-url postgres://…` (default 8 MiB parts), blobs proxied (no redirects). Distribution: `docker-registry` with its s3 driver on the same gateway (default 10 MiB chunks, redirects off). raw: presigned PUT / GET of the same blobs straight to the gateway.',
    'The same client drives all three: one undici connection per concurrent transfer, pseudo-random blobs streamed, pulls hashed on one worker thread per core. One untimed warm-up push and pull per target; each round alternates the targets inside every case and deletes what they stored after each case.',
    'Ratios are to raw S3 in the same run; the chunked push is compared with raw PUT (raw has no chunked protocol). CPU per GiB: the registry process only (raw: none) and the gateway processes.',
  ];
  return { title: 'S3: Berth on S3 + Postgres vs Distribution on S3 vs the gateway itself', settings, rows, notes, samples: s3Samples };
}

async function main() {
  const sections = [];
  if (FS_SCENARIOS.some((s) => scenarios.has(s))) sections.push(await fsScenarios());
  if (scenarios.has('s3')) {
    if (s3Env()) sections.push(await s3Scenario());
    else log('S3 scenario skipped: S3_ENDPOINT is not set (set -a; eval "$(../shared/s3/start-rgw.sh)"; set +a)');
  }
  if (scenarios.has('soak')) {
    const soak = await soakScenario({
      kinds: opts['soak-servers'].split(',').filter(Boolean),
      seconds: Number(opts['soak-seconds']),
      manifests: Number(opts['soak-manifests']),
      log,
    });
    console.log();
    printTable(soak.rows);
    sections.push(soak);
  }
  if (scenarios.has('gc')) {
    const kinds = opts['gc-stacks'].split(',').filter((kind) => kind !== 's3' || s3Env());
    if (kinds.length < opts['gc-stacks'].split(',').length) log('gc on S3 + Postgres skipped: S3_ENDPOINT is not set');
    const gc = await gcScenario({
      kinds,
      rounds: Number(opts['gc-rounds']),
      blobs: Number(opts['gc-blobs']),
      repositories: Number(opts['gc-repositories']),
      tenants: Number(opts['gc-tenants']),
      concurrency: Number(opts['gc-concurrency']),
      profileDir,
      log,
    });
    console.log();
    printTable(gc.rows);
    sections.push(gc);
  }
  if (opts.out !== '-' && sections.length > 0) {
    const load = (l) => l.map((n) => n.toFixed(2)).join(', ');
    const info = { ...machine(), load: `${load(loadAtStart)}; ${load(loadavg())}` };
    await mkdir(new URL('results/', import.meta.url), { recursive: true });
    await writeFile(opts.out, markdown({ info, sections }));
    log(`\nwrote ${opts.out}`);
  }
}

try {
  await main();
} finally {
  await Promise.all(servers.map((s) => s.stop()));
}
