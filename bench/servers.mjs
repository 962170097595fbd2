// Start and stop the registries under test, each on loopback with a fresh temp data directory,
// and sample their memory from /proc.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function waitUntilServing(base, child, stderr) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${stderr()}`);
    try {
      const res = await fetch(`${base}/v2/`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server did not answer /v2/ within 60 s: ${stderr()}`);
}

export function spawnServer(command, args, options = {}) {
  const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (c) => (stderr = (stderr + c).slice(-4000)));
  child.stdout.on('data', (c) => (stdout = (stdout + c).slice(-100_000)));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return { child, exited, stderr: () => stderr, stdout: () => stdout };
}

/**
 * A docker-registry config: `storage` lines (the driver's), deletes on, no per-request logging
 * (access log off, errors only: the footing of Berth's --log-level silent).
 */
export function distributionConfig(port, storage) {
  const log = ['log:', '  level: error', '  accesslog:', '    disabled: true'];
  const rest = ['  delete:', '    enabled: true', 'http:', `  addr: 127.0.0.1:${port}`, ''];
  return ['version: 0.1', ...log, 'storage:', ...storage, ...rest].join('\n');
}

/**
 * A running server: `base` URL, `pids()` of every process whose memory counts, `stop()`.
 * kind: 'berth' (one process), 'cluster' (node:cluster, `workers` processes) or 'distribution'.
 */
export async function startServer(kind, { workers = 2, profileDir } = {}) {
  const dir = await mkdtemp(join(tmpdir(), `berth-bench-${kind}-`));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const serveArgs = ['--port', String(port), '--host', '127.0.0.1', '--data-dir', dir, '--log-level', 'silent'];
  const nodeFlags = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  let proc;
  let pids;
  // Where the server keeps blob bytes (Berth: FsBlobStore root under --data-dir).
  let blobDir = join(dir, 'blobs');
  if (kind === 'berth') {
    proc = spawnServer(process.execPath, [...nodeFlags, 'packages/cli/dist/bin.cjs', 'serve', ...serveArgs]);
    pids = () => [proc.child.pid];
  } else if (kind === 'cluster') {
    proc = spawnServer(process.execPath, [...nodeFlags, 'bench/cluster.mjs', String(workers), ...serveArgs]);
    let clusterPids = [proc.child.pid];
    proc.child.stdout.on('data', () => {
      const line = proc
        .stdout()
        .split('\n')
        .find((l) => l.includes('cluster ready'));
      if (line) clusterPids = JSON.parse(line).pids;
    });
    pids = () => clusterPids;
  } else if (kind === 'distribution') {
    // Distribution 2.8 with filesystem storage.
    const config = join(dir, 'config.yml');
    await writeFile(config, distributionConfig(port, ['  filesystem:', `    rootdirectory: ${join(dir, 'data')}`]));
    proc = spawnServer('docker-registry', ['serve', config]);
    blobDir = join(dir, 'data', 'docker', 'registry', 'v2', 'blobs');
    pids = () => [proc.child.pid];
  } else {
    throw new Error(`unknown server kind ${kind}`);
  }
  await waitUntilServing(base, proc.child, proc.stderr);
  if (kind === 'cluster') {
    while (pids().length < workers + 1) await new Promise((r) => setTimeout(r, 50));
  }
  return {
    kind,
    base,
    pids,
    /**
     * Delete every blob file the server holds (the bench never reads a run's blobs again; both
     * servers recreate their directories on the next push). This keeps the page cache from growing
     * by gigabytes over a run: on this VM, writing into page cache pages the guest never touched
     * before costs ~2.2 s of kernel time per GiB against ~0.2-0.4 s on recycled pages (measured
     * with dd), a cost of the host that would otherwise swamp both servers' push figures.
     */
    async dropBlobs() {
      await rm(blobDir, { recursive: true, force: true });
    },
    async stop() {
      if (proc.child.exitCode === null) proc.child.kill('SIGTERM');
      await proc.exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Resident memory of one process in bytes (all zero once it is gone): VmRSS and its parts. */
async function memory(pid) {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kB = (field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
    return { rss: kB('VmRSS'), private: kB('RssAnon') + kB('RssShmem'), file: kB('RssFile') };
  } catch {
    return { rss: 0, private: 0, file: 0 };
  }
}

/**
 * Sample the memory of `pids()` every `intervalMs` until `stop()` is called. `largest` is the
 * peak VmRSS of any one process. `total` is the peak memory of all of them together: each
 * one's anonymous memory, plus file-backed pages once, since processes running the same binary
 * share them (the node binary is ~47 MB of every Node process's VmRSS; summing VmRSS would
 * count it once per cluster process).
 */
export function sampleRss(pids, intervalMs = 20) {
  let peak = 0;
  let largest = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const values = await Promise.all(pids().map(memory));
      const sum = values.reduce((n, v) => n + v.private, 0) + Math.max(0, ...values.map((v) => v.file));
      peak = Math.max(peak, sum);
      largest = Math.max(largest, ...values.map((v) => v.rss));
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    /** { total, largest } (see above) in bytes. */
    async stop() {
      running = false;
      await loop;
      return { total: peak, largest };
    },
  };
}

/** CPU seconds (user + system, all threads) used so far by `pids` together; gone processes count 0. */
export async function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return ticks / 100; // USER_HZ is 100 on Linux
}
