import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { LayoutBuilder, MEDIA, makeRootfs, readLayoutFile, sha256 } from './images.js';
import { requireCommand } from './oci-layout.js';

const exec = promisify(execFile);

/** A registry the clients talk to: `host` is `127.0.0.1:<port>`, plain HTTP. */
export interface RegistryUnderTest {
  host: string;
  stop(): Promise<void>;
}

async function run(command: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await exec(command, args, { maxBuffer: 1 << 26, env: env ? { ...process.env, ...env } : process.env });
    return stdout;
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr || (error as Error).message}`);
  }
}

// Evaluated once per file: in CI a missing client throws here and fails the file (never skips).
const skips = {
  skopeo: requireCommand('skopeo'),
  podman: requireCommand('podman'),
  buildah: requireCommand('buildah'),
};

/**
 * The real-client suite (skopeo, podman, buildah) against one registry. `start` is the only thing
 * that differs between backends (test/clients.test.ts: fs + SQLite; test/clients.s3-postgres.test.ts).
 */
export function describeClients(name: string, start: () => Promise<RegistryUnderTest>): void {
  describe(`real clients against ${name}`, { timeout: 120_000 }, () => {
    let registry: RegistryUnderTest;
    let host: string;
    let work: string;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'berth-clients-'));
      registry = await start();
      host = registry.host;
    });
    after(async () => {
      await registry?.stop();
      // podman/buildah storage may hold read-only files; rm -rf copes with them.
      await rm(work, { recursive: true, force: true });
    });

    const skopeo = (...args: string[]) => run('skopeo', ['--insecure-policy', ...args]);
    const api = async (path: string, init?: RequestInit) => fetch(`http://${host}${path}`, init);

    describe('skopeo', { skip: skips.skopeo }, () => {
      it('copies a multi-layer OCI image in and out with identical digests; inspect, list-tags', async () => {
        const layout = await LayoutBuilder.create(await mkdtemp(join(work, 'oci-')));
        const image = await layout.image({ layers: 3, label: 'oci' });
        await layout.tag('v1', image).tag('v2', image).save();
        await skopeo('copy', '--dest-tls-verify=false', `oci:${layout.dir}:v1`, `docker://${host}/clients/oci:v1`);
        await skopeo('copy', '--dest-tls-verify=false', `oci:${layout.dir}:v2`, `docker://${host}/clients/oci:v2`);

        const raw = await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${host}/clients/oci:v1`);
        assert.equal(raw, (await layout.read(image.digest)).toString(), 'manifest bytes are kept exactly');
        const info = JSON.parse(await skopeo('inspect', '--tls-verify=false', `docker://${host}/clients/oci:v1`));
        assert.equal(info.Digest, image.digest);
        assert.equal(info.Layers.length, 3);
        assert.equal(info.Architecture, 'amd64');
        const tags = JSON.parse(await skopeo('list-tags', '--tls-verify=false', `docker://${host}/clients/oci`));
        assert.deepEqual(tags.Tags.sort(), ['v1', 'v2']);

        const out = join(work, 'oci-out');
        await skopeo('copy', '--src-tls-verify=false', `docker://${host}/clients/oci:v1`, `oci:${out}:v1`);
        const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
        assert.equal(index.manifests[0].digest, image.digest);
        const manifest = JSON.parse((await layout.read(image.digest)).toString());
        for (const d of [manifest.config, ...manifest.layers]) {
          assert.ok((await readLayoutFile(out, d.digest)).equals(await layout.read(d.digest)), d.digest);
        }
      });

      it('copies a Docker schema2 image (--format v2s2) in and back out', async () => {
        const layout = await LayoutBuilder.create(await mkdtemp(join(work, 'v2s2-')));
        const image = await layout.image({ layers: 2, label: 'docker' });
        await layout.tag('v1', image).save();
        await skopeo('copy', '--format', 'v2s2', '--dest-tls-verify=false', `oci:${layout.dir}:v1`, `docker://${host}/clients/docker:v1`);

        const raw = await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${host}/clients/docker:v1`);
        const manifest = JSON.parse(raw);
        assert.equal(manifest.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
        const head = await api('/v2/clients/docker/manifests/v1', { method: 'HEAD', headers: { Accept: manifest.mediaType } });
        assert.equal(head.headers.get('content-type'), manifest.mediaType);
        assert.equal(head.headers.get('docker-content-digest'), sha256(raw));

        const out = join(work, 'v2s2-out');
        await skopeo('copy', '--src-tls-verify=false', `docker://${host}/clients/docker:v1`, `dir:${out}`);
        const copied = await readFile(join(out, 'manifest.json'));
        assert.equal(sha256(copied), sha256(raw), 'the manifest comes back byte-identical');
        // Layers are the same gzip bytes (schema2 conversion only changes media types).
        const source = JSON.parse((await layout.read(image.digest)).toString());
        for (const [i, layer] of manifest.layers.entries()) {
          assert.equal(layer.digest, source.layers[i].digest);
          assert.ok((await readFile(join(out, layer.digest.slice(7)))).equals(await layout.read(layer.digest)));
        }
      });

      it('deletes a manifest with skopeo delete', async () => {
        const layout = await LayoutBuilder.create(await mkdtemp(join(work, 'del-')));
        const image = await layout.image({ layers: 1, label: 'del' });
        await layout.tag('gone', image).save();
        await skopeo('copy', '--dest-tls-verify=false', `oci:${layout.dir}:gone`, `docker://${host}/clients/del:gone`);
        await skopeo('delete', '--tls-verify=false', `docker://${host}/clients/del:gone`);
        await assert.rejects(skopeo('inspect', '--tls-verify=false', '--raw', `docker://${host}/clients/del:gone`), /manifest unknown/i);
        assert.equal((await api(`/v2/clients/del/manifests/${image.digest}`, { method: 'HEAD' })).status, 404);
        const tags = await (await api('/v2/clients/del/tags/list')).json();
        assert.deepEqual(tags.tags ?? [], []);
      });

      it('copies a multi-arch index with --all and selects platforms from it', async () => {
        const layout = await LayoutBuilder.create(await mkdtemp(join(work, 'multi-')));
        const amd64 = await layout.image({ architecture: 'amd64', layers: 1, label: 'multi' });
        const arm64 = await layout.image({ architecture: 'arm64', layers: 2, label: 'multi' });
        const index = await layout.index([amd64, arm64]);
        await layout.tag('v1', index).save();
        await skopeo('copy', '--all', '--dest-tls-verify=false', `oci:${layout.dir}:v1`, `docker://${host}/clients/multi:v1`);

        const raw = await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${host}/clients/multi:v1`);
        assert.equal(sha256(raw), index.digest, 'the index is stored byte-identical');
        for (const [arch, expected] of [
          ['amd64', amd64],
          ['arm64', arm64],
        ] as const) {
          const info = JSON.parse(
            await skopeo('inspect', '--tls-verify=false', '--override-arch', arch, `docker://${host}/clients/multi:v1`),
          );
          // skopeo reports the index's digest; the platform's image shows in its layers.
          const child = JSON.parse((await layout.read(expected.digest)).toString());
          assert.equal(info.Architecture, arch);
          assert.deepEqual(
            info.Layers,
            child.layers.map((l: { digest: string }) => l.digest),
            arch,
          );
        }
        const out = join(work, 'multi-out');
        await skopeo('copy', '--all', '--src-tls-verify=false', `docker://${host}/clients/multi:v1`, `oci:${out}:v1`);
        assert.equal(JSON.parse(await readFile(join(out, 'index.json'), 'utf8')).manifests[0].digest, index.digest);
        for (const child of [amd64, arm64]) {
          assert.ok((await readLayoutFile(out, child.digest)).equals(await layout.read(child.digest)), child.digest);
        }
      });

      it('finds an SBOM attached to an image (subject + artifactType) through the referrers API', async () => {
        const layout = await LayoutBuilder.create(await mkdtemp(join(work, 'sbom-')));
        const image = await layout.image({ layers: 1, label: 'sbom' });
        const sbom = await layout.artifact(
          image,
          'application/spdx+json',
          JSON.stringify({ spdxVersion: 'SPDX-2.3', name: 'clients' }),
          'application/spdx+json',
        );
        const signature = await layout.artifact(image, 'application/vnd.example.signature', 'signed', 'application/octet-stream');
        await layout.tag('v1', image).tag('sbom', sbom).tag('sig', signature).save();
        await skopeo('copy', '--dest-tls-verify=false', `oci:${layout.dir}:v1`, `docker://${host}/clients/sbom:v1`);
        // The artifacts go in by digest, as an attach tool does (no tag needed to be found).
        for (const ref of ['sbom', 'sig']) {
          const digest = ref === 'sbom' ? sbom.digest : signature.digest;
          await skopeo('copy', '--dest-tls-verify=false', `oci:${layout.dir}:${ref}`, `docker://${host}/clients/sbom@${digest}`);
        }
        const raw = await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${host}/clients/sbom@${sbom.digest}`);
        assert.equal(sha256(raw), sbom.digest, 'the artifact manifest (with subject) is kept byte-identical');

        const all = await api(`/v2/clients/sbom/referrers/${image.digest}`);
        assert.equal(all.status, 200);
        assert.equal(all.headers.get('content-type'), MEDIA.index);
        const listed = (await all.json()) as { manifests: { digest: string; artifactType: string; size: number }[] };
        assert.deepEqual(
          listed.manifests.map((m) => [m.digest, m.artifactType, m.size]).sort(),
          [
            [sbom.digest, 'application/spdx+json', sbom.size],
            [signature.digest, 'application/vnd.example.signature', signature.size],
          ].sort(),
        );
        const filtered = await api(
          `/v2/clients/sbom/referrers/${image.digest}?artifactType=${encodeURIComponent('application/spdx+json')}`,
        );
        assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType');
        assert.deepEqual(
          ((await filtered.json()) as typeof listed).manifests.map((m) => m.digest),
          [sbom.digest],
        );
      });
    });

    /** podman and buildah with storage of their own under the test's temp dir (vfs: no overlay mounts needed). */
    const storage = (tool: string) => {
      const dir = join(work, `${tool}-storage`);
      return ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs'];
    };
    const storageEnv = () => ({ TMPDIR: work });

    describe('podman', { skip: skips.podman }, () => {
      const podman = (...args: string[]) =>
        run(
          'podman',
          [...storage('podman'), '--tmpdir', join(work, 'podman-tmp'), '--events-backend', 'none', '--cgroup-manager', 'cgroupfs', ...args],
          storageEnv(),
        );

      it('imports a rootfs, pushes, removes it locally, pulls it back with the same image ID', async () => {
        const rootfs = await makeRootfs(work, 'podman');
        const archive = join(work, 'podman-rootfs.tar');
        await rm(archive, { force: true });
        await run('tar', ['-C', rootfs, '-cf', archive, '.']);
        const ref = `${host}/clients/podman:v1`;
        await podman('import', '--change', 'CMD=/bin/true', archive, ref);
        const id = (await podman('image', 'inspect', '--format', '{{.Id}}', ref)).trim();
        await podman('push', '--tls-verify=false', ref);
        await podman('rmi', ref);
        await assert.rejects(podman('image', 'inspect', ref));
        await podman('pull', '--tls-verify=false', ref);
        assert.equal((await podman('image', 'inspect', '--format', '{{.Id}}', ref)).trim(), id);
        // Also pushable as Docker schema2 under another tag.
        await podman('push', '--tls-verify=false', '--format', 'v2s2', ref, `docker://${host}/clients/podman:v2s2`);
        const head = await api('/v2/clients/podman/manifests/v2s2', {
          method: 'HEAD',
          headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
        });
        assert.equal(head.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json');
      });
    });

    describe('buildah', { skip: skips.buildah }, () => {
      const buildah = (...args: string[]) => run('buildah', [...storage('buildah'), ...args], storageEnv());

      it('builds from scratch, pushes, removes it locally, pulls it back with the same image ID', async () => {
        const rootfs = await makeRootfs(work, 'buildah');
        const ref = `${host}/clients/buildah:v1`;
        const container = (await buildah('from', 'scratch')).trim();
        await buildah('copy', container, `${rootfs}/`, '/');
        await buildah('config', '--cmd', '/bin/true', '--label', 'built-by=berth-tests', container);
        await buildah('commit', '--format', 'docker', container, ref);
        await buildah('rm', container);
        const id = (await buildah('inspect', '--type', 'image', '--format', '{{.FromImageID}}', ref)).trim();
        await buildah('push', '--tls-verify=false', ref);
        await buildah('rmi', ref);
        await buildah('pull', '--tls-verify=false', ref);
        assert.equal((await buildah('inspect', '--type', 'image', '--format', '{{.FromImageID}}', ref)).trim(), id);
        const tags = await (await api('/v2/clients/buildah/tags/list')).json();
        assert.deepEqual(tags.tags, ['v1']);
      });
    });
  });
}
