// UploadSessions on the memory stores: offsets and leases, digests, bodies and stores that fail.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Faults, faultyBody, MemoryBlobStore, MemoryMetadataStore, type BodyFault } from '@berthjs/testkit';
import { parseDigest } from '../src/digest.js';
import { OciError } from '../src/errors.js';
import { RegistryEventEmitter } from '../src/events.js';
import { IntegrityError, UnavailableError } from '../src/ports/errors.js';
import { UploadSessions } from '../src/uploads.js';

const REPO = 'team/app';
const boom = new UnavailableError('boom', 'test');

function sha256(bytes: Buffer) {
  return parseDigest(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);
}

function body(bytes: Buffer, fault?: BodyFault): Readable {
  return faultyBody(bytes, fault, 1000);
}

/** Sessions over fresh memory stores behind one Faults; `other()` is a second process on the same stores. */
function setup(leaseMs = 60_000) {
  const rawBlobs = new MemoryBlobStore();
  const rawMetadata = new MemoryMetadataStore();
  const faults = new Faults();
  const blobs = faults.wrap(rawBlobs, 'blobs');
  const metadata = faults.wrap(rawMetadata, 'metadata');
  const events = new RegistryEventEmitter();
  const emitted: string[] = [];
  events.on('blob.pushed', (event) => emitted.push(`blob.pushed ${event.digest}`));
  events.on('upload.aborted', (event) => emitted.push(`upload.aborted ${event.reason}`));
  const sessions = new UploadSessions(blobs, metadata, events, leaseMs);
  const other = () => new UploadSessions(blobs, metadata, events, leaseMs);
  return { sessions, other, faults, rawBlobs, rawMetadata, emitted };
}

/** The OCI code and status a promise rejects with. */
async function ociError(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => assert.fail('expected a rejection'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof OciError, `expected an OciError, got ${error}`);
  return `${error.status} ${error.code}`;
}

describe('UploadSessions', () => {
  it('starts a session in both stores, at offset 0, with the announced algorithm', async () => {
    const { sessions, rawBlobs, rawMetadata } = setup();
    const upload = await sessions.start(REPO, 'sha512');
    assert.equal(upload.offset, 0);
    assert.deepEqual(await rawBlobs.listUploads(), [upload.id]);
    const stored = await rawMetadata.getUpload(upload.id);
    assert.equal(stored?.repository, REPO);
    assert.equal(stored?.algorithm, 'sha512');
    assert.deepEqual(await sessions.get(REPO, upload.id), stored);
  });

  it('finds a session only in its own repository and only by a well-formed id', async () => {
    const { sessions } = setup();
    const upload = await sessions.start(REPO);
    assert.equal(await ociError(sessions.get('team/other', upload.id)), '404 BLOB_UPLOAD_UNKNOWN');
    assert.equal(await ociError(sessions.get(REPO, '../../etc')), '404 BLOB_UPLOAD_UNKNOWN');
    assert.equal(await ociError(sessions.get(REPO, 'a'.repeat(65))), '404 BLOB_UPLOAD_UNKNOWN');
  });

  it('a failing metadata store at start leaves no session in the blob store', async () => {
    const { sessions, faults, rawBlobs, rawMetadata } = setup();
    faults.fail('createUpload', boom, { store: 'metadata' });
    await assert.rejects(sessions.start(REPO), boom);
    assert.deepEqual(await rawBlobs.listUploads(), []);
    assert.deepEqual(rawMetadata.snapshot().uploads, []);
  });

  for (const store of ['blobs', 'metadata']) {
    it(`a ${store} createUpload that fails after doing its part leaves no session anywhere`, async () => {
      const { sessions, faults, rawBlobs, rawMetadata } = setup();
      faults.fail('createUpload', boom, { store, after: true });
      await assert.rejects(sessions.start(REPO), boom);
      assert.deepEqual(await rawBlobs.listUploads(), []);
      assert.deepEqual(rawMetadata.snapshot().uploads, []);
    });
  }

  it('appends chunks in order and completes with the right digest', async () => {
    const { sessions, rawBlobs, rawMetadata, emitted } = setup();
    const [a, b] = [randomBytes(3000), randomBytes(1234)];
    const content = Buffer.concat([a, b]);
    let upload = await sessions.start(REPO);
    assert.equal(await sessions.append(upload, body(a), { start: 0, length: a.length }), a.length);
    upload = await sessions.get(REPO, upload.id);
    assert.equal(await sessions.append(upload, body(b), {}), content.length);
    upload = await sessions.get(REPO, upload.id);
    assert.equal(await sessions.complete(upload, sha256(content), undefined, {}), content.length);
    assert.deepEqual(await rawMetadata.getBlob(REPO, sha256(content).digest), { size: content.length });
    assert.ok(rawBlobs.snapshot().blobs[0].content.equals(content));
    assert.deepEqual(await rawBlobs.listUploads(), []);
    assert.equal(await rawMetadata.getUpload(upload.id), undefined);
    assert.deepEqual(emitted, [`blob.pushed ${sha256(content).digest}`]);
  });

  it('refuses a chunk that does not start at the offset with 416, Range and Location', async () => {
    const { sessions } = setup();
    const upload = await sessions.start(REPO);
    await sessions.append(upload, body(randomBytes(10)), {});
    const moved = await sessions.get(REPO, upload.id);
    const error = await sessions.append(moved, body(randomBytes(10)), { start: 5 }).catch((e: OciError) => e);
    assert.ok(error instanceof OciError);
    assert.equal(error.status, 416);
    assert.equal(error.headers.Range, '0-9');
    assert.equal(error.headers.Location, `/v2/${REPO}/blobs/uploads/${upload.id}`);
    // A stale record (offset 0) cannot claim the session either: the compare-and-set is on the offset.
    assert.equal(await ociError(sessions.append(upload, body(randomBytes(10)), {})), '416 BLOB_UPLOAD_INVALID');
    assert.equal((await sessions.get(REPO, upload.id)).offset, 10);
  });

  it('lets one of two concurrent appends win; the other gets 416 and the session stays intact', async () => {
    const { sessions, faults } = setup();
    const upload = await sessions.start(REPO);
    const hang = faults.hang('appendUpload', { nth: 1 });
    const first = sessions.append(upload, body(Buffer.from('first')), {});
    await hang.reached;
    assert.equal(await ociError(sessions.append(upload, body(Buffer.from('second')), {})), '416 BLOB_UPLOAD_INVALID');
    hang.release();
    assert.equal(await first, 5);
    const done = await sessions.get(REPO, upload.id);
    assert.equal(await sessions.complete(done, sha256(Buffer.from('first')), undefined, {}), 5);
  });

  for (const kind of ['error', 'close'] as const) {
    it(`a body that ${kind}s mid-way fails the append; the session stays at its last good offset, free`, async () => {
      const { sessions, rawMetadata } = setup();
      const a = randomBytes(2000);
      let upload = await sessions.start(REPO);
      await sessions.append(upload, body(a), {});
      upload = await sessions.get(REPO, upload.id);
      await assert.rejects(sessions.append(upload, body(randomBytes(5000), { at: 2500, kind }), { length: 5000 }));
      const after = await rawMetadata.getUpload(upload.id);
      assert.equal(after?.offset, 2000);
      assert.equal(after?.leaseUntil, 0, 'the lease was released');
      // The live hash still describes the stored prefix: the session completes without re-reading.
      const b = randomBytes(100);
      await sessions.append(upload, body(b), {});
      const content = Buffer.concat([a, b]);
      assert.equal(await sessions.complete(await sessions.get(REPO, upload.id), sha256(content), undefined, {}), content.length);
    });
  }

  it('a body the client closed while the request waited fails at once and frees the lease', async () => {
    const { sessions, faults, rawMetadata } = setup();
    const upload = await sessions.start(REPO);
    const gone = body(randomBytes(100));
    const hang = faults.hang('claimUpload');
    const append = sessions.append(upload, gone, { length: 100 });
    await hang.reached;
    gone.destroy(); // what an adapter's request does when its socket closes
    hang.release();
    await assert.rejects(append);
    assert.equal((await rawMetadata.getUpload(upload.id))?.leaseUntil, 0);
  });

  it('a body shorter than its Content-Length is SIZE_INVALID and records nothing', async () => {
    const { sessions, rawMetadata } = setup();
    const upload = await sessions.start(REPO);
    assert.equal(
      await ociError(sessions.append(upload, body(randomBytes(500), { at: 300, kind: 'end' }), { length: 500 })),
      '400 SIZE_INVALID',
    );
    assert.equal((await rawMetadata.getUpload(upload.id))?.offset, 0);
  });

  it('a body longer than its Content-Length is SIZE_INVALID and records nothing', async () => {
    const { sessions, rawMetadata } = setup();
    const upload = await sessions.start(REPO);
    assert.equal(await ociError(sessions.append(upload, body(randomBytes(500)), { length: 100 })), '400 SIZE_INVALID');
    assert.equal((await rawMetadata.getUpload(upload.id))?.offset, 0);
  });

  it('a failing blob store fails the append and frees the lease at the old offset', async () => {
    const { sessions, faults, rawMetadata } = setup();
    const upload = await sessions.start(REPO);
    faults.fail('appendUpload', boom, { times: 1 });
    await assert.rejects(sessions.append(upload, body(randomBytes(100)), {}), boom);
    const after = await rawMetadata.getUpload(upload.id);
    assert.equal(after?.offset, 0);
    assert.equal(after?.leaseUntil, 0);
    assert.equal(await sessions.append(upload, body(randomBytes(100)), {}), 100);
  });

  it('a claim that fails after landing (the answer lost) does not keep the session leased', async () => {
    const { sessions, faults, rawMetadata } = setup();
    const upload = await sessions.start(REPO);
    faults.fail('claimUpload', boom, { after: true, times: 1 });
    await assert.rejects(sessions.append(upload, body(randomBytes(10)), {}), boom);
    assert.equal((await rawMetadata.getUpload(upload.id))?.leaseUntil, 0);
    assert.equal(await sessions.append(upload, body(randomBytes(10)), {}), 10);
  });

  it('a lost lease (taken over while the body stalled) is 416 and the taker keeps the session', async () => {
    const { sessions, rawMetadata } = setup(30);
    const upload = await sessions.start(REPO);
    const stalled = faultyBody(randomBytes(200), { at: 100, kind: 'stall' });
    const append = sessions.append(upload, stalled, {});
    await stalled.stalled;
    await sleep(60); // the 30 ms lease expires (renewals come only every second)
    assert.equal(await rawMetadata.claimUpload(upload.id, 0, 'taker', Date.now() + 60_000), true);
    stalled.unstall();
    assert.equal(await ociError(append), '416 BLOB_UPLOAD_INVALID');
    const after = await rawMetadata.getUpload(upload.id);
    assert.equal(after?.offset, 0);
    assert.equal(await rawMetadata.renewUpload(upload.id, 'taker', Date.now() + 60_000), true, 'the taker still holds it');
  });

  it('renews the lease while a body streams', async () => {
    const { sessions, rawMetadata } = setup(1500);
    const upload = await sessions.start(REPO);
    const stalled = faultyBody(randomBytes(200), { at: 100, kind: 'stall' });
    const append = sessions.append(upload, stalled, {});
    await stalled.stalled;
    const first = (await rawMetadata.getUpload(upload.id))?.leaseUntil ?? 0;
    await sleep(1200); // one renewal (every max(1 s, lease / 3))
    const renewed = (await rawMetadata.getUpload(upload.id))?.leaseUntil ?? 0;
    assert.ok(renewed > first, `lease ${first} was renewed to ${renewed}`);
    stalled.unstall();
    assert.equal(await append, 200);
  });

  it('a wrong digest ends the session: DIGEST_INVALID, nothing stored, upload.aborted', async () => {
    const { sessions, rawBlobs, rawMetadata, emitted } = setup();
    const upload = await sessions.start(REPO);
    await sessions.append(upload, body(randomBytes(100)), {});
    const moved = await sessions.get(REPO, upload.id);
    assert.equal(await ociError(sessions.complete(moved, sha256(Buffer.from('other')), undefined, {})), '400 DIGEST_INVALID');
    assert.deepEqual(rawBlobs.snapshot(), { blobs: [], uploads: [] });
    assert.deepEqual(rawMetadata.snapshot().uploads, []);
    assert.deepEqual(rawMetadata.snapshot().links, []);
    assert.deepEqual(emitted, ['upload.aborted digest-mismatch']);
  });

  it('completes with the last chunk as the body of the closing request', async () => {
    const { sessions } = setup();
    const [a, b] = [randomBytes(100), randomBytes(50)];
    const upload = await sessions.start(REPO);
    await sessions.append(upload, body(a), {});
    const content = Buffer.concat([a, b]);
    assert.equal(await sessions.complete(await sessions.get(REPO, upload.id), sha256(content), body(b), { length: 50 }), 150);
  });

  it('a closing body cut short stores nothing under the digest and keeps the session', async () => {
    const { sessions, rawBlobs, rawMetadata } = setup();
    const content = randomBytes(4000);
    const upload = await sessions.start(REPO);
    await assert.rejects(sessions.complete(upload, sha256(content), body(content, { at: 1000, kind: 'error' }), { length: 4000 }));
    assert.deepEqual(rawBlobs.snapshot().blobs, []);
    assert.deepEqual(rawMetadata.snapshot().links, []);
    assert.equal((await rawMetadata.getUpload(upload.id))?.offset, 0);
  });

  it('verifies by re-reading when the session continues in another process', async () => {
    const { sessions, other, faults } = setup();
    const [a, b] = [randomBytes(700), randomBytes(300)];
    const content = Buffer.concat([a, b]);
    const upload = await sessions.start(REPO);
    await sessions.append(upload, body(a), {});
    const elsewhere = other();
    await elsewhere.append(await elsewhere.get(REPO, upload.id), body(b), {});
    const commits = faults.calls.length;
    assert.equal(await elsewhere.complete(await elsewhere.get(REPO, upload.id), sha256(content), undefined, {}), 1000);
    const commit = faults.calls.slice(commits).find((c) => c.method === 'commitUpload');
    assert.equal(typeof commit?.args[4], 'function', 'the commit was given a verifier');

    // The same, with the wrong digest: rejected after re-reading, nothing visible.
    const second = await sessions.start(REPO);
    await sessions.append(second, body(a), {});
    const third = other();
    await third.append(await third.get(REPO, second.id), body(b), {});
    const wrong = sha256(Buffer.from('wrong'));
    assert.equal(await ociError(third.complete(await third.get(REPO, second.id), wrong, undefined, {})), '400 DIGEST_INVALID');
  });

  it('a store that lost acknowledged bytes ends the session with BLOB_UPLOAD_INVALID', async () => {
    const { sessions, faults, rawBlobs, rawMetadata } = setup();
    const upload = await sessions.start(REPO);
    faults.fail('appendUpload', new IntegrityError('holds 0 bytes, expected 10', 'test'), { times: 1 });
    assert.equal(await ociError(sessions.append(upload, body(randomBytes(10)), {})), '400 BLOB_UPLOAD_INVALID');
    assert.deepEqual(await rawBlobs.listUploads(), []);
    assert.equal(await rawMetadata.getUpload(upload.id), undefined);
  });

  it('a closing PUT racing a cancel answers BLOB_UPLOAD_UNKNOWN, not a store error', async () => {
    const { sessions, faults } = setup();
    const content = randomBytes(64);
    const upload = await sessions.start(REPO);
    await sessions.append(upload, body(content), {});
    const moved = await sessions.get(REPO, upload.id);
    const hang = faults.hang('commitUpload');
    const complete = sessions.complete(moved, sha256(content), undefined, {});
    await hang.reached;
    await sessions.cancel(moved, 'cancelled');
    hang.release();
    assert.equal(await ociError(complete), '404 BLOB_UPLOAD_UNKNOWN');
  });

  it('cancel frees both stores and says so', async () => {
    const { sessions, rawBlobs, rawMetadata, emitted } = setup();
    const upload = await sessions.start(REPO);
    await sessions.append(upload, body(randomBytes(10)), {});
    await sessions.cancel(upload, 'cancelled');
    assert.deepEqual(rawBlobs.snapshot(), { blobs: [], uploads: [] });
    assert.deepEqual(rawMetadata.snapshot().uploads, []);
    assert.deepEqual(emitted, ['upload.aborted cancelled']);
  });

  it('sweeps idle sessions but not one a request is writing to', async () => {
    const { sessions, rawBlobs, rawMetadata, emitted } = setup();
    const idle = await sessions.start(REPO);
    const busy = await sessions.start(REPO);
    const stalled = faultyBody(randomBytes(10), { at: 5, kind: 'stall' });
    const append = sessions.append(busy, stalled, {});
    await stalled.stalled;
    await sleep(5);
    assert.equal(await sessions.sweep(1), 1);
    assert.deepEqual(await rawBlobs.listUploads(), [busy.id]);
    assert.deepEqual(
      rawMetadata.snapshot().uploads.map((u) => u.id),
      [busy.id],
    );
    assert.deepEqual(emitted, ['upload.aborted expired']);
    stalled.unstall();
    assert.equal(await append, 10);
    assert.equal(idle.repository, REPO);
  });
});
