import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { spawnBerth, type BerthProcess } from './support/cli.js';
import { makeOciLayout, readLayoutBlob, requireCommand } from './support/oci-layout.js';

const run = promisify(execFile);
const skip = requireCommand('skopeo');

describe('skopeo against berth serve (embedded default)', { skip }, () => {
  let dataDir: string;
  let berth: BerthProcess;
  let host: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'berth-skopeo-'));
    berth = await spawnBerth(['--data-dir', dataDir]);
    host = new URL(berth.url).host;
  });
  after(async () => {
    await berth?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  const skopeo = (...args: string[]) => run('skopeo', ['--insecure-policy', ...args], { maxBuffer: 1 << 26 });

  it('pushes an OCI image and copies it back byte-identical', async () => {
    const { dir, manifestDigest } = await makeOciLayout('v1', 3);
    try {
      const src = join(dir, 'layout');
      await skopeo('copy', '--dest-tls-verify=false', `oci:${src}:v1`, `docker://${host}/test/image:v1`);
      const { stdout: raw } = await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${host}/test/image:v1`);
      assert.equal(raw, (await readLayoutBlob(src, manifestDigest)).toString());

      const out = join(dir, 'out');
      await skopeo('copy', '--src-tls-verify=false', `docker://${host}/test/image:v1`, `oci:${out}:v1`);
      const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
      assert.equal(index.manifests[0].digest, manifestDigest);
      const manifest = JSON.parse((await readLayoutBlob(out, manifestDigest)).toString());
      for (const d of [manifest.config, ...manifest.layers]) {
        assert.ok((await readLayoutBlob(out, d.digest)).equals(await readLayoutBlob(src, d.digest)), d.digest);
      }
      const { stdout: tags } = await skopeo('list-tags', '--tls-verify=false', `docker://${host}/test/image`);
      assert.deepEqual(JSON.parse(tags).Tags, ['v1']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
