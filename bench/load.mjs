// The load generator: the same code drives Berth and Distribution. Blob transfers use undici,
// one keep-alive connection (undici Client) per concurrent transfer, the way a real client keeps
// one connection for POST, PATCHes and PUT of a session. Request rates use autocannon.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import autocannon from 'autocannon';
import { Client } from 'undici';
import { MiB, newBlob, pieces } from './data.mjs';

async function expectStatus(response, expected, what) {
  if (response.statusCode !== expected) {
    const text = await response.body.text().catch(() => '');
    throw new Error(`${what}: HTTP ${response.statusCode} (expected ${expected}) ${text.slice(0, 300)}`);
  }
  await response.body.dump();
}

/** Path and query of a Location header (Distribution answers absolute URLs, Berth paths). */
function locationPath(response, base) {
  const location = response.headers.location;
  if (!location) throw new Error('no Location header');
  const url = new URL(location, base);
  return url.pathname + url.search;
}

const withDigest = (path, digest) => `${path}${path.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;

async function startSession(client, base, repo) {
  const res = await client.request({ method: 'POST', path: `/v2/${repo}/blobs/uploads/`, headers: { 'content-length': '0' } });
  const path = locationPath(res, base);
  await expectStatus(res, 202, 'POST upload');
  return path;
}

/** POST, then one PUT carrying the whole blob as a stream. */
export async function pushMonolithic(client, base, repo, blob) {
  const path = await startSession(client, base, repo);
  const res = await client.request({
    method: 'PUT',
    path: withDigest(path, blob.digest),
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
    body: pieces(blob.seed, 0, blob.size),
  });
  await expectStatus(res, 201, 'PUT blob');
}

/** POST, PATCH chunks with Content-Range, then an empty PUT with the digest. */
export async function pushChunked(client, base, repo, blob, chunkSize) {
  let path = await startSession(client, base, repo);
  for (let start = 0; start < blob.size; start += chunkSize) {
    const end = Math.min(start + chunkSize, blob.size);
    const res = await client.request({
      method: 'PATCH',
      path,
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(end - start),
        'content-range': `${start}-${end - 1}`,
      },
      body: pieces(blob.seed, start, end),
    });
    path = locationPath(res, base);
    await expectStatus(res, 202, 'PATCH chunk');
  }
  const res = await client.request({ method: 'PUT', path: withDigest(path, blob.digest), headers: { 'content-length': '0' } });
  await expectStatus(res, 201, 'PUT (close session)');
}

/** GET a blob (from `path`) and verify its digest and size while it streams in. */
export async function pullVerified(client, path, blob) {
  const res = await client.request({ method: 'GET', path });
  if (res.statusCode !== 200) throw new Error(`GET blob: HTTP ${res.statusCode}`);
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of res.body) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  const digest = `sha256:${hash.digest('hex')}`;
  if (digest !== blob.digest || bytes !== blob.size) throw new Error(`pulled ${bytes} bytes hashing to ${digest}, expected ${blob.digest}`);
}

/** One keep-alive connection for long transfers (no body or header timeouts). */
export const transferClient = (base) => new Client(base, { keepAliveTimeout: 30_000, bodyTimeout: 0, headersTimeout: 0 });

/** Run `work(client, i)` on `concurrency` fresh connections at once; returns seconds taken. */
export async function timed(base, concurrency, work) {
  const clients = Array.from({ length: concurrency }, () => transferClient(base));
  try {
    const started = performance.now();
    await Promise.all(clients.map((client, i) => work(client, i)));
    return (performance.now() - started) / 1000;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Push `concurrency` fresh blobs at once; returns { mbps, blobs }. */
export async function pushRun(base, repo, { size, concurrency, chunkSize }) {
  const blobs = Array.from({ length: concurrency }, () => newBlob(size));
  const seconds = await timed(base, concurrency, (client, i) =>
    chunkSize ? pushChunked(client, base, repo, blobs[i], chunkSize) : pushMonolithic(client, base, repo, blobs[i]),
  );
  return { mbps: (size * concurrency) / MiB / seconds, blobs };
}

/** The path of a blob GET on a registry. */
export const blobPath = (repo, blob) => `/v2/${repo}/blobs/${blob.digest}`;

/**
 * Pull `blobs` at once, each on its own connection from `path(blob)` (default: the registry's
 * blob GET in `repo`), spread over `threads` worker threads (one per core by default). Receiving and hashing 4 streams in one thread holds a core at 100 % at about
 * 750 MiB/s here, whoever serves them, so a one-thread client would measure itself; with one
 * thread per core the run is bound by the whole machine, and a server shows by the CPU it leaves.
 */
export async function pullRun(base, repo, blobs, threads = availableParallelism(), path = (blob) => blobPath(repo, blob)) {
  const count = Math.max(1, Math.min(threads, blobs.length));
  const workers = Array.from({ length: count }, (_, t) => {
    const mine = blobs.filter((_, i) => i % count === t).map((blob) => ({ ...blob, path: path(blob) }));
    return new Worker(new URL('./pull-thread.mjs', import.meta.url), { workerData: { base, blobs: mine } });
  });
  try {
    await Promise.all(workers.map((w) => once(w, 'message')));
    const started = performance.now();
    const results = await Promise.all(
      workers.map((w) => {
        w.postMessage('go');
        return once(w, 'message');
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const failed = results.find(([r]) => !r.ok);
    if (failed) throw new Error(failed[0].message);
    return { mbps: blobs.reduce((n, b) => n + b.size, 0) / MiB / seconds, seconds };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

const SCHEMA2 = 'application/vnd.docker.distribution.manifest.v2+json';

/** A small image (config + one layer, Docker schema2 so Distribution serves it to any Accept). */
export async function pushSmallImage(base, repo, tag) {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layer = newBlob(MiB);
  const client = new Client(base);
  try {
    const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
    let path = await startSession(client, base, repo);
    await expectStatus(
      await client.request({
        method: 'PUT',
        path: withDigest(path, configDigest),
        headers: { 'content-type': 'application/octet-stream' },
        body: config,
      }),
      201,
      'PUT config',
    );
    await pushMonolithic(client, base, repo, layer);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: SCHEMA2,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: configDigest },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.size, digest: layer.digest }],
    });
    path = `/v2/${repo}/manifests/${tag}`;
    await expectStatus(
      await client.request({ method: 'PUT', path, headers: { 'content-type': SCHEMA2 }, body: manifest }),
      201,
      'PUT manifest',
    );
    return { layer };
  } finally {
    await client.close();
  }
}

/** autocannon against one URL; returns { rps, p99 (ms), errors }. */
export async function rate(url, { method = 'GET', headers = {}, connections, seconds }) {
  const result = await autocannon({ url, method, headers, connections, pipelining: 1, duration: seconds });
  return {
    rps: result.requests.average,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts + result.non2xx,
  };
}

export const MANIFEST_ACCEPT = `${SCHEMA2}, application/vnd.oci.image.manifest.v1+json`;
