import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { htpasswdLine } from '@berthjs/auth';
import { parseServeConfig } from '@berthjs/cli';
import { rawRequest } from './support/client.js';
import { spawnBerth, type BerthProcess } from './support/cli.js';
import { makeOciLayout, readLayoutBlob, requireCommand } from './support/oci-layout.js';

const run = promisify(execFile);
// spawnBerth waits for the "berth is serving" log line: keep it even if the environment silences logs.
const READY_LOGS = { BERTH_LOG_LEVEL: 'info' };

/** Run a client; resolves to its output, or to the failure with its exit code and stderr. */
async function client(command: string, args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { maxBuffer: 1 << 26, timeout: 120_000 });
    return { ok: true, stdout, stderr };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return { ok: false, stdout: e.stdout ?? '', stderr: e.stderr ?? String(error) };
  }
}

describe('berth serve auth config', () => {
  it('reads --htpasswd, --anonymous-pull and the token flags, from flags or the environment', () => {
    const off = parseServeConfig([], {});
    assert.equal(off.htpasswd, undefined);
    assert.equal(off.token, undefined);
    assert.equal(off.anonymousPull, false);
    const flags = parseServeConfig(
      ['--htpasswd', 'users', '--token-auth', '--token-ttl', '60', '--token-verify-keys', 'a.pem,b.pem', '--anonymous-pull'],
      {},
    );
    assert.match(flags.htpasswd!, /\/users$/);
    assert.equal(flags.anonymousPull, true);
    assert.deepEqual(
      { ...flags.token, verifyKeyFiles: flags.token!.verifyKeyFiles.map((f) => f.split('/').pop()) },
      {
        realm: undefined,
        service: 'berth',
        keyFile: undefined,
        verifyKeyFiles: ['a.pem', 'b.pem'],
        ttlSeconds: 60,
      },
    );
    const env = parseServeConfig([], {
      BERTH_HTPASSWD: '/etc/berth/users',
      BERTH_TOKEN_AUTH: 'true',
      BERTH_TOKEN_REALM: 'https://r.example/token',
      BERTH_TOKEN_SERVICE: 'r.example',
      BERTH_TOKEN_KEY_FILE: '/k.pem',
    });
    assert.deepEqual(
      [env.htpasswd, env.token?.realm, env.token?.service, env.token?.keyFile],
      ['/etc/berth/users', 'https://r.example/token', 'r.example', '/k.pem'],
    );
    assert.throws(() => parseServeConfig(['--token-auth'], {}), /--htpasswd/);
    assert.throws(() => parseServeConfig(['--htpasswd', 'f', '--token-auth', '--token-ttl', 'soon'], {}), /--token-ttl/);
  });
});

describe('berth serve --htpasswd (Basic auth)', () => {
  let dir: string;
  let berth: BerthProcess;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-basic-'));
    await writeFile(join(dir, 'users'), `${await htpasswdLine('ci', 'pa55', 4)}\n`);
    berth = await spawnBerth(['--data-dir', join(dir, 'data'), '--htpasswd', join(dir, 'users'), '--anonymous-pull'], READY_LOGS);
  });
  after(async () => {
    await berth?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('lets anonymous callers pull but not push, users push, and refuses wrong passwords', async () => {
    const auth = (user: string, pass: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` });
    assert.equal((await rawRequest(berth.url, '/v2/')).status, 200);
    const anonPush = await rawRequest(berth.url, '/v2/a/b/blobs/uploads/', { method: 'POST' });
    assert.equal(anonPush.status, 401);
    assert.equal(anonPush.header('www-authenticate'), 'Basic realm="berth"');
    assert.equal((await rawRequest(berth.url, '/v2/a/b/blobs/uploads/', { method: 'POST', headers: auth('ci', 'pa55') })).status, 202);
    assert.equal((await rawRequest(berth.url, '/v2/a/b/tags/list', { headers: auth('ci', 'nope') })).status, 401);
    assert.equal((await rawRequest(berth.url, '/v2/a/b/tags/list', { headers: auth('ghost', 'pa55') })).status, 401);
  });
});

for (const tool of ['skopeo', 'podman'] as const) {
  const skip = requireCommand(tool);
  describe(`${tool} login, push and pull through berth serve --token-auth`, { skip }, () => {
    let dir: string;
    let berth: BerthProcess;
    let host: string;
    let authfile: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), `berth-${tool}-auth-`));
      await writeFile(join(dir, 'users'), `${await htpasswdLine('ci', 'correct horse', 4)}\n`);
      berth = await spawnBerth(['--data-dir', join(dir, 'data'), '--htpasswd', join(dir, 'users'), '--token-auth'], READY_LOGS);
      host = new URL(berth.url).host;
      authfile = join(dir, 'auth.json');
    });
    after(async () => {
      await berth?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    // Each test has its own auth file, so nothing leaks in from (or out to) the user's own logins.
    const login = (password: string, file = authfile) =>
      client(tool, ['login', '--tls-verify=false', '--authfile', file, '-u', 'ci', '-p', password, host]);

    it('refuses a wrong password cleanly and stores no credentials', async () => {
      const file = join(dir, 'wrong.json');
      const res = await login('wrong horse', file);
      assert.equal(res.ok, false, res.stdout);
      assert.match(res.stderr, /unauthorized|invalid username\/password|401/i);
      const saved = await readFile(file, 'utf8').catch(() => '{}');
      assert.ok(!saved.includes(host), saved);
    });

    it('refuses a push without login with an auth error', async () => {
      const { dir: layout } = await makeOciLayout('v0', 1);
      try {
        const res = await client('skopeo', [
          '--insecure-policy',
          'copy',
          '--dest-tls-verify=false',
          '--authfile',
          join(dir, 'empty.json'),
          `oci:${join(layout, 'layout')}:v0`,
          `docker://${host}/team/app:v0`,
        ]);
        assert.equal(res.ok, false);
        assert.match(res.stderr, /unauthorized|authentication required/i);
      } finally {
        await rm(layout, { recursive: true, force: true });
      }
    });

    it('logs in, then copies an image in and out byte-identical', async () => {
      const res = await login('correct horse');
      assert.ok(res.ok, res.stderr);
      assert.match(await readFile(authfile, 'utf8'), new RegExp(host.replace('.', '\\.')));
      const { dir: layout, manifestDigest } = await makeOciLayout('v1', 2);
      try {
        const src = join(layout, 'layout');
        const ref = `docker://${host}/team/${tool}:v1`;
        const skopeo = (...args: string[]) => client('skopeo', ['--insecure-policy', ...args]);
        // podman's stored credentials are read by skopeo (same containers auth file format).
        const push = await skopeo('copy', '--dest-tls-verify=false', '--dest-authfile', authfile, `oci:${src}:v1`, ref);
        assert.ok(push.ok, push.stderr);
        const out = join(layout, 'out');
        const pull = await skopeo('copy', '--src-tls-verify=false', '--src-authfile', authfile, ref, `oci:${out}:v1`);
        assert.ok(pull.ok, pull.stderr);
        const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
        assert.equal(index.manifests[0].digest, manifestDigest);
        const manifest = JSON.parse((await readLayoutBlob(out, manifestDigest)).toString());
        for (const d of [manifest.config, ...manifest.layers]) {
          assert.ok((await readLayoutBlob(out, d.digest)).equals(await readLayoutBlob(src, d.digest)), d.digest);
        }
        // Without credentials the same pull is refused.
        const anon = await skopeo('inspect', '--tls-verify=false', '--authfile', join(dir, 'none.json'), '--raw', ref);
        assert.equal(anon.ok, false);
      } finally {
        await rm(layout, { recursive: true, force: true });
      }
    });
  });
}
