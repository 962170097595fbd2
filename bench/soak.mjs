// The hostile soak: normal and hostile clients mixed against one server for a while, with its
// resident memory sampled all along. Normal clients read thousands of large distinct manifests
// (so no cache can hold them all) and push small images; hostile ones trickle bodies, cut uploads
// short, push 2,000,000-deep manifests and too-large ones with `Connection: close`. What matters
// is that memory stays flat (the last quarter of the run against the first) and that nobody gets
// a 5xx; throughput is reported only to show the load was real.
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { Pool } from 'undici';
import { startServer } from './servers.mjs';

const KiB = 1024;
const MiB = 1024 * KiB;
const REPO = 'soak/app';
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const sha256 = (bytes) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Sizes the distinct manifests cycle through: under, around and far over Berth's 256 KiB cache bound. */
const MANIFEST_SIZES = [64 * KiB, 200 * KiB, 512 * KiB, MiB];

function manifestOf(config, n, size) {
  const base = {
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: config, size: 2 },
    layers: [],
  };
  return Buffer.from(JSON.stringify({ ...base, annotations: { n: String(n), pad: 'x'.repeat(size - 400) } }));
}

async function expect(res, statuses, what, counts) {
  await res.body.dump();
  if (!statuses.includes(res.statusCode)) {
    counts.unexpected = (counts.unexpected ?? 0) + 1;
    counts[`${what} ${res.statusCode}`] = (counts[`${what} ${res.statusCode}`] ?? 0) + 1;
  }
}

async function pushBlob(pool, bytes) {
  const digest = sha256(bytes);
  const start = await pool.request({ method: 'POST', path: `/v2/${REPO}/blobs/uploads/`, headers: { 'content-length': '0' } });
  await start.body.dump();
  const location = new URL(start.headers.location, 'http://x');
  const put = await pool.request({
    method: 'PUT',
    path: `${location.pathname}${location.search ? `${location.search}&` : '?'}digest=${digest}`,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) },
    body: bytes,
  });
  await put.body.dump();
  if (put.statusCode !== 201) throw new Error(`blob push: ${put.statusCode}`);
  return digest;
}

function putManifest(pool, ref, body) {
  return pool.request({
    method: 'PUT',
    path: `/v2/${REPO}/manifests/${ref}`,
    headers: { 'content-type': MANIFEST_TYPE, 'content-length': String(body.length) },
    body,
  });
}

/**
 * A raw connection that sends `head` and `first`, then whatever `drive(socket)` does; resolves
 * with the status line once the server closes it (or `giveUpMs` passes and the client leaves).
 */
function rawRequest(base, head, first, { giveUpMs = 30_000, drive } = {}) {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let text = '';
    const timer = setTimeout(() => socket.destroy(), giveUpMs);
    socket.on('connect', () => {
      socket.write(head);
      if (first.length > 0) socket.write(first);
      drive?.(socket);
    });
    socket.on('data', (c) => {
      if (text.length < 64) text += c.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0));
    });
  });
}

const requestHead = (line, headers) =>
  `${line} HTTP/1.1\r\nHost: soak\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;

async function newSession(pool) {
  const res = await pool.request({ method: 'POST', path: `/v2/${REPO}/blobs/uploads/`, headers: { 'content-length': '0' } });
  await res.body.dump();
  const location = new URL(res.headers.location, 'http://x');
  return location.pathname + location.search;
}

async function vmRss(pids) {
  let total = 0;
  for (const pid of pids) {
    try {
      total += Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    } catch {
      // gone
    }
  }
  return total / 1e6;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? undefined : sorted[sorted.length >> 1];
};

/**
 * One soak against a fresh `kind` server: `manifests` distinct large manifests pushed, then
 * `seconds` of mixed load. Returns the figures for the table and every RSS sample.
 */
export async function soakOne(kind, { seconds, manifests, log }) {
  const server = await startServer(kind);
  const pool = new Pool(server.base, { connections: 16, keepAliveTimeout: 30_000, bodyTimeout: 60_000, headersTimeout: 60_000 });
  const counts = {};
  const count = (key, n = 1) => (counts[key] = (counts[key] ?? 0) + n);
  try {
    const config = await pushBlob(pool, Buffer.from('{}'));
    const digests = [];
    let pushedBytes = 0;
    for (let next = 0; next < manifests; ) {
      const batch = [];
      for (let i = 0; i < 8 && next < manifests; i++, next++) {
        const body = manifestOf(config, next, MANIFEST_SIZES[next % MANIFEST_SIZES.length]);
        digests.push(sha256(body));
        pushedBytes += body.length;
        batch.push(putManifest(pool, sha256(body), body).then((res) => expect(res, [201], 'setup manifest PUT', counts)));
      }
      await Promise.all(batch);
    }
    log(`soak ${kind}: ${manifests} manifests pushed (${Math.round(pushedBytes / MiB)} MiB)`);

    const rss = [];
    let running = true;
    const sampler = (async () => {
      while (running) {
        rss.push(await vmRss(server.pids()));
        await sleep(500);
      }
    })();
    const deadline = Date.now() + seconds * 1000;
    const loop = async (work) => {
      while (Date.now() < deadline) await work().catch(() => count('client errors'));
    };

    const readers = Array.from({ length: 8 }, () =>
      loop(async () => {
        const digest = digests[Math.floor(Math.random() * digests.length)];
        const res = await pool.request({ method: 'GET', path: `/v2/${REPO}/manifests/${digest}`, headers: { accept: MANIFEST_TYPE } });
        let bytes = 0;
        for await (const chunk of res.body) bytes += chunk.length;
        if (res.statusCode === 200) count('manifest reads');
        else if (res.statusCode === 429) count('manifest reads refused (429)');
        else count(`unexpected manifest GET ${res.statusCode}`);
        count('read bytes', bytes);
      }),
    );
    let image = 0;
    const pushers = Array.from({ length: 2 }, () =>
      loop(async () => {
        const layer = await pushBlob(pool, randomBytes(64 * KiB));
        const body = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: MANIFEST_TYPE,
            config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: config, size: 2 },
            layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer, size: 64 * KiB }],
          }),
        );
        await expect(await putManifest(pool, `v${image++ % 50}`, body), [201], 'image push', counts);
        count('images pushed');
      }),
    );
    // Slow bodies: PATCHes and manifest PUTs trickling a byte every 2 s until the server ends them
    // or the soak does.
    const tricklers = Array.from({ length: 16 }, (_, i) =>
      loop(async () => {
        const path = i % 2 === 0 ? await newSession(pool) : `/v2/${REPO}/manifests/slow${i}`;
        const head = requestHead(`${i % 2 === 0 ? 'PATCH' : 'PUT'} ${path}`, {
          'Content-Type': i % 2 === 0 ? 'application/octet-stream' : MANIFEST_TYPE,
          'Content-Length': MiB,
        });
        const status = await rawRequest(server.base, head, Buffer.alloc(0), {
          giveUpMs: Math.max(1000, deadline - Date.now()),
          drive: (socket) => {
            const timer = setInterval(() => socket.writable && socket.write('x'), 2000);
            socket.once('close', () => clearInterval(timer));
          },
        });
        count(status ? `slow bodies answered ${status}` : 'slow bodies given up');
      }),
    );
    // Uploads cut short: 4 MiB announced, 256 KiB sent, connection closed.
    const cutters = Array.from({ length: 2 }, () =>
      loop(async () => {
        const path = await newSession(pool);
        const head = requestHead(`PATCH ${path}`, { 'Content-Type': 'application/octet-stream', 'Content-Length': 4 * MiB });
        await rawRequest(server.base, head, randomBytes(256 * KiB), { drive: (socket) => setTimeout(() => socket.destroy(), 50) });
        count('uploads cut short');
        await sleep(50);
      }),
    );
    const deep = Buffer.from('['.repeat(2_000_000) + ']'.repeat(2_000_000));
    const deepPushers = [
      loop(async () => {
        await expect(await putManifest(pool, 'deep', deep), [400], 'deep manifest', counts);
        count('deep manifests refused');
      }),
    ];
    const huge = Buffer.alloc(5 * MiB, 0x20);
    const hugePushers = [
      loop(async () => {
        const head = requestHead(`PUT /v2/${REPO}/manifests/huge`, {
          'Content-Type': MANIFEST_TYPE,
          'Content-Length': huge.length,
          Connection: 'close',
        });
        const status = await rawRequest(server.base, head, huge);
        count(status === 413 ? 'too-large manifests answered 413' : `too-large manifests answered ${status || 'with a reset'}`);
      }),
    ];
    await Promise.all([...readers, ...pushers, ...tricklers, ...cutters, ...deepPushers, ...hugePushers]);
    await sleep(5000); // let the last requests end and the heap settle
    running = false;
    await sampler;

    const quarter = Math.max(1, Math.floor(rss.length / 4));
    const figures = {
      soakRssFirst: median(rss.slice(0, quarter)),
      soakRssLast: median(rss.slice(-quarter)),
      soakRssPeak: Math.max(...rss),
      soakReads: (counts['manifest reads'] ?? 0) / seconds,
      soakReadMiBs: (counts['read bytes'] ?? 0) / MiB / seconds,
    };
    delete counts['read bytes'];
    log(`soak ${kind}: ${JSON.stringify({ ...figures, counts })}`);
    return { figures, counts, rss };
  } finally {
    await pool.close();
    await server.stop();
  }
}

export const SOAK_METRICS = [
  { key: 'soakRssFirst', label: 'RSS, first quarter of the soak (MB, median)' },
  { key: 'soakRssLast', label: 'RSS, last quarter of the soak (MB, median)' },
  { key: 'soakRssPeak', label: 'peak RSS during the soak (MB)' },
  { key: 'soakReads', label: 'large manifest reads (req/s)' },
  { key: 'soakReadMiBs', label: 'large manifest reads (MiB/s)' },
];

/** The soak against each server in turn; returns the results section. */
export async function soakScenario({ kinds, seconds, manifests, log }) {
  const results = {};
  for (const kind of kinds) results[kind] = await soakOne(kind, { seconds, manifests, log });
  const fmt = (v) => (v === undefined ? '–' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1));
  const names = { berth: 'Berth', distribution: 'Distribution 2.8', cluster: 'Berth cluster (2)' };
  const rows = [['metric', ...kinds.map((k) => names[k] ?? k)]];
  for (const metric of SOAK_METRICS) rows.push([metric.label, ...kinds.map((k) => fmt(results[k].figures[metric.key]))]);
  rows.push([
    'growth, last quarter / first',
    ...kinds.map((k) => `${(results[k].figures.soakRssLast / results[k].figures.soakRssFirst).toFixed(2)}×`),
  ]);
  const keys = [...new Set(kinds.flatMap((k) => Object.keys(results[k].counts)))].sort();
  for (const key of keys) rows.push([`${key} (count)`, ...kinds.map((k) => String(results[k].counts[key] ?? 0))]);
  const settings = `${seconds} s of mixed load after ${manifests} distinct manifests (64 KiB, 200 KiB, 512 KiB, 1 MiB in turn) were pushed; RSS sampled every 500 ms`;
  const notes = [
    'Normal clients: 8 readers GET random manifests of the pushed set by digest (undici pool of 16 keep-alive connections), 2 pushers push a 64 KiB layer and an image manifest under one of 50 tags.',
    'Hostile clients: 16 slow bodies (PATCHes and manifest PUTs announcing 1 MiB and sending a byte every 2 s, until the server ends them or the soak ends), 2 loops of uploads cut short (4 MiB announced, 256 KiB sent, connection closed), 1 loop of 2,000,000-deep manifests (4 MB), 1 loop of 5 MiB manifests with `Connection: close`.',
    'Berth runs with its defaults (read cache 32 MiB, manifests over 256 KiB never cached, body idle window 60 s at 256 bytes/s, manifest memory 64 MiB); Distribution with the bench configuration (filesystem storage).',
    '`unexpected` counts answers outside the expected set (a 5xx, a 2xx for a refused manifest); `slow bodies answered 408` are those Berth ended itself.',
  ];
  const samples = Object.fromEntries(kinds.map((k) => [k, { rss: results[k].rss, counts: results[k].counts }]));
  return { title: 'Hostile soak: memory while hostile and normal clients mix', settings, rows, notes, samples };
}
