// The MetadataStore contract: every driver runs this suite against a real backend. Each describe
// block gets a fresh store from the factory, so listings that span the database start empty.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ManifestRecord, MetadataStore } from '@berthjs/core';
import { linkBlob as link } from './seed.js';

export interface MetadataStoreUnderTest {
  store: MetadataStore;
  /** Close the store and remove its database. */
  cleanup: () => Promise<void>;
  /**
   * Open a second store over the same database (the suite closes it). Without it the
   * cross-instance tests are skipped.
   */
  reopen?: () => Promise<MetadataStore>;
}

export type MetadataStoreFactory = () => Promise<MetadataStoreUnderTest>;

const IMAGE = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';

function digestOf(content: Buffer | string): string {
  return `sha256:${createHash('sha256').update(content).digest('hex')}`;
}

function fakeDigest(label: string): string {
  return digestOf(`blob:${label}`);
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function manifest(repository: string, label: string, extra: Partial<ManifestRecord> = {}): ManifestRecord {
  const content = extra.content ?? Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: IMAGE, label }));
  return { repository, digest: digestOf(content), mediaType: IMAGE, content, blobs: [], children: [], ...extra };
}

/** Store a manifest whose references are all present. */
async function put(store: MetadataStore, record: ManifestRecord, tags: string[], tenant = ''): Promise<void> {
  assert.deepEqual(await store.putManifest(record, tags, tenant), [], `putManifest ${record.digest}: references missing`);
}

/** Fresh store for the enclosing describe block. */
function useStore(factory: MetadataStoreFactory): MetadataStoreUnderTest {
  const ctx = {} as MetadataStoreUnderTest;
  before(async () => {
    Object.assign(ctx, await factory());
  });
  after(async () => {
    await ctx.cleanup?.();
  });
  return ctx;
}

export function describeMetadataStore(name: string, factory: MetadataStoreFactory): void {
  describe(`MetadataStore contract: ${name}`, () => {
    describeRepositories(factory);
    describeBlobLinks(factory);
    describeManifests(factory);
    describeTagListing(factory);
    describeReferrers(factory);
    describeUploads(factory);
    describeSharedDatabase(factory);
  });
}

function describeRepositories(factory: MetadataStoreFactory): void {
  describe('repositories', () => {
    const t = useStore(factory);
    const names = ['b/c', 'a', 'a/b', 'a-b', 'a.b', 'a_b', 'ab', 'z'];
    const sorted = ['a', 'a-b', 'a.b', 'a/b', 'a_b', 'ab', 'b/c', 'z'];

    it('answers its probe', async () => {
      await t.store.probe();
      await t.store.probe();
    });

    it('starts empty', async () => {
      assert.deepEqual(await t.store.listRepositories(), []);
      assert.equal(await t.store.repositoryExists('a'), false);
    });

    it('exist once a blob link or a manifest was pushed, not for an upload session', async () => {
      await t.store.createUpload({ id: randomUUID(), repository: 'uploading', tenant: '', state: {} });
      for (const [i, repository] of names.entries()) {
        if (i % 2 === 0) await link(t.store, repository, fakeDigest(repository), 1);
        else await put(t.store, manifest(repository, repository), []);
      }
      for (const repository of names) assert.equal(await t.store.repositoryExists(repository), true, repository);
      assert.equal(await t.store.repositoryExists('uploading'), false);
      assert.equal(await t.store.repositoryExists('a/'), false);
      assert.equal(await t.store.repositoryExists('A'), false);
    });

    it('lists names in byte order', async () => {
      assert.deepEqual([...sorted].sort(byteOrder), sorted);
      assert.deepEqual(await t.store.listRepositories(), sorted);
    });

    it('paginates strictly after last, at most limit', async () => {
      assert.deepEqual(await t.store.listRepositories({ limit: 3 }), ['a', 'a-b', 'a.b']);
      assert.deepEqual(await t.store.listRepositories({ limit: 2, last: 'a.b' }), ['a/b', 'a_b']);
      assert.deepEqual(await t.store.listRepositories({ last: 'ab' }), ['b/c', 'z']);
      assert.deepEqual(await t.store.listRepositories({ last: 'a/' }), ['a/b', 'a_b', 'ab', 'b/c', 'z']);
      assert.deepEqual(await t.store.listRepositories({ last: 'z' }), []);
      assert.deepEqual(await t.store.listRepositories({ limit: 0 }), []);
      assert.deepEqual(await t.store.listRepositories({ limit: 100 }), sorted);
    });
  });
}

function describeBlobLinks(factory: MetadataStoreFactory): void {
  describe('blob links', () => {
    const t = useStore(factory);

    it('links a blob to one repository only, idempotently, creating the repository', async () => {
      const digest = fakeDigest('link');
      assert.equal(await t.store.getBlob('links/a', digest), undefined);
      await link(t.store, 'links/a', digest, 1234);
      await link(t.store, 'links/a', digest, 1234);
      assert.deepEqual(await t.store.getBlob('links/a', digest), { size: 1234 });
      assert.equal(await t.store.getBlob('links/b', digest), undefined);
      assert.equal(await t.store.getBlob('links/a', fakeDigest('other')), undefined);
      assert.equal(await t.store.repositoryExists('links/a'), true);
      assert.equal(await t.store.repositoryExists('links/b'), false);
    });

    it('keeps sizes beyond 32 bits as exact numbers', async () => {
      const size = 5 * 2 ** 32 + 7;
      await link(t.store, 'links/big', fakeDigest('big'), size);
      const blob = await t.store.getBlob('links/big', fakeDigest('big'));
      assert.deepEqual(blob, { size });
      assert.equal(typeof blob?.size, 'number');
    });

    it('unlinks, reporting whether there was a link', async () => {
      const digest = fakeDigest('unlink');
      await link(t.store, 'links/u1', digest, 10);
      await link(t.store, 'links/u2', digest, 10);
      assert.equal(await t.store.unlinkBlob('links/u1', digest), true);
      assert.equal(await t.store.unlinkBlob('links/u1', digest), false);
      assert.equal(await t.store.unlinkBlob('links/never', digest), false);
      assert.equal(await t.store.getBlob('links/u1', digest), undefined);
      assert.deepEqual(await t.store.getBlob('links/u2', digest), { size: 10 });
    });

    it('lists the repositories linking a digest in byte order, paginated', async () => {
      const digest = fakeDigest('shared');
      for (const repository of ['m/b', 'm/a', 'M/z', 'm/a/x', 'm/a-x']) await link(t.store, repository, digest, 3);
      await link(t.store, 'm/other', fakeDigest('not-shared'), 3);
      const all = ['M/z', 'm/a', 'm/a-x', 'm/a/x', 'm/b'];
      assert.deepEqual(await t.store.listBlobRepositories(digest), all);
      assert.deepEqual(await t.store.listBlobRepositories(digest, { limit: 2 }), ['M/z', 'm/a']);
      assert.deepEqual(await t.store.listBlobRepositories(digest, { last: 'm/a', limit: 2 }), ['m/a-x', 'm/a/x']);
      assert.deepEqual(await t.store.listBlobRepositories(digest, { last: 'm/a0' }), ['m/b']);
      assert.deepEqual(await t.store.listBlobRepositories(digest, { limit: 0 }), []);
      assert.deepEqual(await t.store.listBlobRepositories(fakeDigest('nobody')), []);
    });

    it('mounts a blob from a repository that links it, creating the target', async () => {
      const digest = fakeDigest('mount');
      await link(t.store, 'links/mount-from', digest, 77);
      assert.deepEqual(await t.store.mountBlob('links/mount-from', 'links/mount-to', digest, ''), { size: 77 });
      assert.deepEqual(await t.store.getBlob('links/mount-to', digest), { size: 77 });
      assert.equal(await t.store.mountBlob('links/mount-nowhere', 'links/mount-to2', digest, ''), undefined);
      assert.equal(await t.store.mountBlob('links/mount-from', 'links/mount-to2', fakeDigest('not-there'), ''), undefined);
      assert.equal(await t.store.repositoryExists('links/mount-to2'), false, 'a failed mount creates nothing');
    });

    it('a repository with no links or manifests left leaves the catalog', async () => {
      const digest = fakeDigest('ending');
      await link(t.store, 'links/ending', digest, 3);
      const record = manifest('links/ending', 'ending', { blobs: [digest] });
      await put(t.store, record, ['v1']);
      assert.equal(await t.store.deleteManifest('links/ending', record.digest), true);
      assert.equal(await t.store.repositoryExists('links/ending'), true, 'the link keeps it');
      assert.equal(await t.store.unlinkBlob('links/ending', digest), true);
      assert.equal(await t.store.repositoryExists('links/ending'), false);
      assert.ok(!(await t.store.listRepositories()).includes('links/ending'));
      await link(t.store, 'links/ending', digest, 3);
      assert.equal(await t.store.repositoryExists('links/ending'), true, 'and comes back with the next push');
    });
  });
}

function describeManifests(factory: MetadataStoreFactory): void {
  describe('manifests and tags', () => {
    const t = useStore(factory);

    it('round-trips every field, with the exact bytes', async () => {
      const content = Buffer.concat([Buffer.from('{"a":1}\n'), Buffer.from([0, 0xff, 0xfe, 0x80, 0x0a]), randomBytes(64 * 1024)]);
      const record = manifest('mf/full', 'full', {
        content,
        mediaType: INDEX,
        subject: fakeDigest('subject'),
        artifactType: 'application/vnd.example+json',
        annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z', 'x/y.z': 'ünïcödé ✓', empty: '' },
        blobs: [fakeDigest('config'), fakeDigest('layer')],
        children: [],
      });
      const children = [manifest('mf/full', 'child-1'), manifest('mf/full', 'child-2')];
      for (const child of children) await put(t.store, child, []);
      record.children = children.map((c) => c.digest);
      for (const blob of record.blobs) await link(t.store, 'mf/full', blob, 10);
      await put(t.store, record, ['v1']);
      const got = await t.store.getManifest('mf/full', record.digest);
      assert.ok(got);
      assert.ok(Buffer.isBuffer(got.content), 'content is a Buffer');
      assert.ok(got.content.equals(content), 'content bytes are exact');
      assert.deepEqual({ ...got, content: undefined }, { ...record, content: undefined });
    });

    it('returns absent optional fields as undefined, never null', async () => {
      const record = manifest('mf/minimal', 'minimal');
      await put(t.store, record, []);
      const got = await t.store.getManifest('mf/minimal', record.digest);
      assert.ok(got);
      assert.equal(got.subject, undefined);
      assert.equal(got.artifactType, undefined);
      assert.equal(got.annotations, undefined);
      assert.deepEqual(got.blobs, []);
      assert.deepEqual(got.children, []);
      assert.equal(got.mediaType, IMAGE);
    });

    it('round-trips empty annotations as an empty object', async () => {
      const record = manifest('mf/annotations', 'empty-annotations', { annotations: {} });
      await put(t.store, record, []);
      assert.deepEqual((await t.store.getManifest('mf/annotations', record.digest))?.annotations, {});
    });

    it('finds manifests only in their own repository', async () => {
      const record = manifest('mf/own', 'own');
      await put(t.store, record, ['latest']);
      assert.equal(await t.store.repositoryExists('mf/own'), true);
      assert.equal(await t.store.getManifest('mf/other', record.digest), undefined);
      assert.equal(await t.store.getManifest('mf/own', fakeDigest('absent')), undefined);
      assert.equal(await t.store.resolveTag('mf/other', 'latest'), undefined);
      assert.equal(await t.store.resolveTag('mf/own', 'absent'), undefined);
      assert.equal(await t.store.resolveTag('mf/own', 'latest'), record.digest);
    });

    it('is idempotent for the same digest and still moves tags', async () => {
      const record = manifest('mf/idem', 'idem', { annotations: { a: 'b' } });
      await put(t.store, record, ['one']);
      await put(t.store, record, ['two']);
      await put(t.store, record, []);
      assert.equal(await t.store.resolveTag('mf/idem', 'one'), record.digest);
      assert.equal(await t.store.resolveTag('mf/idem', 'two'), record.digest);
      const got = await t.store.getManifest('mf/idem', record.digest);
      assert.ok(got?.content.equals(record.content));
      assert.deepEqual(got?.annotations, { a: 'b' });
    });

    it('moves existing tags to the new manifest and leaves other tags alone', async () => {
      const first = manifest('mf/move', 'first');
      const second = manifest('mf/move', 'second');
      await put(t.store, first, ['latest', 'v1']);
      await put(t.store, second, ['latest', 'v2']);
      assert.equal(await t.store.resolveTag('mf/move', 'latest'), second.digest);
      assert.equal(await t.store.resolveTag('mf/move', 'v1'), first.digest);
      assert.equal(await t.store.resolveTag('mf/move', 'v2'), second.digest);
      assert.deepEqual(await t.store.listTags('mf/move'), ['latest', 'v1', 'v2']);
    });

    it('accepts the same tag twice in one put', async () => {
      const record = manifest('mf/dup', 'dup');
      await put(t.store, record, ['x', 'x', 'y']);
      assert.deepEqual(await t.store.listTags('mf/dup'), ['x', 'y']);
    });

    it('stores nothing and names what is missing when a blob or child is not in the repository', async () => {
      const [a, b] = [fakeDigest('ref-a'), fakeDigest('ref-b')];
      await link(t.store, 'mf/refs', a, 1);
      await link(t.store, 'mf/refs-other', b, 1);
      const child = manifest('mf/refs', 'child');
      const absentChild = manifest('mf/refs-other', 'elsewhere');
      await put(t.store, child, []);
      await put(t.store, absentChild, []);
      const record = manifest('mf/refs', 'parent', { blobs: [a, b], children: [child.digest, absentChild.digest] });
      assert.deepEqual((await t.store.putManifest(record, ['t'], '')).sort(), [b, absentChild.digest].sort());
      assert.equal(await t.store.getManifest('mf/refs', record.digest), undefined);
      assert.equal(await t.store.resolveTag('mf/refs', 't'), undefined);
      const fresh = manifest('mf/refs-new', 'new', { blobs: [a] });
      assert.deepEqual(await t.store.putManifest(fresh, [], ''), [a]);
      assert.equal(await t.store.repositoryExists('mf/refs-new'), false, 'a refused put creates no repository');
    });

    it('checks long reference lists', async () => {
      const digests = Array.from({ length: 1200 }, (_, i) => fakeDigest(`many-${i}`));
      for (const digest of digests.filter((_, i) => i % 3 === 0)) await link(t.store, 'mf/many', digest, 1);
      const missing = await t.store.putManifest(manifest('mf/many', 'many', { blobs: digests }), [], '');
      assert.deepEqual(missing.sort(), digests.filter((_, i) => i % 3 !== 0).sort());
    });

    it('deletes a manifest with its tags, but not tags moved elsewhere', async () => {
      const doomed = manifest('mf/delete', 'doomed');
      const kept = manifest('mf/delete', 'kept');
      await put(t.store, doomed, ['a', 'b']);
      await put(t.store, kept, ['c']);
      await put(t.store, kept, ['b']);
      assert.equal(await t.store.deleteManifest('mf/delete', doomed.digest), true);
      assert.equal(await t.store.getManifest('mf/delete', doomed.digest), undefined);
      assert.equal(await t.store.resolveTag('mf/delete', 'a'), undefined);
      assert.equal(await t.store.resolveTag('mf/delete', 'b'), kept.digest);
      assert.deepEqual(await t.store.listTags('mf/delete'), ['b', 'c']);
      assert.ok(await t.store.getManifest('mf/delete', kept.digest));
      assert.equal(await t.store.deleteManifest('mf/delete', doomed.digest), false);
    });

    it('deletes a manifest in one repository only', async () => {
      const content = Buffer.from('{"shared":true}');
      const inA = manifest('mf/del-a', 'shared', { content });
      const inB = { ...inA, repository: 'mf/del-b' };
      await put(t.store, inA, ['t']);
      await put(t.store, inB, ['t']);
      assert.equal(await t.store.deleteManifest('mf/del-a', inA.digest), true);
      assert.equal(await t.store.resolveTag('mf/del-b', 't'), inB.digest);
      assert.ok(await t.store.getManifest('mf/del-b', inB.digest));
      assert.equal(await t.store.deleteManifest('mf/never', inA.digest), false);
    });

    it('deletes only the tag, keeping the manifest', async () => {
      const record = manifest('mf/untag', 'untag');
      await put(t.store, record, ['gone', 'stays']);
      assert.equal(await t.store.deleteTag('mf/untag', 'gone'), true);
      assert.equal(await t.store.deleteTag('mf/untag', 'gone'), false);
      assert.equal(await t.store.deleteTag('mf/other', 'stays'), false);
      assert.equal(await t.store.resolveTag('mf/untag', 'gone'), undefined);
      assert.equal(await t.store.resolveTag('mf/untag', 'stays'), record.digest);
      assert.ok(await t.store.getManifest('mf/untag', record.digest));
    });

    it('a manifest can be pushed again after deletion', async () => {
      const record = manifest('mf/again', 'again');
      await put(t.store, record, ['t']);
      await t.store.deleteManifest('mf/again', record.digest);
      await put(t.store, record, ['t']);
      assert.equal(await t.store.resolveTag('mf/again', 't'), record.digest);
    });
  });
}

function describeTagListing(factory: MetadataStoreFactory): void {
  describe('tag listing', () => {
    const t = useStore(factory);
    const tags = ['latest', 'Latest', 'b', 'B', 'a', 'A', '_x', '0', 'a.b', 'a-b', 'a_b', 'v1.10', 'v1.9', 'z'];
    const sorted = ['0', 'A', 'B', 'Latest', '_x', 'a', 'a-b', 'a.b', 'a_b', 'b', 'latest', 'v1.10', 'v1.9', 'z'];

    before(async () => {
      const record = manifest('tags/r', 'tagged');
      await put(t.store, record, tags.slice(0, 7));
      await put(t.store, manifest('tags/r', 'tagged-2'), tags.slice(7));
      await put(t.store, manifest('tags/r2', 'neighbour'), ['neighbour', 'a']);
      await put(t.store, manifest('tags', 'parent'), ['parent']);
    });

    it('lists tags in byte order, uppercase before lowercase', async () => {
      assert.deepEqual([...sorted].sort(byteOrder), sorted);
      assert.deepEqual(await t.store.listTags('tags/r'), sorted);
      assert.deepEqual(await t.store.listTags('tags/r2'), ['a', 'neighbour']);
      assert.deepEqual(await t.store.listTags('tags/none'), []);
    });

    it('returns at most limit tags; limit 0 returns none', async () => {
      assert.deepEqual(await t.store.listTags('tags/r', { limit: 3 }), ['0', 'A', 'B']);
      assert.deepEqual(await t.store.listTags('tags/r', { limit: 0 }), []);
      assert.deepEqual(await t.store.listTags('tags/r', { limit: 0, last: 'A' }), []);
      assert.deepEqual(await t.store.listTags('tags/r', { limit: 1000 }), sorted);
    });

    it('returns tags strictly after last, with or without limit', async () => {
      assert.deepEqual(await t.store.listTags('tags/r', { last: 'a_b' }), ['b', 'latest', 'v1.10', 'v1.9', 'z']);
      assert.deepEqual(await t.store.listTags('tags/r', { last: 'B', limit: 2 }), ['Latest', '_x']);
      assert.deepEqual(await t.store.listTags('tags/r', { last: 'A' }), sorted.slice(2));
      assert.deepEqual(await t.store.listTags('tags/r', { last: 'a' }), sorted.slice(6));
      assert.deepEqual(await t.store.listTags('tags/r', { last: 'z' }), []);
    });

    it('accepts a last that is not a tag', async () => {
      assert.deepEqual(await t.store.listTags('tags/r', { last: 'M' }), [
        '_x',
        'a',
        'a-b',
        'a.b',
        'a_b',
        'b',
        'latest',
        'v1.10',
        'v1.9',
        'z',
      ]);
      assert.deepEqual(await t.store.listTags('tags/r', { last: 'v1.' }), ['v1.10', 'v1.9', 'z']);
      assert.deepEqual(await t.store.listTags('tags/r', { last: '' }), sorted);
      assert.deepEqual(await t.store.listTags('tags/r', { last: '~' }), []);
    });

    it('walks every page exactly once', async () => {
      const seen: string[] = [];
      let last: string | undefined;
      for (;;) {
        const page = await t.store.listTags('tags/r', { limit: 4, last });
        assert.ok(page.length <= 4);
        if (page.length === 0) break;
        seen.push(...page);
        last = page[page.length - 1];
      }
      assert.deepEqual(seen, sorted);
    });
  });
}

function describeReferrers(factory: MetadataStoreFactory): void {
  describe('referrers', () => {
    const t = useStore(factory);
    const subject = manifest('refs/r', 'subject');
    const sbom = 'application/vnd.example.sbom';
    const referrers = [
      manifest('refs/r', 'sbom-1', { subject: subject.digest, artifactType: sbom, annotations: { 'org.example.n': '1' } }),
      manifest('refs/r', 'sbom-2', { subject: subject.digest, artifactType: sbom }),
      manifest('refs/r', 'sbom-json', { subject: subject.digest, artifactType: `${sbom}+json` }),
      manifest('refs/r', 'signature', { subject: subject.digest, artifactType: 'application/vnd.example.sig', annotations: { who: 'me' } }),
      manifest('refs/r', 'index', { subject: subject.digest, mediaType: INDEX }),
    ];
    const byDigest = [...referrers].sort((a, b) => byteOrder(a.digest, b.digest));
    const descriptor = (m: ManifestRecord) => {
      const d: Record<string, unknown> = { digest: m.digest, mediaType: m.mediaType, size: m.content.length };
      if (m.artifactType !== undefined) d.artifactType = m.artifactType;
      if (m.annotations !== undefined) d.annotations = m.annotations;
      return d;
    };
    const plain = (records: object[]) => records.map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)));

    before(async () => {
      await put(t.store, subject, ['subject']);
      for (const referrer of referrers) await put(t.store, referrer, []);
      await put(t.store, manifest('refs/r', 'unrelated', { subject: fakeDigest('elsewhere'), artifactType: sbom }), []);
      await put(t.store, manifest('refs/other', 'sbom-1', { subject: subject.digest, artifactType: sbom }), []);
    });

    it('lists the manifests whose subject is the digest, ordered by digest, as descriptors', async () => {
      const got = await t.store.listReferrers('refs/r', subject.digest);
      assert.deepEqual(plain(got), byDigest.map(descriptor));
    });

    it('leaves absent artifactType and annotations undefined', async () => {
      const got = await t.store.listReferrers('refs/r', subject.digest);
      const index = got.find((r) => r.digest === referrers[4].digest);
      assert.ok(index);
      assert.equal(index.artifactType, undefined);
      assert.equal(index.annotations, undefined);
      assert.equal(index.mediaType, INDEX);
      assert.equal(typeof index.size, 'number');
    });

    it('filters by exact artifactType', async () => {
      const got = await t.store.listReferrers('refs/r', subject.digest, { artifactType: sbom });
      assert.deepEqual(
        got.map((r) => r.digest),
        byDigest.filter((m) => m.artifactType === sbom).map((m) => m.digest),
      );
      assert.deepEqual(await t.store.listReferrers('refs/r', subject.digest, { artifactType: 'application/vnd.example' }), []);
      assert.equal((await t.store.listReferrers('refs/r', subject.digest, {})).length, referrers.length);
    });

    it('paginates by digest', async () => {
      const first = await t.store.listReferrers('refs/r', subject.digest, undefined, { limit: 2 });
      assert.deepEqual(
        first.map((r) => r.digest),
        byDigest.slice(0, 2).map((m) => m.digest),
      );
      const rest = await t.store.listReferrers('refs/r', subject.digest, undefined, { last: first[1].digest });
      assert.deepEqual(
        rest.map((r) => r.digest),
        byDigest.slice(2).map((m) => m.digest),
      );
      const filtered = await t.store.listReferrers(
        'refs/r',
        subject.digest,
        { artifactType: sbom },
        { limit: 1, last: byDigest[0].digest },
      );
      assert.equal(filtered.length, 1);
      assert.equal(filtered[0].artifactType, sbom);
      assert.ok(byteOrder(filtered[0].digest, byDigest[0].digest) > 0);
      assert.deepEqual(await t.store.listReferrers('refs/r', subject.digest, undefined, { limit: 0 }), []);
    });

    it('answers an empty list for unknown subjects and other repositories', async () => {
      assert.deepEqual(await t.store.listReferrers('refs/r', fakeDigest('nothing')), []);
      assert.deepEqual(await t.store.listReferrers('refs/none', subject.digest), []);
      assert.equal((await t.store.listReferrers('refs/other', subject.digest)).length, 1);
    });

    it('drops deleted referrers', async () => {
      const extra = manifest('refs/r', 'to-delete', { subject: subject.digest });
      await put(t.store, extra, []);
      assert.ok((await t.store.listReferrers('refs/r', subject.digest)).some((r) => r.digest === extra.digest));
      await t.store.deleteManifest('refs/r', extra.digest);
      assert.ok(!(await t.store.listReferrers('refs/r', subject.digest)).some((r) => r.digest === extra.digest));
    });
  });
}

function describeUploads(factory: MetadataStoreFactory): void {
  describe('upload sessions', () => {
    const t = useStore(factory);
    const later = () => Date.now() + 60_000;
    const newUpload = async (state: Record<string, unknown> = {}): Promise<string> => {
      const id: string = randomUUID();
      await t.store.createUpload({ id, repository: 'up/r', tenant: 't', state });
      return id;
    };

    it('creates and reads back a session', async () => {
      const id = randomUUID();
      const state = { uploadId: 'abc', parts: [{ n: 1, etag: '"x"' }], tail: null, nested: { deep: [1, 'two', true] } };
      const before = Date.now();
      await t.store.createUpload({ id, repository: 'up/r', tenant: 't', state, algorithm: 'sha512' });
      const after = Date.now();
      const got = await t.store.getUpload(id);
      assert.ok(got);
      assert.equal(got.id, id);
      assert.equal(got.repository, 'up/r');
      assert.equal(got.tenant, 't');
      assert.equal(got.offset, 0);
      assert.equal(got.reserved, 0);
      assert.deepEqual(got.state, state);
      assert.equal(got.algorithm, 'sha512');
      assert.equal(got.leaseUntil, 0);
      assert.ok(got.createdAt >= before && got.createdAt <= after, 'createdAt is now');
      assert.ok(got.updatedAt >= before && got.updatedAt <= after, 'updatedAt is now');
    });

    it('leaves an unannounced algorithm undefined; unknown ids are undefined', async () => {
      const id = await newUpload();
      assert.equal((await t.store.getUpload(id))?.algorithm, undefined);
      assert.equal(await t.store.getUpload(randomUUID()), undefined);
    });

    it('refuses a second session with the same id', async () => {
      const id = await newUpload({ first: true });
      await assert.rejects(t.store.createUpload({ id, repository: 'up/r', tenant: '', state: { second: true } }));
      assert.deepEqual((await t.store.getUpload(id))?.state, { first: true });
    });

    it('claims only at the recorded offset and only when free', async () => {
      const id = await newUpload();
      assert.equal(await t.store.claimUpload(id, 1, 'a', later()), false, 'offset mismatch');
      assert.equal(await t.store.claimUpload(randomUUID(), 0, 'a', later()), false, 'unknown session');
      const until = later();
      assert.equal(await t.store.claimUpload(id, 0, 'a', until), true);
      assert.equal((await t.store.getUpload(id))?.leaseUntil, until);
      assert.equal(await t.store.claimUpload(id, 0, 'b', later()), false, 'leased to a');
    });

    it('lets another request take an expired lease', async () => {
      const id = await newUpload();
      assert.equal(await t.store.claimUpload(id, 0, 'old', Date.now() + 40), true);
      assert.equal(await t.store.claimUpload(id, 0, 'new', later()), false);
      await sleep(80);
      assert.equal(await t.store.claimUpload(id, 0, 'new', later()), true);
      assert.equal(await t.store.renewUpload(id, 'old', later()), false, 'old holder lost the lease');
      assert.equal(await t.store.advanceUpload(id, 'old', 10, {}), false, 'old holder cannot advance');
      assert.equal((await t.store.getUpload(id))?.offset, 0);
    });

    it('lets exactly one of many concurrent claims win', async () => {
      for (let round = 0; round < 5; round++) {
        const id = await newUpload();
        const results = await Promise.all(Array.from({ length: 12 }, (_, i) => t.store.claimUpload(id, 0, `token-${i}`, later())));
        assert.equal(results.filter(Boolean).length, 1, `round ${round}: ${results}`);
      }
    });

    it('renews a lease for its holder only', async () => {
      const id = await newUpload();
      await t.store.claimUpload(id, 0, 'holder', Date.now() + 1000);
      assert.equal(await t.store.renewUpload(id, 'intruder', later()), false);
      const until = later();
      assert.equal(await t.store.renewUpload(id, 'holder', until), true);
      assert.equal((await t.store.getUpload(id))?.leaseUntil, until);
      assert.equal(await t.store.renewUpload(randomUUID(), 'holder', until), false);
    });

    it('advances for the holder only, recording progress and freeing the lease', async () => {
      const id = await newUpload({ step: 0 });
      await t.store.claimUpload(id, 0, 'holder', later());
      assert.equal(await t.store.advanceUpload(id, 'intruder', 100, { step: 'bad' }), false);
      assert.deepEqual((await t.store.getUpload(id))?.state, { step: 0 });
      const before = Date.now();
      assert.equal(await t.store.advanceUpload(id, 'holder', 100, { step: 1, parts: ['e1'] }), true);
      const got = await t.store.getUpload(id);
      assert.equal(got?.offset, 100);
      assert.deepEqual(got?.state, { step: 1, parts: ['e1'] });
      assert.equal(got?.leaseUntil, 0);
      assert.ok((got?.updatedAt ?? 0) >= before);
      assert.equal(await t.store.advanceUpload(id, 'holder', 200, {}), false, 'lease already freed');
      assert.equal(await t.store.claimUpload(id, 0, 'next', later()), false, 'old offset');
      assert.equal(await t.store.claimUpload(id, 100, 'next', later()), true);
    });

    it('releases for the holder only', async () => {
      const id = await newUpload();
      await t.store.claimUpload(id, 0, 'holder', later());
      await t.store.releaseUpload(id, 'intruder');
      assert.equal(await t.store.claimUpload(id, 0, 'other', later()), false, 'still held');
      await t.store.releaseUpload(id, 'holder');
      assert.equal((await t.store.getUpload(id))?.leaseUntil, 0);
      assert.equal((await t.store.getUpload(id))?.offset, 0);
      assert.equal(await t.store.claimUpload(id, 0, 'other', later()), true);
      await t.store.releaseUpload(randomUUID(), 'anyone');
    });

    it('lists sessions not updated since a time', async () => {
      const oldA = await newUpload();
      const oldB = await newUpload();
      await sleep(15);
      const cutoff = Date.now();
      await sleep(15);
      const fresh = await newUpload();
      const ours = (records: { id: string }[]) => records.map((r) => r.id).filter((id) => [oldA, oldB, fresh].includes(id));
      const stale = await t.store.listStaleUploads(cutoff, 1000);
      assert.deepEqual(ours(stale).sort(), [oldA, oldB].sort());
      assert.equal(stale.find((r) => r.id === oldA)?.repository, 'up/r');
      assert.equal((await t.store.listStaleUploads(cutoff, 1)).length, 1);
      assert.deepEqual(await t.store.listStaleUploads(0, 10), []);
      assert.equal(await t.store.claimUpload(oldA, 0, 'x', later()), true);
      assert.equal(await t.store.advanceUpload(oldA, 'x', 5, {}), true);
      assert.deepEqual(ours(await t.store.listStaleUploads(cutoff, 1000)), [oldB]);
    });

    it('deletes a session', async () => {
      const id = await newUpload();
      assert.equal(await t.store.deleteUpload(id), true);
      assert.equal(await t.store.deleteUpload(id), false);
      assert.equal(await t.store.getUpload(id), undefined);
      assert.equal(await t.store.claimUpload(id, 0, 'x', later()), false);
    });
  });
}

function describeSharedDatabase(factory: MetadataStoreFactory): void {
  describe('two stores over one database', () => {
    let other: MetadataStore | undefined;
    // Registered before useStore's hooks so the second store closes before the database goes.
    after(async () => {
      await other?.close();
    });
    const t = useStore(factory);
    const second = async (skip: (message: string) => void): Promise<MetadataStore | undefined> => {
      if (!t.reopen) {
        skip('the factory offers no reopen()');
        return undefined;
      }
      other ??= await t.reopen();
      return other;
    };

    it("see each other's writes", async (ctx) => {
      const b = await second((m) => ctx.skip(m));
      if (!b) return;
      const a = t.store;
      const record = manifest('shared/r', 'shared');
      await put(a, record, ['latest']);
      await link(a, 'shared/r', fakeDigest('shared-blob'), 42);
      const id = randomUUID();
      await a.createUpload({ id, repository: 'shared/r', tenant: '', state: { from: 'a' } });
      assert.equal(await b.resolveTag('shared/r', 'latest'), record.digest);
      assert.ok((await b.getManifest('shared/r', record.digest))?.content.equals(record.content));
      assert.deepEqual(await b.getBlob('shared/r', fakeDigest('shared-blob')), { size: 42 });
      assert.deepEqual((await b.getUpload(id))?.state, { from: 'a' });
      const moved = manifest('shared/r', 'moved');
      await put(b, moved, ['latest']);
      assert.equal(await a.resolveTag('shared/r', 'latest'), moved.digest);
      assert.equal(await b.deleteManifest('shared/r', record.digest), true);
      assert.equal(await a.getManifest('shared/r', record.digest), undefined);
      assert.equal(await b.claimUpload(id, 0, 'b', Date.now() + 60_000), true);
      assert.equal(await a.claimUpload(id, 0, 'a', Date.now() + 60_000), false);
      assert.equal(await b.advanceUpload(id, 'b', 7, { from: 'b' }), true);
      assert.equal((await a.getUpload(id))?.offset, 7);
    });

    it("report the other's deletes and tag moves through changeVersion", async (ctx) => {
      const b = await second((m) => ctx.skip(m));
      if (!b) return;
      const a = t.store;
      if (!a.changeVersion) {
        ctx.skip('the store offers no changeVersion()');
        return;
      }
      const version = a.changeVersion.bind(a);
      /** `change` through the other store must show as a new version here, within 2 s. */
      const shows = async (what: string, change: () => Promise<unknown>) => {
        // First let earlier news settle (a store may also hear of its own writes), so only
        // `change` can move the version.
        for (let seen = version(); ; ) {
          await sleep(50);
          if (version() === seen) break;
          seen = version();
        }
        const before = version();
        await change();
        for (const deadline = Date.now() + 2000; version() === before && Date.now() < deadline; ) await sleep(5);
        assert.notEqual(version(), before, `${what} changes the version`);
      };
      const first = manifest('versions/r', 'first');
      const later = manifest('versions/r', 'second');
      await put(a, first, ['latest', 'old']);
      await put(a, later, []);
      await link(a, 'versions/r', fakeDigest('versioned'), 1);
      await shows('moving a tag', () => put(b, later, ['latest']));
      await shows('deleting a tag', () => b.deleteTag('versions/r', 'old'));
      await shows('deleting a manifest', () => b.deleteManifest('versions/r', first.digest));
      await shows('unlinking a blob', () => b.unlinkBlob('versions/r', fakeDigest('versioned')));
    });

    it('let exactly one claim win across stores', async (ctx) => {
      const b = await second((m) => ctx.skip(m));
      if (!b) return;
      for (let round = 0; round < 10; round++) {
        const id = randomUUID();
        await t.store.createUpload({ id, repository: 'shared/r', tenant: '', state: {} });
        const stores: MetadataStore[] = [t.store, b, t.store, b, t.store, b];
        const results: boolean[] = await Promise.all(stores.map((s, i) => s.claimUpload(id, 0, `t${i}`, Date.now() + 60_000)));
        assert.equal(results.filter(Boolean).length, 1, `round ${round}: ${results}`);
      }
    });
  });
}
