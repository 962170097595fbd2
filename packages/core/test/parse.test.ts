import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDigest } from '../src/digest.js';
import { parseRange } from '../src/handlers/blobs.js';
import { MEDIA_TYPES, parseManifest } from '../src/manifest.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe('parseRange', () => {
  it('serves single ranges, suffixes and open ends, clamped to the size', () => {
    assert.deepEqual(parseRange('bytes=0-0', 10), { start: 0, end: 0 });
    assert.deepEqual(parseRange('bytes=5-', 10), { start: 5, end: 9 });
    assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
    assert.deepEqual(parseRange('bytes=-30', 10), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=8-100', 10), { start: 8, end: 9 });
  });
  it('ignores what it does not serve and refuses what cannot be satisfied', () => {
    assert.equal(parseRange(undefined, 10), undefined);
    assert.equal(parseRange('bytes=0-1,3-4', 10), undefined);
    assert.equal(parseRange('items=0-1', 10), undefined);
    assert.equal(parseRange('bytes=5-1', 10), 'unsatisfiable');
    assert.equal(parseRange('bytes=10-', 10), 'unsatisfiable');
    assert.equal(parseRange('bytes=-0', 10), 'unsatisfiable');
    assert.equal(parseRange('bytes=0-', 0), 'unsatisfiable');
  });
});

describe('parseDigest', () => {
  it('accepts sha256 and sha512, rejects everything else', () => {
    assert.equal(parseDigest(d('a')).algorithm, 'sha256');
    assert.equal(parseDigest(`sha512:${'b'.repeat(128)}`).algorithm, 'sha512');
    for (const bad of [
      undefined,
      '',
      d('A'),
      'sha256:abc',
      `sha384:${'a'.repeat(96)}`,
      `sha256:${'a'.repeat(63)}/`,
      `SHA256:${'a'.repeat(64)}`,
    ]) {
      assert.throws(() => parseDigest(bad), { code: 'DIGEST_INVALID' });
    }
  });
});

describe('parseManifest', () => {
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('c'), size: 2 };
  const parse = (value: unknown, type?: string) => parseManifest(Buffer.from(JSON.stringify(value)), type);

  it('lists the blobs an image needs, minus non-distributable layers', () => {
    const m = parse(
      {
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociManifest,
        config,
        layers: [
          { mediaType: 'l', digest: d('1'), size: 1 },
          { mediaType: 'l', digest: d('2'), size: 1, urls: ['https://x'] },
          { mediaType: 'l', digest: d('1'), size: 1 },
        ],
      },
      `${MEDIA_TYPES.ociManifest}; charset=utf-8`,
    );
    assert.deepEqual(m.blobs, [d('c'), d('1')]);
    assert.equal(m.artifactType, config.mediaType);
    assert.equal(m.kind, 'image');
  });
  it('reads subject, artifactType and annotations; infers the type when none is given', () => {
    const m = parse({
      schemaVersion: 2,
      manifests: [{ mediaType: MEDIA_TYPES.ociManifest, digest: d('e'), size: 3 }],
      subject: { mediaType: 'x', digest: d('f'), size: 1 },
      annotations: { a: 'b' },
    });
    assert.equal(m.mediaType, MEDIA_TYPES.ociIndex);
    assert.equal(m.subject?.digest, d('f'));
    assert.equal(m.artifactType, undefined);
    assert.deepEqual(m.children, [d('e')]);
    assert.deepEqual(m.annotations, { a: 'b' });
  });
  it('refuses a mediaType that contradicts Content-Type', () => {
    assert.throws(() => parse({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [] }, MEDIA_TYPES.ociManifest), {
      code: 'MANIFEST_INVALID',
    });
  });
});
