// What the hostile-client suites share: the three ways a host mounts Berth (Koa, Express, and
// `registry.handle` on plain node:http), each recording every status Berth answered and every
// `request.failed` event, and raw-socket clients that misbehave on purpose.
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { createRegistry, type BerthHandler, type BlobStore, type MetadataStore, type Registry } from '@berthjs/core';
import { after, before } from 'node:test';
import { TestClient } from './client.js';
import { hostApp, nodeHandler, type ExtraOptions } from './servers.js';
import type { StoreSet } from './stores.js';

export type HostName = 'koa' | 'express' | 'node';
export const HOSTS: HostName[] = ['koa', 'express', 'node'];

export interface HostileHost {
  url: string;
  registry: Registry;
  /** Every status Berth answered, in order. */
  statuses: number[];
  /** Every `request.failed` event's error. */
  failures: unknown[];
  stop(): Promise<void>;
}

/** Berth over `stores`, mounted as `host` mounts it, on a port of its own. */
export async function startHost(
  host: HostName,
  stores: { blobs: BlobStore; metadata: MetadataStore },
  extra: ExtraOptions = {},
): Promise<HostileHost> {
  const registry = createRegistry({ ...stores, ...extra });
  const statuses: number[] = [];
  const failures: unknown[] = [];
  registry.events.on('request.failed', ({ error }) => failures.push(error));
  const recorded: BerthHandler = {
    async handle(request) {
      const response = await registry.handle(request);
      if (response) statuses.push(response.status);
      return response;
    },
  };
  const server: Server = createServer(host === 'node' ? nodeHandler(recorded) : hostApp(host, recorded, { quiet: true }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    registry,
    statuses,
    failures,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await registry.close();
    },
  };
}

/** A host of a describe block, ready from its `before` on: the server, a client, the stores under it. */
export interface HostFixture {
  host: HostileHost;
  client: TestClient;
  stores: StoreSet;
}

/**
 * Start one registry per name in `names` over one fresh store set before the enclosing describe's
 * tests, and stop them and destroy the data after. `open` may wrap the opened stores (faults).
 */
export function useHosts(
  names: HostName[],
  makeStores: () => Promise<StoreSet>,
  extra: ExtraOptions = {},
  open: (stores: StoreSet) => Promise<{ blobs: BlobStore; metadata: MetadataStore }> = (stores) => stores.open(),
): Map<HostName, HostFixture> {
  const fixtures = new Map(names.map((name) => [name, {} as HostFixture]));
  let stores: StoreSet | undefined;
  before(async () => {
    stores = await makeStores();
    for (const [name, fixture] of fixtures) {
      const host = await startHost(name, await open(stores), extra);
      Object.assign(fixture, { host, client: new TestClient(host.url), stores });
    }
  });
  after(async () => {
    for (const fixture of fixtures.values()) await fixture.host?.stop();
    await stores?.destroy();
  });
  return fixtures;
}

/** An HTTP/1.1 request head: `PATCH /x` plus headers, ending in the blank line. */
export function head(requestLine: string, headers: Record<string, string | number> = {}): string {
  const lines = Object.entries({ Host: 'berth', ...headers }).map(([k, v]) => `${k}: ${v}`);
  return `${requestLine} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

/** Send `request` plus the first bytes of its body on a raw socket, then close it at once. */
export function cutRequest(url: string, request: string, sent: Buffer = Buffer.alloc(0)): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(request);
      socket.end(sent);
      socket.destroy();
      resolve();
    });
    socket.on('error', () => resolve());
  });
}

export interface RawExchange {
  socket: Socket;
  /** Everything the server sent, once it closed the connection (or `error` says why not). */
  done: Promise<{ text: string; status?: number; error?: string; ms: number }>;
}

/** Open a raw connection and send `parts` (a head, the first body bytes); `done` resolves when the server closes it. */
export function openRaw(url: string, ...parts: (string | Buffer)[]): RawExchange {
  const { hostname, port } = new URL(url);
  const started = performance.now();
  const socket = connect(Number(port), hostname);
  for (const part of parts) socket.write(part);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  const done = new Promise<{ text: string; status?: number; error?: string; ms: number }>((resolve) => {
    const finish = (error?: string) => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
      resolve({ text, status: status ? Number(status) : undefined, error, ms: performance.now() - started });
    };
    socket.on('error', (error: NodeJS.ErrnoException) => finish(error.code ?? error.message));
    socket.on('close', () => finish());
  });
  return { socket, done };
}

/** Write one byte every `everyMs` on `socket` until it closes or `stop` is called. */
export function trickle(socket: Socket, everyMs: number): () => void {
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write('x');
  }, everyMs);
  socket.once('close', () => clearInterval(timer));
  return () => clearInterval(timer);
}

/** `target` with some methods replaced (the rest still run on `target`, private fields and all). */
export function overrideMethods<T extends object>(target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get(object, property) {
      if (Object.hasOwn(overrides, property)) return overrides[property as keyof T];
      const value = Reflect.get(object, property, object);
      return typeof value === 'function' ? value.bind(object) : value;
    },
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
