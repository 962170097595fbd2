// The fault hooks and the faulty bodies do what the harness relies on.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnavailableError, type ManifestRecord } from '@berthjs/core';
import { Faults, faultyBody, MemoryBlobStore, MemoryMetadataStore, sendRaw } from '../src/index.js';

const boom = new UnavailableError('boom', 'test');

/** A manifest with nothing to reference: pushing it creates its repository. */
function record(repository: string): ManifestRecord {
  const content = Buffer.from(`{"schemaVersion":2,"manifests":[],"r":"${repository}"}`);
  return { repository, digest: 'sha256:1', mediaType: 'application/vnd.oci.image.index.v1+json', content, blobs: [], children: [] };
}

async function settle<T>(promise: Promise<T>): Promise<T | Error> {
  return promise.catch((error: Error) => error);
}

describe('Faults', () => {
  it('fails every matching call, only on the labelled store and for matching arguments', async () => {
    const faults = new Faults();
    const a = faults.wrap(new MemoryMetadataStore(), 'a');
    const b = faults.wrap(new MemoryMetadataStore(), 'b');
    faults.fail('putManifest', boom, { store: 'a', when: (manifest) => (manifest as ManifestRecord).repository === 'x' });
    assert.equal(await settle(a.putManifest(record('x'), [], '')), boom);
    assert.equal(await settle(a.putManifest(record('x'), [], '')), boom);
    await a.putManifest(record('y'), [], '');
    await b.putManifest(record('x'), [], '');
    assert.equal(await a.repositoryExists('x'), false, 'a failing call never reached the store');
    assert.deepEqual(
      faults.calls.map((c) => `${c.store}.${c.method}`),
      ['a.putManifest', 'a.putManifest', 'a.putManifest', 'b.putManifest', 'a.repositoryExists'],
    );
  });

  it('fails only the nth call of any method, before or after the real call', async () => {
    const faults = new Faults();
    const store = faults.wrap(new MemoryMetadataStore());
    faults.fail('*', boom, { nth: 2, after: true });
    await store.putManifest(record('one'), [], '');
    assert.equal(await settle(store.putManifest(record('two'), [], '')), boom);
    await store.putManifest(record('three'), [], '');
    assert.deepEqual(await store.listRepositories(), ['one', 'three', 'two'], 'the failed-after call did its work');
  });

  it('limits a rule to `times` calls, and clear() removes every rule', async () => {
    const faults = new Faults();
    const store = faults.wrap(new MemoryMetadataStore());
    faults.fail('repositoryExists', boom, { times: 2 });
    assert.equal(await settle(store.repositoryExists('a')), boom);
    assert.equal(await settle(store.repositoryExists('a')), boom);
    assert.equal(await store.repositoryExists('a'), false);
    faults.fail('repositoryExists', boom);
    faults.clear();
    assert.equal(await store.repositoryExists('a'), false);
  });

  it('delays matching calls', async () => {
    const faults = new Faults();
    const store = faults.wrap(new MemoryMetadataStore());
    faults.delay('getUpload', 60);
    const started = Date.now();
    await store.getUpload('x');
    assert.ok(Date.now() - started >= 55, `took ${Date.now() - started} ms`);
  });

  it('holds calls until the hang is released or failed', async () => {
    const faults = new Faults();
    const store = faults.wrap(new MemoryBlobStore());
    const hang = faults.hang('createUpload');
    let done = false;
    const held = store.createUpload('a').then(() => (done = true));
    await hang.reached;
    await sleep(20);
    assert.equal(done, false);
    assert.equal(hang.waiting, 1);
    hang.release();
    await held;
    assert.deepEqual(await store.listUploads(), ['a']);

    const failing = faults.hang('abortUpload');
    const aborted = settle(store.abortUpload('a', {}));
    await failing.reached;
    failing.fail(boom);
    assert.equal(await aborted, boom);
    assert.deepEqual(await store.listUploads(), ['a'], 'a failed hang never reached the store');
  });

  it('keeps synchronous methods synchronous when no rule takes them', () => {
    const faults = new Faults();
    const store = faults.wrap(new MemoryMetadataStore());
    assert.equal(typeof store.changeVersion(), 'number');
    assert.deepEqual(store.snapshot().repositories, []);
  });
});

describe('faulty bodies', () => {
  const content = Buffer.from('0123456789'.repeat(1000));

  async function consume(body: NodeJS.ReadableStream): Promise<{ bytes: number; outcome: string }> {
    let bytes = 0;
    return new Promise((resolve) => {
      body.on('data', (chunk: Buffer) => (bytes += chunk.length));
      body.on('end', () => resolve({ bytes, outcome: 'end' }));
      body.on('error', (error: Error) => resolve({ bytes, outcome: `error ${error.message}` }));
      body.on('close', () => setImmediate(() => resolve({ bytes, outcome: 'close' })));
    });
  }

  it('sends everything without a fault', async () => {
    assert.deepEqual(await consume(faultyBody(content, undefined, 777)), { bytes: content.length, outcome: 'end' });
  });

  it('errors, closes or ends at the chosen byte', async () => {
    assert.deepEqual(await consume(faultyBody(content, { at: 1234, kind: 'error' }, 1000)), { bytes: 1234, outcome: 'error aborted' });
    assert.deepEqual(await consume(faultyBody(content, { at: 0, kind: 'close' })), { bytes: 0, outcome: 'close' });
    assert.deepEqual(await consume(faultyBody(content, { at: 5, kind: 'end' })), { bytes: 5, outcome: 'end' });
  });

  it('stalls at the chosen byte until unstalled', async () => {
    const body = faultyBody(content, { at: 4000, kind: 'stall' }, 1000);
    const consumed = consume(body);
    await body.stalled;
    assert.equal(body.sent, 4000);
    body.unstall();
    assert.deepEqual(await consumed, { bytes: content.length, outcome: 'end' });
  });

  it('cuts a body on a real socket: the server sees the error, the close or the stall', async () => {
    const seen: string[] = [];
    const server = createServer((req: IncomingMessage, res) => {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => (bytes += chunk.length));
      req.on('end', () => {
        seen.push(`end ${bytes}`);
        res.end('ok');
      });
      req.on('error', () => seen.push(`error ${bytes}`));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const whole = sendRaw(url, { method: 'PUT', path: '/', body: content });
      const response = await whole.response;
      assert.equal(response?.status, 200);
      assert.equal(response?.body.toString(), 'ok');
      for (const kind of ['error', 'close', 'end'] as const) {
        const cut = sendRaw(url, { method: 'PUT', path: '/', body: content, fault: { at: 3000, kind } });
        // A half-closed body is still answered: Node's own parser sends 400 for the short body.
        assert.equal((await cut.response)?.status, kind === 'end' ? 400 : undefined, kind);
        await cut.closed;
      }
      const stalled = sendRaw(url, { method: 'PUT', path: '/', body: content, fault: { at: 2000, kind: 'stall' } });
      await stalled.stalled;
      stalled.abort();
      await stalled.closed;
      await sleep(50);
      assert.deepEqual(seen, [`end ${content.length}`, 'error 3000', 'error 3000', 'error 3000', 'error 2000']);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
