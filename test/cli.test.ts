import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseServeConfig } from '@berthjs/cli';
import { randomBlob, rawRequest, sha256, TestClient } from './support/client.js';
import { runBerth, spawnBerth, type BerthProcess } from './support/cli.js';

describe('berth serve config', () => {
  it('reads flags, then environment variables, then defaults', () => {
    const defaults = parseServeConfig([], {});
    assert.equal(defaults.port, 5000);
    assert.equal(defaults.host, '127.0.0.1');
    assert.match(defaults.dataDir, /\/data$/);
    assert.equal(defaults.databaseUrl, undefined);
    assert.equal(defaults.deletes, true);
    const env = parseServeConfig([], {
      BERTH_PORT: '6000',
      BERTH_HOST: '0.0.0.0',
      BERTH_DATA_DIR: '/srv/berth',
      BERTH_DATABASE_URL: 'postgres://x/y',
    });
    assert.deepEqual([env.port, env.host, env.dataDir, env.databaseUrl], [6000, '0.0.0.0', '/srv/berth', 'postgres://x/y']);
    const flags = parseServeConfig(['--port', '7000', '--no-delete'], { BERTH_PORT: '6000' });
    assert.equal(flags.port, 7000);
    assert.equal(flags.deletes, false);
    assert.equal(defaults.sendfile, true);
    assert.equal(parseServeConfig(['--no-sendfile'], {}).sendfile, false);
    // Boolean variables take 1 as well as true.
    const fromEnv = parseServeConfig([], { BERTH_NO_DELETE: '1', BERTH_NO_SENDFILE: 'true' });
    assert.deepEqual([fromEnv.deletes, fromEnv.sendfile], [false, false]);
    assert.throws(() => parseServeConfig(['--port', 'abc'], {}), /--port/);
    assert.throws(() => parseServeConfig(['--bogus'], {}));
  });
});

describe('two berth processes sharing one data directory and database', () => {
  let dir: string;
  let a: BerthProcess;
  let b: BerthProcess;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-cli-'));
    [a, b] = await Promise.all([spawnBerth(['--data-dir', dir]), spawnBerth(['--data-dir', dir])]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  it('continues a chunked upload across processes and ends with a verified digest', async () => {
    const data = randomBlob(5 * 1024 * 1024 + 17);
    const chunk = 1024 * 1024;
    const start = await rawRequest(a.url, '/v2/shared/app/blobs/uploads/', { method: 'POST' });
    assert.equal(start.status, 202);
    let location = start.header('location')!;
    for (let offset = 0, i = 0; offset < data.length; offset += chunk, i++) {
      const end = Math.min(offset + chunk, data.length) - 1;
      const target = i % 2 === 0 ? b : a; // alternate, starting on the process that did not open it
      const res = await rawRequest(target.url, location, {
        method: 'PATCH',
        body: data.subarray(offset, end + 1),
        headers: { 'Content-Range': `${offset}-${end}` },
      });
      assert.equal(res.status, 202, res.text);
      location = res.header('location')!;
    }
    const put = await rawRequest(a.url, `${location}?digest=${sha256(data)}`, { method: 'PUT' });
    assert.equal(put.status, 201, put.text);
    for (const server of [a, b]) {
      const get = await rawRequest(server.url, `/v2/shared/app/blobs/${sha256(data)}`);
      assert.equal(get.status, 200);
      assert.equal(sha256(get.body), sha256(data));
    }
  });

  it('rejects a wrong digest for a session that moved, storing nothing', async () => {
    const data = randomBlob(200_000);
    const start = await rawRequest(a.url, '/v2/shared/app/blobs/uploads/', { method: 'POST' });
    const location = start.header('location')!;
    await rawRequest(a.url, location, { method: 'PATCH', body: data.subarray(0, 100_000), headers: { 'Content-Range': '0-99999' } });
    await rawRequest(b.url, location, {
      method: 'PATCH',
      body: data.subarray(100_000),
      headers: { 'Content-Range': `100000-${data.length - 1}` },
    });
    const put = await rawRequest(a.url, `${location}?digest=${sha256(data.subarray(1))}`, { method: 'PUT' });
    assert.equal(put.status, 400);
    assert.equal(put.json().errors[0].code, 'DIGEST_INVALID');
    assert.equal((await rawRequest(b.url, `/v2/shared/app/blobs/${sha256(data.subarray(1))}`, { method: 'HEAD' })).status, 404);
  });

  it('sees manifests pushed through the other process', async () => {
    const client = new TestClient(a.url);
    const { digest } = await client.pushImage('shared/img', 'v1');
    const head = await rawRequest(b.url, '/v2/shared/img/manifests/v1', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.header('docker-content-digest'), digest);
  });

  it('serves with a 16-thread libuv pool, or the size the operator set', async () => {
    // The installed command (dist/bin.cjs, built by `pnpm test`): under tsx the loader starts the
    // pool before any of Berth runs. The pool starts all its threads at its first fs call.
    const threads = async (pid: number) => (await readdir(`/proc/${pid}/task`)).length;
    for (const [env, check] of [
      [{}, (n: number) => n >= 17],
      [{ UV_THREADPOOL_SIZE: '2' }, (n: number) => n < 16],
    ] as const) {
      const server = await spawnBerth(['--data-dir', dir], { UV_THREADPOOL_SIZE: undefined, ...env }, { built: true });
      try {
        assert.equal((await rawRequest(server.url, '/v2/shared/app/blobs/uploads/', { method: 'POST' })).status, 202);
        const count = await threads(server.child.pid!);
        assert.ok(check(count), `${count} threads with ${JSON.stringify(env)}`);
      } finally {
        await server.stop();
      }
    }
  });

  it('tunes V8 without complaints on this Node (a flag its V8 lacks would print an error)', async () => {
    // Flags differ between V8 versions: one this Node's V8 lacks is refused at startup, on stderr.
    const { code, stdout, stderr } = await runBerth(['--version']);
    assert.equal(code, 0);
    assert.match(stdout, /^\d+\.\d+\.\d+/);
    assert.doesNotMatch(stderr, /unrecognized flag|Error/);
  });

  it('logs one line per request', async () => {
    const before = a.logs.length;
    await rawRequest(a.url, '/v2/');
    await new Promise((r) => setTimeout(r, 100));
    const lines = a.logs.slice(before);
    assert.equal(lines.length, 1);
    assert.deepEqual([lines[0].method, lines[0].url, lines[0].status], ['GET', '/v2/', 200]);
  });
});
