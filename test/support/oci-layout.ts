import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function writeBlob(layout: string, data: Buffer) {
  const digest = digestOf(data);
  await writeFile(join(layout, 'blobs', 'sha256', digest.slice(7)), data);
  return { digest, size: data.length };
}

/**
 * Make an OCI image layout on disk with `layers` real gzipped tar layers (built with `tar`), so
 * real clients (skopeo, podman) can copy it without any network access.
 */
export async function makeOciLayout(tag: string, layers = 2): Promise<{ dir: string; manifestDigest: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-oci-'));
  const layout = join(dir, 'layout');
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const layerDescriptors = [];
  const diffIds = [];
  for (let i = 0; i < layers; i++) {
    const root = join(dir, `rootfs${i}`);
    await mkdir(join(root, 'data'), { recursive: true });
    await writeFile(join(root, 'data', `file${i}.bin`), randomBytes(64 * 1024 * (i + 1)));
    const tar = execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '-C', root, '-cf', '-', 'data'], {
      maxBuffer: 1 << 28,
    });
    diffIds.push(digestOf(tar));
    const gz = execFileSync('gzip', ['-n', '-c'], { input: tar, maxBuffer: 1 << 28 });
    layerDescriptors.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...(await writeBlob(layout, gz)) });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map(() => ({ created_by: 'berth test' })),
    }),
  );
  const configDesc = { mediaType: 'application/vnd.oci.image.config.v1+json', ...(await writeBlob(layout, config)) };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: configDesc,
      layers: layerDescriptors,
    }),
  );
  const manifestDesc = await writeBlob(layout, manifest);
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        ...manifestDesc,
        annotations: { 'org.opencontainers.image.ref.name': tag },
      },
    ],
  };
  await writeFile(join(layout, 'index.json'), JSON.stringify(index));
  return { dir, manifestDigest: manifestDesc.digest };
}

/** Every blob of an OCI layout: digest → bytes. */
export async function readLayoutBlob(layout: string, digest: string): Promise<Buffer> {
  return readFile(join(layout, 'blobs', digest.replace(':', '/')));
}

/** Whether a command is on PATH. In CI, a missing client is a failure, never a skip. */
export function hasCommand(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function requireCommand(command: string): string | false {
  if (hasCommand(command)) return false;
  if (process.env.CI) throw new Error(`${command} is not installed; .ci/run must install it`);
  return `${command} is not installed`;
}
