// Fault-injection harness (issue 11): fast-check drives every write endpoint through every way of
// mounting Berth (registry.handle in process, on plain node:http as examples/node-http does, Koa,
// Express) and cuts each request somewhere: the body errors, closes, ends short or stalls at an
// arbitrary byte, or an arbitrary store call fails (before or after its effect), waits, or hangs
// until the test releases or fails it (after the client went away, or not).
//
// After every request, nothing may have escaped (no uncaught exception, no unhandled rejection),
// the server must have finished the request, and the stored state (both memory stores, compared
// as snapshots) must be what it was before, or exactly what the same request without a fault
// leaves. A 2xx answer must mean the latter. No upload session may stay leased.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import express from 'express';
import fc from 'fast-check';
import Koa from 'koa';
import { basicAuth, createTokenEndpoint } from '@berthjs/auth';
import {
  ConflictError,
  createRegistry,
  IntegrityError,
  NotFoundError,
  UnavailableError,
  type BerthHandler,
  type BerthRequest,
  type BerthResponse,
} from '@berthjs/core';
import { berth as berthExpress } from '@berthjs/express';
import { berth as berthKoa } from '@berthjs/koa';
import {
  Faults,
  faultyBody,
  MemoryBlobStore,
  MemoryMetadataStore,
  sendRaw,
  type BlobStoreSnapshot,
  type BodyFault,
  type MetadataStoreSnapshot,
} from '@berthjs/testkit';

/** Cases per adapter (4 adapters; a case takes a few ms, hangs and stalls ~30 ms): ~12 s in all. */
const RUNS = Number(process.env.BERTH_FAULT_RUNS ?? 200);
/** How long a held client waits before it gives up and leaves (a stall, a hang). */
const CLIENT_PATIENCE_MS = 15;
/** A request the server has not finished this long after every fault was lifted is a hang. */
const SETTLE_MS = 5000;
const SERVICE = 'faults-harness';
const AUTH = `Basic ${Buffer.from('ci:secret').toString('base64')}`;

type Adapter = 'in-process' | 'node-http' | 'koa' | 'express';
const ADAPTERS: Adapter[] = ['in-process', 'node-http', 'koa', 'express'];

// --- the stores, the seed state, and the registry under test ------------------------------------

const rawBlobs = new MemoryBlobStore();
const rawMetadata = new MemoryMetadataStore();
const faults = new Faults();
const blobs = faults.wrap(rawBlobs, 'blobs');
const metadata = faults.wrap(rawMetadata, 'metadata');
const users = faults.wrap(
  {
    async verifyPassword(user: string, password: string) {
      return user === 'ci' && password === 'secret';
    },
    async authorize() {
      return true;
    },
  },
  'users',
);
const tokens = createTokenEndpoint({
  signingKey: { key: randomBytes(32) },
  service: SERVICE,
  issuer: SERVICE,
  authenticate: basicAuth({ verifyPassword: (u, p) => users.verifyPassword(u, p) }).authenticate,
  authorize: () => users.authorize(),
});

/** A fresh registry per case (no live hashes or cache carried over), on the shared wrapped stores. */
let registry = newRegistry();
function newRegistry() {
  return createRegistry({ blobs, metadata, uploadLeaseMs: 60_000 });
}

/** Every handle() call the servers made, so a case can wait until the server side is done. */
const inflight = new Set<Promise<unknown>>();
function tracked(handler: () => BerthHandler): BerthHandler {
  return {
    handle(request) {
      const answer = handler().handle(request);
      inflight.add(answer);
      const forget = () => inflight.delete(answer);
      answer.then(forget, forget);
      return answer;
    },
  };
}
const handlers = [tracked(() => tokens), tracked(() => registry)];

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const REPO = 'acme/app';
const layer = randomBytes(3000);
const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' }));
const mountable = randomBytes(500);
const partial = randomBytes(1000);
const monolithic = randomBytes(20_000);
const lastChunk = randomBytes(9_000);
const IMAGE = 'application/vnd.oci.image.manifest.v1+json';
const manifestOf = (label: string) =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: IMAGE,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
      annotations: { label },
    }),
  );
const manifest1 = manifestOf('one');
const manifest2 = manifestOf('two');

interface Seed {
  blobs: BlobStoreSnapshot;
  metadata: MetadataStoreSnapshot;
  /** A session holding nothing, and one holding `partial`. */
  empty: string;
  holding: string;
}

/** Push the starting state through the registry itself. */
async function seed(): Promise<Seed> {
  const call = async (method: string, url: string, body?: Buffer, headers: Record<string, string> = {}) => {
    const response = await registry.handle({ method, url, headers, body: faultyBody(body ?? Buffer.alloc(0)) });
    assert.ok(response && response.status < 300, `seed ${method} ${url}: ${response?.status}`);
    return response;
  };
  for (const [repository, blob] of [
    [REPO, layer],
    [REPO, config],
    ['acme/base', mountable],
  ] as const) {
    await call('POST', `/v2/${repository}/blobs/uploads/?digest=${sha256(blob)}`, blob, { 'content-length': String(blob.length) });
  }
  await call('PUT', `/v2/${REPO}/manifests/latest`, manifest1, { 'content-type': IMAGE, 'content-length': String(manifest1.length) });
  const session = async () => (await call('POST', `/v2/${REPO}/blobs/uploads/`)).headers.Location.split('/').pop() as string;
  const empty = await session();
  const holding = await session();
  await call('PATCH', `/v2/${REPO}/blobs/uploads/${holding}`, partial, { 'content-length': String(partial.length) });
  return { blobs: rawBlobs.snapshot(), metadata: rawMetadata.snapshot(), empty, holding };
}

// --- the endpoints ------------------------------------------------------------------------------

interface Endpoint {
  name: string;
  method: string;
  path: (s: Seed) => string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Status of the request without a fault. */
  success: number;
  /** The seeded upload session the request works on. */
  session?: (s: Seed) => string;
}

const length = (body: Buffer) => ({ 'Content-Length': String(body.length) });
const ENDPOINTS: Endpoint[] = [
  { name: 'POST session', method: 'POST', path: () => `/v2/${REPO}/blobs/uploads/`, success: 202 },
  {
    name: 'POST monolithic ?digest=',
    method: 'POST',
    path: () => `/v2/${REPO}/blobs/uploads/?digest=${sha256(monolithic)}`,
    headers: { 'Content-Type': 'application/octet-stream', ...length(monolithic) },
    body: monolithic,
    success: 201,
  },
  {
    name: 'POST mount',
    method: 'POST',
    path: () => `/v2/${REPO}/blobs/uploads/?mount=${sha256(mountable)}&from=acme/base`,
    success: 201,
  },
  {
    name: 'PATCH chunk',
    method: 'PATCH',
    path: (s) => `/v2/${REPO}/blobs/uploads/${s.holding}`,
    session: (s) => s.holding,
    headers: { 'Content-Range': `${partial.length}-${partial.length + lastChunk.length - 1}`, ...length(lastChunk) },
    body: lastChunk,
    success: 202,
  },
  {
    name: 'PATCH stream',
    method: 'PATCH',
    path: (s) => `/v2/${REPO}/blobs/uploads/${s.empty}`,
    session: (s) => s.empty,
    headers: { 'Transfer-Encoding': 'chunked' },
    body: monolithic,
    success: 202,
  },
  {
    name: 'PUT closing',
    method: 'PUT',
    path: (s) => `/v2/${REPO}/blobs/uploads/${s.holding}?digest=${sha256(partial)}`,
    session: (s) => s.holding,
    success: 201,
  },
  {
    name: 'PUT closing with body',
    method: 'PUT',
    path: (s) => `/v2/${REPO}/blobs/uploads/${s.empty}?digest=${sha256(lastChunk)}`,
    session: (s) => s.empty,
    headers: length(lastChunk),
    body: lastChunk,
    success: 201,
  },
  {
    name: 'DELETE upload',
    method: 'DELETE',
    path: (s) => `/v2/${REPO}/blobs/uploads/${s.holding}`,
    session: (s) => s.holding,
    success: 204,
  },
  {
    name: 'PUT manifest by tag',
    method: 'PUT',
    path: () => `/v2/${REPO}/manifests/v2`,
    headers: { 'Content-Type': IMAGE, ...length(manifest2) },
    body: manifest2,
    success: 201,
  },
  {
    name: 'PUT manifest by digest ?tag=',
    method: 'PUT',
    path: () => `/v2/${REPO}/manifests/${sha256(manifest2)}?tag=a&tag=b`,
    headers: { 'Content-Type': IMAGE, ...length(manifest2) },
    body: manifest2,
    success: 201,
  },
  { name: 'DELETE manifest by tag', method: 'DELETE', path: () => `/v2/${REPO}/manifests/latest`, success: 202 },
  { name: 'DELETE manifest by digest', method: 'DELETE', path: () => `/v2/${REPO}/manifests/${sha256(manifest1)}`, success: 202 },
  { name: 'DELETE blob', method: 'DELETE', path: () => `/v2/${REPO}/blobs/${sha256(layer)}`, success: 202 },
  {
    name: 'token',
    method: 'GET',
    path: () => `/token?service=${SERVICE}&scope=repository:${REPO}:pull,push`,
    headers: { Authorization: AUTH },
    success: 200,
  },
];

// --- faults -------------------------------------------------------------------------------------

const ERRORS = {
  unavailable: () => new UnavailableError('injected: backend down', 'faults'),
  conflict: () => new ConflictError('injected: lost a race', 'faults'),
  'not found': () => new NotFoundError('injected: gone', 'faults'),
  integrity: () => new IntegrityError('injected: bytes lost', 'faults'),
  plain: () => new Error('injected: a bug'),
};
type ErrorName = keyof typeof ERRORS;

type Fault =
  | { type: 'none' }
  | { type: 'body'; kind: BodyFault['kind']; at: number }
  | { type: 'call'; call: number; action: 'fail' | 'fail after' | 'delay'; error: ErrorName }
  | { type: 'hang'; call: number; leave: boolean; afterwards: 'release' | 'fail'; error: ErrorName };

/**
 * A body's `at` is a fraction (0-1) of its bytes: the ends (0, 1, the smallest steps) as fast-check
 * likes them, or anywhere between. `call` picks one of the store calls the request makes (modulo
 * their number, so every call is as likely).
 */
function faultArbitrary(hasBody: boolean): fc.Arbitrary<Fault> {
  const at = fc.oneof(
    fc.double({ min: 0, max: 1, noNaN: true }),
    fc.integer({ min: 0, max: 1000 }).map((n) => n / 1000),
  );
  const call = fc.nat({ max: 10_000 });
  const error = fc.constantFrom(...(Object.keys(ERRORS) as ErrorName[]));
  const cases: fc.Arbitrary<Fault>[] = [
    fc.constant({ type: 'none' as const }),
    fc.record({
      type: fc.constant('call' as const),
      call,
      action: fc.constantFrom('fail' as const, 'fail after' as const, 'delay' as const),
      error,
    }),
    fc.record({
      type: fc.constant('hang' as const),
      call,
      leave: fc.boolean(),
      afterwards: fc.constantFrom('release' as const, 'fail' as const),
      error,
    }),
  ];
  if (hasBody)
    cases.push(
      fc.record({
        type: fc.constant('body' as const),
        kind: fc.constantFrom('error' as const, 'close' as const, 'end' as const, 'stall' as const),
        at,
      }),
    );
  return fc.oneof(...cases);
}

// --- servers ------------------------------------------------------------------------------------

/** What examples/node-http does: ask each handler in turn, copy status, headers and body. */
function nodeHttpServer(): Server {
  const write = async (req: IncomingMessage, res: ServerResponse, response: BerthResponse) => {
    res.writeHead(response.status, response.headers);
    if (!response.body || req.method === 'HEAD') res.end();
    else if (Buffer.isBuffer(response.body)) res.end(response.body);
    else await pipeline(response.body, res).catch(() => undefined);
  };
  return createServer(async (req, res) => {
    try {
      for (const handler of handlers) {
        const response = await handler.handle({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: req });
        if (response) return await write(req, res, response);
      }
      res.writeHead(404).end();
    } catch {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    }
  });
}

function hostServer(adapter: Exclude<Adapter, 'in-process'>): Server {
  if (adapter === 'node-http') return nodeHttpServer();
  if (adapter === 'koa') {
    const app = new Koa();
    app.silent = true; // errors reaching Koa are counted by the test, not printed
    for (const handler of handlers) app.use(berthKoa(handler));
    return createServer(app.callback());
  }
  const app = express();
  for (const handler of handlers) app.use(berthExpress(handler));
  return createServer(app);
}

// --- one case -----------------------------------------------------------------------------------

interface Outcome {
  status: number | undefined;
  state: State;
  calls: string[];
  leased: string[];
}

interface State {
  blobs: BlobStoreSnapshot;
  metadata: MetadataStoreSnapshot;
}

/**
 * The state as the protocol sees it: session ids the seed did not know become `new`, and leases,
 * timestamps and bytes a session holds past its recorded offset (a failed append's tail, which
 * the next append cuts) are left out; so are blob rows no link names (a commit that failed
 * midway leaves one: garbage collection's to remove).
 */
function observe(known: Seed): { state: State; leased: string[] } {
  const rename = (id: string) => (id === known.empty || id === known.holding ? id : 'new');
  const meta = rawMetadata.snapshot();
  const raw = rawBlobs.snapshot();
  const offsets = new Map(meta.uploads.map((u) => [u.id, u.offset]));
  return {
    leased: meta.uploads.filter((u) => u.leaseToken !== undefined).map((u) => rename(u.id)),
    state: {
      blobs: {
        blobs: raw.blobs,
        uploads: raw.uploads
          .map(({ id, content }) => ({ id: rename(id), content: content.subarray(0, offsets.get(id) ?? content.length) }))
          .sort(byId),
      },
      metadata: {
        ...meta,
        blobs: meta.blobs.filter((b) => meta.links.some((l) => l.digest === b.digest)),
        uploads: meta.uploads
          .map(({ id, repository, tenant, offset, state, algorithm, reserved }) => ({
            id: rename(id),
            repository,
            tenant,
            offset,
            state,
            reserved,
            ...(algorithm === undefined ? {} : { algorithm }),
            createdAt: 0,
            updatedAt: 0,
            leaseUntil: 0,
          }))
          .sort(byId),
      },
    },
  };
}

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

let servers: Map<Adapter, string>;
let seeded: Seed;
/** The seed as `observe` sees it. */
let initial: State;
const escaped: unknown[] = [];

/** Wait for `promise`, failing the case if it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Which of the `calls` store calls (1-based) a call or hang fault strikes. */
function nth(fault: Fault, calls: number): number {
  return fault.type === 'call' || fault.type === 'hang' ? 1 + (fault.call % calls) : 1;
}

async function runCase(adapter: Adapter, endpoint: Endpoint, fault: Fault, calls?: number): Promise<Outcome> {
  rawBlobs.restore(seeded.blobs);
  rawMetadata.restore(seeded.metadata);
  faults.clear();
  faults.calls.length = 0;
  inflight.clear(); // a request an earlier case reported as stuck is not this case's
  registry = newRegistry();

  // Arm the fault on the nth call this request makes (of the `calls` it makes without one).
  const call = calls === undefined ? 1 : nth(fault, calls);
  let hang: ReturnType<Faults['hang']> | undefined;
  if (fault.type === 'call' && calls) {
    if (fault.action === 'delay') faults.delay('*', 5, { nth: call });
    else faults.fail('*', ERRORS[fault.error](), { nth: call, after: fault.action === 'fail after' });
  }
  if (fault.type === 'hang' && calls) hang = faults.hang('*', { nth: call });

  const body = endpoint.body ?? Buffer.alloc(0);
  let bodyFault: BodyFault | undefined =
    fault.type === 'body' ? ({ kind: fault.kind, at: Math.floor(fault.at * body.length) } as BodyFault) : undefined;
  // In process, a body without a length that ends early is simply a shorter body (over a socket,
  // the missing last chunk shows it was cut): there the cut is a close.
  const announced = Object.keys(endpoint.headers ?? {}).some((name) => name.toLowerCase() === 'content-length');
  if (bodyFault?.kind === 'end' && !announced && !servers.has(adapter)) bodyFault = { kind: 'close', at: bodyFault.at };
  const path = endpoint.path(seeded);
  const headers = endpoint.headers ?? {};

  let response: Promise<number | undefined>;
  let stalled: Promise<void>;
  let leave: () => void;
  const url = servers.get(adapter);
  if (url === undefined) {
    const stream = faultyBody(body, bodyFault, 4096);
    const request: BerthRequest = {
      method: endpoint.method,
      url: path,
      headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])),
      body: stream,
    };
    response = (async () => {
      for (const handler of handlers) {
        const answer = await handler.handle(request);
        if (answer) {
          if (answer.body && !Buffer.isBuffer(answer.body)) answer.body.resume();
          return answer.status;
        }
      }
      return undefined;
    })();
    stalled = stream.stalled;
    leave = () => stream.destroy(); // what an adapter's request stream does when the client leaves
  } else {
    const exchange = sendRaw(url, { method: endpoint.method, path, headers, body, fault: bodyFault, chunkSize: 4096 });
    response = exchange.response.then((r) => r?.status);
    stalled = exchange.stalled;
    leave = exchange.abort;
  }

  const answered = response.then(() => 'answered' as const);
  if (fault.type === 'body' && fault.kind === 'stall') {
    if ((await Promise.race([stalled.then(() => 'stalled' as const), answered])) === 'stalled') {
      await sleep(CLIENT_PATIENCE_MS);
      leave();
    }
  }
  if (hang) {
    if ((await Promise.race([hang.reached.then(() => 'held' as const), answered])) === 'held') {
      await sleep(CLIENT_PATIENCE_MS);
      if (fault.type === 'hang' && fault.leave) leave();
      if (fault.type === 'hang' && fault.afterwards === 'fail') hang.fail(ERRORS[fault.error]());
      else hang.release();
    }
  }
  const status = await within(response, SETTLE_MS, `${adapter} ${endpoint.name}: the client's request`);
  await within(Promise.allSettled([...inflight]), SETTLE_MS, `${adapter} ${endpoint.name}: the server's handling`);
  await sleep(0); // let a late 'error' event surface before looking
  const { state, leased } = observe(seeded);
  return { status, state, leased, calls: faults.calls.map((c) => `${c.store}.${c.method}`) };
}

// --- the property -------------------------------------------------------------------------------

/** The same request without a fault: its status, the state it leaves, how many calls it makes. */
const references = new Map<string, Outcome>();
async function reference(endpoint: Endpoint): Promise<Outcome> {
  let outcome = references.get(endpoint.name);
  if (!outcome) {
    outcome = await runCase('in-process', endpoint, { type: 'none' });
    assert.equal(outcome.status, endpoint.success, `${endpoint.name} without a fault`);
    references.set(endpoint.name, outcome);
  }
  return outcome;
}

const byName = (name: string) => ENDPOINTS.find((e) => e.name === name) as Endpoint;
const onEscape = (error: unknown) => escaped.push(error);

describe('fault injection: every write endpoint, every adapter, cut anywhere', () => {
  before(async () => {
    process.on('uncaughtException', onEscape);
    process.on('unhandledRejection', onEscape);
    seeded = await seed();
    initial = observe(seeded).state;
    servers = new Map();
    for (const adapter of ADAPTERS) {
      if (adapter === 'in-process') continue;
      const server = hostServer(adapter);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.set(adapter, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      after(async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      });
    }
  });
  after(() => {
    process.off('uncaughtException', onEscape);
    process.off('unhandledRejection', onEscape);
  });

  it('the seed and each request without a fault behave as the spec says', async () => {
    for (const endpoint of ENDPOINTS) await reference(endpoint);
    assert.equal(references.get('DELETE blob')?.state.metadata.links.length, seeded.metadata.links.length - 1);
  });

  for (const adapter of ADAPTERS) {
    it(`${adapter}: no fault escapes, and the state is the one before or the one a success leaves`, { timeout: 120_000 }, async () => {
      const cases = fc
        .constantFrom(...ENDPOINTS.map((e) => e.name))
        .chain((name) => fc.record({ name: fc.constant(name), fault: faultArbitrary(byName(name).body !== undefined) }));
      await fc.assert(
        fc.asyncProperty(cases, async ({ name, fault }) => {
          const endpoint = byName(name);
          const ok = await reference(endpoint);
          escaped.length = 0;
          const got = await runCase(adapter, endpoint, fault, ok.calls.length);
          const where = `${adapter} ${endpoint.name}, answered ${got.status}, calls ${got.calls.join(' ')}`;
          assert.deepEqual(escaped, [], `escaped the request: ${where}`);
          assert.deepEqual(got.leased, [], `upload sessions still leased: ${where}`);
          // Past the point of no return (the blob store consumed the session), a failure cannot
          // undo the request: what is left must then be the state before or the success's once
          // the garbage only sweepers remove (sessions whose bytes are gone, unlinked blobs) is.
          // The same holds when the store reports the session's bytes as bad (IntegrityError), which
          // ends the session by design; then the session may also be gone.
          const late = pastNoReturn(ok.calls, fault);
          const view = late ? settled : (state: State) => state;
          const unchanged = isDeepStrictEqual(view(got.state), view(initial));
          const succeeded = isDeepStrictEqual(view(got.state), view(ok.state));
          const ended =
            (late || endsSession(ok.calls, fault)) &&
            isDeepStrictEqual(settled(got.state), withoutSession(settled(initial), endpoint.session?.(seeded)));
          if (got.status !== undefined && got.status < 300) {
            assert.ok(succeeded, `a ${got.status} must leave the success state: ${where}\n${compare(got.state, ok.state)}`);
          } else if (!unchanged && !succeeded && !ended) {
            assert.fail(
              `neither the state before nor a success's: ${where}\nbefore: ${compare(got.state, initial)}\nsuccess: ${compare(got.state, ok.state)}`,
            );
          }
        }),
        { numRuns: RUNS, endOnFailure: true, includeErrorInReport: true },
      );
    });
  }
});

/** Whether the fault strikes after the call that ends the blob store's session (commit or abort). */
function pastNoReturn(calls: string[], fault: Fault): boolean {
  if (fault.type !== 'call' && fault.type !== 'hang') return false;
  const end = calls.findIndex((c) => c === 'blobs.commitUpload' || c === 'blobs.abortUpload');
  if (end < 0) return false;
  const at = nth(fault, calls.length) - 1;
  return at > end || (at === end && fault.type === 'call' && fault.action === 'fail after');
}

/** Whether the fault is an IntegrityError from the blob store's append or commit (the core ends the session then). */
function endsSession(calls: string[], fault: Fault): boolean {
  if ((fault.type !== 'call' && fault.type !== 'hang') || fault.error !== 'integrity') return false;
  if (fault.type === 'hang' && fault.afterwards === 'release') return false;
  if (fault.type === 'call' && fault.action === 'delay') return false;
  const struck = calls[nth(fault, calls.length) - 1];
  return struck === 'blobs.appendUpload' || struck === 'blobs.commitUpload';
}

/** `state` without the upload session `id` (in both stores). */
function withoutSession(state: State, id: string | undefined): State {
  return {
    blobs: { ...state.blobs, uploads: state.blobs.uploads.filter((u) => u.id !== id) },
    metadata: { ...state.metadata, uploads: state.metadata.uploads.filter((u) => u.id !== id) },
  };
}

/** The state less what only sweepers remove: session records whose bytes are gone, blobs no repository links. */
function settled(state: State): State {
  const sessions = new Set(state.blobs.uploads.map((u) => u.id));
  const linked = new Set(state.metadata.links.map((l) => l.digest));
  return {
    blobs: { ...state.blobs, blobs: state.blobs.blobs.filter((b) => linked.has(b.digest)) },
    metadata: { ...state.metadata, uploads: state.metadata.uploads.filter((u) => sessions.has(u.id)) },
  };
}

/** What differs between two states, section by section, in short. */
function compare(got: State, want: State): string {
  const short = (d: string) => d.slice(7, 15);
  const sections = (state: State): Record<string, string[]> => ({
    blobs: state.blobs.blobs.map((b) => short(b.digest)),
    'blob sessions': state.blobs.uploads.map((u) => `${u.id.slice(0, 8)}:${u.content.length}`),
    repositories: state.metadata.repositories,
    links: state.metadata.links.map((l) => `${l.repository}@${short(l.digest)}`),
    manifests: state.metadata.manifests.map((m) => `${m.repository}@${short(m.digest)}`),
    tags: state.metadata.tags.map((t) => `${t.repository}:${t.tag}=${short(t.digest)}`),
    sessions: state.metadata.uploads.map((u) => `${u.id.slice(0, 8)}:${u.offset}`),
  });
  const [a, b] = [sections(got), sections(want)];
  const lines = Object.keys(a)
    .filter((key) => !isDeepStrictEqual(a[key], b[key]))
    .map((key) => `  ${key}: got [${a[key].join(' ')}], expected [${b[key].join(' ')}]`);
  return lines.length > 0 ? lines.join('\n') : '  (same sections, other details differ)';
}
