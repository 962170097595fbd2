// What someone outside this repository does with Berth, on whatever Node runs this file: every
// package packed as `pnpm publish` would, installed with plain `npm` into a fresh project outside
// the workspace (tarballs only: no links, no workspace protocol), the README's install commands
// and its Koa and Express apps run exactly as printed there, an image pushed and pulled with
// skopeo through each, and the CLI answering `npx berth --version` and `npx berth serve`.
//
// The registry's part is played by `overrides`: the @berthjs/* packages depend on each other by
// version, which the npm registry would resolve; here each resolves to its tarball instead.
//
// Not part of `pnpm test` (it compiles better-sqlite3 into the fresh project, a minute or two):
// .ci/run runs it on each Node version, `pnpm test:outside` by hand. Needs a build (`pnpm build`),
// skopeo, htpasswd and openssl.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makeOciLayout, readLayoutBlob, requireCommand } from './support/oci-layout.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const readme = await readFile(join(root, 'README.md'), 'utf8');
const skip = requireCommand('skopeo') || requireCommand('htpasswd') || requireCommand('openssl');

/** The code block right after `<!-- outside-user: NAME -->` in the README. */
function readmeBlock(name: string): string {
  const marker = `<!-- outside-user: ${name} -->`;
  const at = readme.indexOf(marker);
  assert.ok(at >= 0, `README.md has no ${marker}`);
  const block = /```[a-z]*\n([\s\S]*?)```/.exec(readme.slice(at + marker.length));
  assert.ok(block, `no code block after ${marker}`);
  return block[1];
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface App {
  url: string;
  stop(): Promise<void>;
}

/** Start `command` in the project (its own process group, so npx's children go too) and wait until `path` answers. */
async function start(cwd: string, command: string[], env: Record<string, string>, port: number, path: string): Promise<App> {
  const child: ChildProcess = spawn(command[0], command.slice(1), {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c));
  child.stderr!.on('data', (c: Buffer) => (output += c));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGTERM');
    await exited;
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${command.join(' ')} exited with ${child.exitCode}:\n${output}`);
    const answered = await fetch(`${url}${path}`).then(
      (res) => res.status < 500,
      () => false,
    );
    if (answered) return { url, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${command.join(' ')} did not answer ${path} in 60 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const skopeo = (...args: string[]) => run('skopeo', ['--insecure-policy', ...args], { maxBuffer: 1 << 26 });

/** Push an image with skopeo as `user`, pull it back into a fresh layout, and compare every blob. */
async function pushAndPull(host: string, repository: string, creds?: string): Promise<void> {
  const { dir, manifestDigest } = await makeOciLayout('v1', 2);
  try {
    const src = join(dir, 'layout');
    const out = join(dir, 'out');
    const to = creds ? ['--dest-creds', creds] : [];
    const from = creds ? ['--src-creds', creds] : [];
    await skopeo('copy', '--dest-tls-verify=false', ...to, `oci:${src}:v1`, `docker://${host}/${repository}:v1`);
    await skopeo('copy', '--src-tls-verify=false', ...from, `docker://${host}/${repository}:v1`, `oci:${out}:v1`);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    assert.equal(index.manifests[0].digest, manifestDigest);
    const manifest = JSON.parse((await readLayoutBlob(out, manifestDigest)).toString());
    for (const { digest } of [manifest.config, ...manifest.layers]) {
      assert.ok((await readLayoutBlob(out, digest)).equals(await readLayoutBlob(src, digest)), digest);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe(`an outside user on Node ${process.version}`, { skip }, () => {
  let work: string;
  let project: string;
  /** The npm spec of each @berthjs/* package: its tarball, relative to the project. */
  const specs: Record<string, string> = {};
  const npm = (args: string[]) =>
    run('npm', [...args, '--no-audit', '--no-fund'], { cwd: project, maxBuffer: 1 << 26, timeout: 15 * 60_000 });
  /** A README `npm install` line's packages, each @berthjs/* one replaced by its tarball. */
  const fromTarballs = (names: string[]) => names.map((name) => specs[name] ?? name);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'berth-outside-'));
    project = join(work, 'my-app');
    await mkdir(project);
    const { stdout } = await run(process.execPath, [join(root, 'scripts/pack.mjs'), '--out', join(work, 'tarballs'), '--check-readme'], {
      cwd: root,
      maxBuffer: 1 << 24,
    });
    for (const [name, path] of Object.entries<string>(JSON.parse(stdout))) specs[name] = `file:../tarballs/${basename(path)}`;
    const manifest = { name: 'my-app', private: true, type: 'module', overrides: specs };
    await writeFile(join(project, 'package.json'), JSON.stringify(manifest, null, 2));
  });
  after(() => work && rm(work, { recursive: true, force: true }));

  it("installs every package from the README's install commands, with npm, from the tarballs alone", async () => {
    const commands = readmeBlock('install')
      .split('\n')
      .filter((line) => line.startsWith('npm install '));
    assert.ok(commands.length >= 2, 'the Koa and Express install lines');
    for (const line of commands) await npm(['install', ...fromTarballs(line.split(/\s+/).slice(2))]);
    const installed = JSON.parse(await readFile(join(project, 'package.json'), 'utf8')).dependencies;
    for (const [name, spec] of Object.entries<string>(installed)) {
      if (name.startsWith('@berthjs/')) assert.match(spec, /^file:.*\.tgz$/, `${name} came from its tarball`);
    }
    // Nothing of the workspace leaked in: every @berthjs package is a real directory from a tarball.
    const lock = JSON.parse(await readFile(join(project, 'package-lock.json'), 'utf8'));
    for (const [path, entry] of Object.entries<{ link?: boolean; resolved?: string }>(lock.packages)) {
      if (!path.includes('@berthjs/')) continue;
      assert.ok(!entry.link, `${path} is not a link`);
      assert.match(entry.resolved ?? '', /\.tgz$/, `${path} resolved from a tarball`);
    }
  });

  it('names the driver to install when a database driver is missing (Postgres: pg)', async () => {
    const script =
      "import('@berthjs/metadata-sql').then((m) => m.createSqlMetadataStore({ url: 'postgres://127.0.0.1:1/x' })).catch((e) => console.log(e.message))";
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: project });
    assert.match(stdout, /needs the "pg" package, which is not installed: npm install pg/);
  });

  it('runs the README Koa app: skopeo pushes and pulls with Basic credentials', async () => {
    await writeFile(join(project, 'koa.mjs'), readmeBlock('koa.mjs'));
    await run('htpasswd', ['-cbB', join(project, 'users.htpasswd'), 'alice', 'alice-password']);
    const port = await freePort();
    const app = await start(project, [process.execPath, 'koa.mjs'], { PORT: String(port) }, port, '/');
    try {
      assert.equal(await (await fetch(`${app.url}/`)).text(), 'my app');
      assert.equal((await fetch(`${app.url}/v2/`)).status, 401);
      await pushAndPull(`127.0.0.1:${port}`, 'alice/web', 'alice:alice-password');
      await assert.rejects(pushAndPull(`127.0.0.1:${port}`, 'bob/web', 'alice:alice-password'), /denied|unauthorized|403|401/i);
    } finally {
      await app.stop();
    }
  });

  it('runs the README Express app: skopeo logs in with a token, pushes and pulls', async () => {
    await writeFile(join(project, 'express.mjs'), readmeBlock('express.mjs'));
    await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(project, 'token-key.pem')]);
    const port = await freePort();
    const env = { PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` };
    const app = await start(project, [process.execPath, 'express.mjs'], env, port, '/');
    try {
      assert.equal(await (await fetch(`${app.url}/`)).text(), 'my app');
      const challenge = (await fetch(`${app.url}/v2/`)).headers.get('www-authenticate') ?? '';
      assert.match(challenge, /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token"/);
      await pushAndPull(`127.0.0.1:${port}`, 'alice/api', 'alice:alice-password');
    } finally {
      await app.stop();
    }
  });

  it('gets the prebuilt sendfile addon with @berthjs/core, no install script run', async () => {
    const script = "import('@berthjs/sendfile').then((m) => console.log(m.sendfileAvailable))";
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: project });
    assert.equal(stdout.trim(), 'true');
    await assert.rejects(stat(join(project, 'node_modules/@berthjs/sendfile/build')), { code: 'ENOENT' });
  });

  it('with pnpm, which runs no install scripts it was not told to: sendfile works, better-sqlite3 says what to do', async () => {
    const dir = join(work, 'pnpm-app');
    await mkdir(dir);
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'pnpm-app', private: true, type: 'module' }));
    // pnpm 10's default (pnpm 11 and later fail the install over the unapproved better-sqlite3 build),
    // and no builds from the store's cache: what a fresh machine gets.
    const overrides = Object.entries(specs).map(([name, spec]) => `  "${name}": "${spec}"`);
    await writeFile(
      join(dir, 'pnpm-workspace.yaml'),
      ['strictDepBuilds: false', 'sideEffectsCache: false', 'overrides:', ...overrides, ''].join('\n'),
    );
    const add = ['@berthjs/core', '@berthjs/storage-fs', '@berthjs/metadata-sql', 'better-sqlite3@12'];
    await run('pnpm', ['add', ...fromTarballs(add)], { cwd: dir, maxBuffer: 1 << 26, timeout: 5 * 60_000 });
    const node = (script: string, cwd: string) => run(process.execPath, ['--input-type=module', '-e', script], { cwd });
    // pnpm links only direct dependencies at the top: @berthjs/sendfile is core's.
    const sendfile = await node(
      "console.log((await import('@berthjs/sendfile')).sendfileAvailable)",
      join(dir, 'node_modules/@berthjs/core'),
    );
    assert.equal(sendfile.stdout.trim(), 'true');
    const sqlite = await node(
      "const { createSqlMetadataStore } = await import('@berthjs/metadata-sql');\n" +
        "console.log(await createSqlMetadataStore({ filename: './data/x.sqlite' }).then(() => 'opened', (e) => e.message));",
      dir,
    );
    assert.match(sqlite.stdout, /^better-sqlite3 is installed but its native addon does not load .*pnpm approve-builds/);
  });

  it('answers npx berth --version and npx berth serve once @berthjs/cli is installed', async () => {
    await npm(['install', specs['@berthjs/cli']]);
    const version = JSON.parse(await readFile(join(root, 'packages/cli/package.json'), 'utf8')).version;
    for (const command of [['berth'], ['@berthjs/cli']]) {
      const { stdout } = await run('npx', ['--no-install', ...command, '--version'], { cwd: project });
      assert.equal(stdout.trim(), version, `npx ${command[0]} --version`);
    }
    const port = await freePort();
    const data = join(work, 'serve-data');
    const args = ['npx', '--no-install', 'berth', 'serve', '--port', String(port), '--data-dir', data, '--log-level', 'silent'];
    const berth = await start(project, args, {}, port, '/v2/');
    try {
      const v2 = await fetch(`${berth.url}/v2/`);
      assert.equal(v2.status, 200);
      assert.equal(v2.headers.get('docker-distribution-api-version'), 'registry/2.0');
      await pushAndPull(`127.0.0.1:${port}`, 'team/app');
      assert.ok((await stat(join(data, 'berth.sqlite'))).isFile(), 'metadata in the data dir, on the embedded SQLite');
    } finally {
      await berth.stop();
    }
  });
});
