// `berth serve --tls-cert --tls-key`: HTTPS that skopeo verifies against a CA made here.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { spawnBerth, type BerthProcess } from './support/cli.js';
import { makeOciLayout, readLayoutBlob, requireCommand } from './support/oci-layout.js';

const run = promisify(execFile);
const skip = requireCommand('skopeo') || requireCommand('openssl');

/** A CA, and a certificate it signed for 127.0.0.1 (PEM files in `dir`). */
async function makeCertificates(dir: string): Promise<{ caDir: string; cert: string; key: string }> {
  const file = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    file('ca.key'),
    '-out',
    file('ca.crt'),
    '-subj',
    '/CN=berth test CA',
    '-days',
    '1',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  ]);
  await run('openssl', ['req', ...ec, '-keyout', file('server.key'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(file('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    file('server.csr'),
    '-CA',
    file('ca.crt'),
    '-CAkey',
    file('ca.key'),
    '-CAcreateserial',
    '-out',
    file('server.crt'),
    '-days',
    '1',
    '-extfile',
    file('ext.cnf'),
  ]);
  const caDir = file('trust');
  await mkdir(caDir);
  await writeFile(join(caDir, 'ca.crt'), await readFile(file('ca.crt')));
  return { caDir, cert: file('server.crt'), key: file('server.key') };
}

describe('berth serve over TLS', { skip }, () => {
  let dir: string;
  let berth: BerthProcess;
  let host: string;
  let caDir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-tls-'));
    const certs = await makeCertificates(dir);
    caDir = certs.caDir;
    berth = await spawnBerth(['--data-dir', join(dir, 'data'), '--tls-cert', certs.cert, '--tls-key', certs.key], {}, { built: true });
    host = new URL(berth.url).host;
  });
  after(async () => {
    await berth?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const skopeo = (...args: string[]) => run('skopeo', ['--insecure-policy', ...args], { maxBuffer: 1 << 26 });

  it('announces https and round-trips an image with skopeo verifying the certificate', async () => {
    assert.match(berth.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(berth.logs.find((l) => l.msg === 'berth is serving')?.tls, true);
    const { dir: layoutDir, manifestDigest } = await makeOciLayout('v1', 2);
    try {
      const src = join(layoutDir, 'layout');
      // Without the CA, skopeo refuses the certificate: verification is really on.
      await assert.rejects(skopeo('copy', `oci:${src}:v1`, `docker://${host}/tls/image:v1`), /certificate|x509/);
      await skopeo('copy', '--dest-cert-dir', caDir, `oci:${src}:v1`, `docker://${host}/tls/image:v1`);
      const out = join(layoutDir, 'out');
      await skopeo('copy', '--src-cert-dir', caDir, `docker://${host}/tls/image:v1`, `oci:${out}:v1`);
      const manifest = JSON.parse((await readLayoutBlob(out, manifestDigest)).toString());
      for (const d of [manifest.config, ...manifest.layers]) {
        assert.ok((await readLayoutBlob(out, d.digest)).equals(await readLayoutBlob(src, d.digest)), d.digest);
      }
    } finally {
      await rm(layoutDir, { recursive: true, force: true });
    }
  });
});
