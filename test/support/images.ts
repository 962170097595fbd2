import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Images and artifacts made on disk for the real-client tests: no network anywhere. */

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string; variant?: string };
  artifactType?: string;
  annotations?: Record<string, string>;
}

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  empty: 'application/vnd.oci.empty.v1+json',
} as const;

export const sha256 = (data: Buffer | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** An OCI image layout being assembled: blobs are written as they are made, index.json at the end. */
export class LayoutBuilder {
  private readonly refs: Descriptor[] = [];

  private constructor(readonly dir: string) {}

  static async create(parent?: string): Promise<LayoutBuilder> {
    const dir = join(parent ?? (await mkdtemp(join(tmpdir(), 'berth-clients-'))), 'layout');
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    return new LayoutBuilder(dir);
  }

  async blob(mediaType: string, data: Buffer | string): Promise<Descriptor> {
    const bytes = Buffer.from(data);
    const digest = sha256(bytes);
    await writeFile(join(this.dir, 'blobs', 'sha256', digest.slice(7)), bytes);
    return { mediaType, digest, size: bytes.length };
  }

  async json(mediaType: string, value: unknown): Promise<Descriptor> {
    return this.blob(mediaType, JSON.stringify(value));
  }

  /** An image of `layers` real gzipped tar layers, each with a distinct file. */
  async image(options: { architecture?: string; os?: string; layers?: number; label?: string } = {}): Promise<Descriptor> {
    const { architecture = 'amd64', os = 'linux', layers = 2, label = 'img' } = options;
    const descriptors: Descriptor[] = [];
    const diffIds: string[] = [];
    for (let i = 0; i < layers; i++) {
      const tar = tarOf({ [`data/${label}-${architecture}-${i}.bin`]: randomBytes(16 * 1024 * (i + 1)) });
      diffIds.push(sha256(tar));
      descriptors.push(await this.blob(MEDIA.layer, execFileSync('gzip', ['-n', '-c'], { input: tar, maxBuffer: 1 << 28 })));
    }
    const config = await this.json(MEDIA.config, {
      architecture,
      os,
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map(() => ({ created_by: `berth clients test ${label}` })),
    });
    const manifest = await this.json(MEDIA.manifest, { schemaVersion: 2, mediaType: MEDIA.manifest, config, layers: descriptors });
    return { ...manifest, platform: { architecture, os } };
  }

  /** An image index over several single-platform images. */
  async index(manifests: Descriptor[]): Promise<Descriptor> {
    return this.json(MEDIA.index, { schemaVersion: 2, mediaType: MEDIA.index, manifests });
  }

  /** An artifact (e.g. an SBOM) attached to `subject`: empty config, one layer, `artifactType`. */
  async artifact(subject: Descriptor, artifactType: string, content: string, layerType: string): Promise<Descriptor> {
    const config = await this.blob(MEDIA.empty, '{}');
    const layer = await this.blob(layerType, content);
    const { mediaType, digest, size } = subject;
    const manifest = await this.json(MEDIA.manifest, {
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      artifactType,
      config,
      layers: [layer],
      subject: { mediaType, digest, size },
      annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
    });
    return { ...manifest, artifactType };
  }

  /** Name `descriptor` `tag` in index.json; call `save()` afterwards. */
  tag(tag: string, descriptor: Descriptor): this {
    const { mediaType, digest, size } = descriptor;
    this.refs.push({ mediaType, digest, size, annotations: { 'org.opencontainers.image.ref.name': tag } });
    return this;
  }

  async save(): Promise<void> {
    await writeFile(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests: this.refs }));
  }

  read(digest: string): Promise<Buffer> {
    return readLayoutFile(this.dir, digest);
  }
}

export function readLayoutFile(layout: string, digest: string): Promise<Buffer> {
  return readFile(join(layout, 'blobs', digest.replace(':', '/')));
}

/** A reproducible tar (sorted names, fixed times and owners) of the given files. */
export function tarOf(files: Record<string, Buffer | string>): Buffer {
  const root = mkdtempSync(join(tmpdir(), 'berth-tar-'));
  try {
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(dirname(join(root, name)), { recursive: true });
      writeFileSync(join(root, name), data);
    }
    return execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', root, '-cf', '-', '.'], {
      maxBuffer: 1 << 28,
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** A small root filesystem directory (for podman import, buildah copy). */
export async function makeRootfs(parent: string, label: string): Promise<string> {
  const root = join(parent, `rootfs-${label}`);
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(join(root, 'srv'), { recursive: true });
  await writeFile(join(root, 'etc', 'os-release'), `NAME=berth-${label}\n`);
  await writeFile(join(root, 'srv', 'payload.bin'), randomBytes(96 * 1024));
  return root;
}
