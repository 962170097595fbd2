import { randomUUID } from 'node:crypto';
import { finished, type Readable } from 'node:stream';
import type { Principal } from './auth.js';
import type { RegistryEventEmitter } from './events.js';
import { header, type BerthHandler, type BerthRequest, type BerthResponse } from './http.js';

/**
 * What Berth logs through: pino's methods, so a pino logger (or any object with the same four
 * methods, such as a `console` wrapper) can be passed as is.
 */
export interface Logger {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

/** One request, as logged and counted once it is over. Never holds credentials. */
export interface RequestFacts {
  /** The client's `X-Request-Id` when it is a sane token, else a new UUID; echoed on the response. */
  requestId: string;
  method: string;
  /** The path and query, cut at 1,000 characters. */
  url: string;
  /** The route's name (`manifest`, `blob`, `upload`…, or what `observe` was given); a bounded label. */
  route?: string;
  repository?: string;
  status: number;
  /** Request body bytes the handler read. */
  bytesIn: number;
  /** Response body bytes handed to the adapter (an aborted stream counts what it had passed on). */
  bytesOut: number;
  /** From the start of `handle` to the end of the response body. */
  durationMs: number;
  /** The caller's name (see `principalName`), never the principal object itself. */
  principal?: string;
  /** The client's address: the socket's, or with `trustProxy` the one `X-Forwarded-For` names. */
  client?: string;
  /** The client went away before the request or the response was complete. */
  aborted: boolean;
  /** What failed the request (a 5xx, or a response stream that broke), if anything. */
  error?: unknown;
}

export interface ObserveOptions {
  logger?: Logger;
  trustProxy: boolean | number;
  principalName: (principal: Principal) => string | undefined;
  events: RegistryEventEmitter;
}

/** A request being served. */
interface Tracked {
  facts: RequestFacts;
  request: BerthRequest;
  started: number;
  body?: Readable;
  level: 'info' | 'debug';
}

/** What `drain` did: how many requests were in flight when it began, and how many it had to cut. */
export interface DrainReport {
  inFlight: number;
  cut: number;
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/**
 * Request ids, per-request facts (for logs, metrics and the `request.completed` event) and the
 * set of requests in flight (for `close()` to drain). A request is over when its response body
 * has been handed on in full, or given up on; Buffer bodies are over when `handle` returns.
 */
export class RequestTracker {
  private readonly inFlight = new Set<Tracked>();
  private readonly idle = new Set<() => void>();

  constructor(private readonly options: ObserveOptions) {}

  begin(request: BerthRequest, level: Tracked['level'] = 'info'): Tracked {
    const given = header(request, 'x-request-id');
    const facts: RequestFacts = {
      requestId: given && REQUEST_ID.test(given) ? given : randomUUID(),
      method: request.method,
      url: request.url.slice(0, 1000),
      status: 0,
      bytesIn: 0,
      bytesOut: 0,
      durationMs: 0,
      client: clientAddress(request, this.options.trustProxy),
      aborted: false,
    };
    countBytes(request.body, (n) => (facts.bytesIn += n));
    const tracked: Tracked = { facts, request, started: performance.now(), level };
    this.inFlight.add(tracked);
    return tracked;
  }

  /** Record the caller once known (the name only). */
  identify(tracked: Tracked, principal: Principal | undefined): void {
    if (principal !== undefined) tracked.facts.principal = this.options.principalName(principal);
  }

  /** Not ours after all (a path the host serves): forget it without a trace. */
  forget(tracked: Tracked): void {
    this.inFlight.delete(tracked);
    this.notifyIfIdle();
  }

  /** Stamp the response with the request id and finish the request when its body is done. */
  respond(tracked: Tracked, response: BerthResponse): void {
    const { facts } = tracked;
    facts.status = response.status;
    response.headers['X-Request-Id'] = facts.requestId;
    const { body } = response;
    if (!body || Buffer.isBuffer(body)) {
      facts.bytesOut = body?.length ?? 0;
      this.finish(tracked);
      return;
    }
    tracked.body = body;
    let counted = 0;
    countBytes(body, (n) => (counted += n));
    finished(body, (error) => {
      const declared = Number(response.headers['Content-Length']);
      // Sent by sendfile(2), a body passes no bytes through the stream: count what it declared.
      facts.bytesOut = !error && Number.isSafeInteger(declared) ? declared : counted;
      if (error && (error as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') facts.aborted = true;
      else if (error) facts.error ??= error;
      this.finish(tracked);
    });
  }

  /** Requests in flight now, by route and method (for gauges). */
  *current(): Iterable<Pick<RequestFacts, 'method' | 'route'>> {
    for (const { facts } of this.inFlight) yield facts;
  }

  /**
   * Wait up to `timeoutMs` for every request in flight (including those that start meanwhile) to
   * end; then cut the rest (their request and response streams are destroyed, so handlers give up
   * and release what they hold) and wait up to `graceMs` more for their handlers to unwind.
   */
  async drain(timeoutMs: number, graceMs = 5000): Promise<DrainReport> {
    const inFlight = this.inFlight.size;
    await this.whenIdle(timeoutMs);
    const cut = this.inFlight.size;
    for (const tracked of this.inFlight) {
      tracked.facts.aborted = true;
      tracked.request.body.destroy();
      tracked.body?.destroy();
    }
    if (cut > 0) await this.whenIdle(graceMs);
    return { inFlight, cut };
  }

  private whenIdle(timeoutMs: number): Promise<void> {
    if (this.inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.idle.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.idle.add(done);
    });
  }

  private notifyIfIdle(): void {
    if (this.inFlight.size === 0) for (const done of [...this.idle]) done();
  }

  private finish(tracked: Tracked): void {
    if (!this.inFlight.delete(tracked)) return;
    const { facts, request } = tracked;
    facts.durationMs = Math.round((performance.now() - tracked.started) * 1000) / 1000;
    if (requestCut(request.body)) facts.aborted = true;
    this.options.events.emit('request.completed', facts);
    this.log(tracked);
    this.notifyIfIdle();
  }

  private log({ facts, level }: Tracked): void {
    const { logger } = this.options;
    if (!logger) return;
    const { error, ...fields } = facts;
    if (facts.status >= 500 && !facts.aborted) logger.error({ ...fields, err: error }, 'request failed');
    else logger[level](fields, 'request');
  }
}

/**
 * Wrap another handler (the token endpoint, a host route) so that its requests get request ids,
 * facts, log lines and a place in the drain, like the registry's own, under route name `route`.
 */
export function observeHandler(tracker: RequestTracker, handler: BerthHandler, route: string, level: Tracked['level']): BerthHandler {
  return {
    async handle(request) {
      const tracked = tracker.begin(request, level);
      tracked.facts.route = route;
      let response: BerthResponse | undefined;
      try {
        response = await handler.handle(request);
      } catch (error) {
        tracked.facts.status = 500;
        tracked.facts.error = error;
        tracker.respond(tracked, { status: 500, headers: {} });
        throw error;
      }
      if (!response) tracker.forget(tracked);
      else tracker.respond(tracked, response);
      return response;
    },
  };
}

/**
 * The default `principalName`: a string principal itself, else the first string among its
 * `username`, `subject`, `name` and `sub` properties (basicAuth and tokenAuth principals have one).
 */
export function defaultPrincipalName(principal: Principal): string | undefined {
  if (typeof principal === 'string') return principal;
  if (typeof principal !== 'object' || principal === null) return undefined;
  for (const key of ['username', 'subject', 'name', 'sub']) {
    const value = (principal as Record<string, unknown>)[key];
    if (typeof value === 'string' && value !== '') return value.slice(0, 200);
  }
  return undefined;
}

/**
 * The client's address. With `trustProxy` (true: one proxy; n: that many), the address the
 * outermost trusted proxy saw, counted from the right of `X-Forwarded-For`, since entries further
 * left were written by the client and prove nothing.
 */
export function clientAddress(request: BerthRequest, trustProxy: boolean | number): string | undefined {
  const hops = trustProxy === true ? 1 : trustProxy === false ? 0 : Math.max(0, Math.floor(trustProxy));
  if (hops > 0) {
    const forwarded = header(request, 'x-forwarded-for')
      ?.split(',')
      .map((entry) => entry.trim())
      .filter(Boolean);
    if (forwarded && forwarded.length > 0) return forwarded[Math.max(0, forwarded.length - hops)].slice(0, 100);
  }
  return request.remoteAddress;
}

/**
 * Count the bytes a stream passes on without changing how it flows: a 'data' listener added once
 * it flows sees exactly what its consumer sees (adding one earlier would start it).
 */
function countBytes(stream: Readable, onBytes: (n: number) => void): void {
  stream.once('resume', () => stream.on('data', (chunk: Buffer | string) => onBytes(chunk.length)));
}

/** The client hung up before its request body was complete. */
function requestCut(body: Readable): boolean {
  const complete = (body as Readable & { complete?: boolean }).complete;
  return body.destroyed && (complete === undefined ? !body.readableEnded : !complete);
}
