/*
 * Request bodies that go wrong at a chosen byte, as clients' bodies do: for `BerthRequest.body`
 * in process (`faultyBody`), and over a real socket to any server (`sendRaw`).
 *
 *   registry.handle({ method: 'PATCH', url, headers, body: faultyBody(bytes, { at: 100, kind: 'error' }) });
 *   const sent = sendRaw(url, { method: 'PATCH', path, headers, body: bytes, fault: { at: 100, kind: 'stall' } });
 *   await sent.stalled; sent.abort();             // a client that went quiet, then away
 */
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';

/**
 * What happens once `at` bytes went out:
 * - `error`: the stream fails (`error`, default an ECONNRESET like Node's), as when the connection resets;
 * - `close`: the stream closes without ending and without an error, as an aborted IncomingMessage may;
 * - `end`: the stream ends cleanly, shorter than the content (and than any Content-Length);
 * - `stall`: nothing more comes until `unstall()` (or the stream is destroyed).
 */
export type BodyFault = { at: number } & ({ kind: 'error'; error?: Error } | { kind: 'close' } | { kind: 'end' } | { kind: 'stall' });

/** A request body stream (not object mode) with an optional fault; see {@link faultyBody}. */
export class FaultyBody extends Readable {
  /** Bytes handed out so far. */
  sent = 0;
  /** Resolves when the stream reaches its stall point. */
  readonly stalled: Promise<void>;
  #reachStall!: () => void;
  #stalled = false;
  #held = false;
  #fault: BodyFault | undefined;

  constructor(
    readonly content: Buffer,
    fault?: BodyFault,
    readonly chunkSize = 16 * 1024,
  ) {
    super();
    this.#fault = fault;
    this.stalled = new Promise((resolve) => {
      this.#reachStall = resolve;
    });
  }

  /** The fault still ahead (none once a stall was lifted). */
  get fault(): BodyFault | undefined {
    return this.#fault;
  }

  /** Let a stalled stream continue with the rest of the content. */
  unstall(): void {
    if (!this.#stalled) return;
    this.#stalled = false;
    this.#fault = undefined;
    if (this.#held) {
      this.#held = false;
      this._read();
    }
  }

  override _read(): void {
    const { fault, content } = this;
    const stop = fault === undefined ? content.length : Math.min(fault.at, content.length);
    if (this.sent < stop) {
      const end = Math.min(this.sent + this.chunkSize, stop);
      const chunk = content.subarray(this.sent, end);
      this.sent = end;
      this.push(chunk);
      return;
    }
    if (fault === undefined || fault.kind === 'end') {
      this.push(null);
      return;
    }
    if (fault.kind === 'stall') {
      this.#stalled = true;
      this.#held = true;
      this.#reachStall();
      return;
    }
    // Fail on a later turn, as a socket would, not inside the consumer's read() call.
    setImmediate(() => {
      if (fault.kind === 'close') this.destroy();
      else this.destroy(fault.error ?? Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
    });
  }
}

/** `content` as a request body that errors, closes, ends or stalls after `fault.at` bytes (none: the whole content). */
export function faultyBody(content: Buffer, fault?: BodyFault, chunkSize?: number): FaultyBody {
  return new FaultyBody(content, fault, chunkSize);
}

export interface RawRequest {
  method: string;
  /** Path and query, e.g. `/v2/a/blobs/uploads/`. */
  path: string;
  headers?: Record<string, string>;
  /** The body's full content. Content-Length announces all of it unless the headers say otherwise. */
  body?: Buffer;
  /** Where and how the body goes wrong on the wire: `error` resets the connection, `close` closes it, `end` half-closes it. */
  fault?: BodyFault;
  /** Bytes per write (and per chunk with `Transfer-Encoding: chunked`, which frames the body). Default 16 KiB. */
  chunkSize?: number;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface RawExchange {
  /** The body as it is being sent (`unstall()`, `sent`). */
  body: FaultyBody;
  /** Resolves once the body stalled and every byte before the stall left this side of the socket. */
  stalled: Promise<void>;
  /** The server's answer, or undefined when the connection ended without a complete one. */
  response: Promise<RawResponse | undefined>;
  /** Resolves when the connection is closed, whoever closed it. */
  closed: Promise<void>;
  /** Close the connection now (a client that went away). */
  abort(): void;
}

/**
 * One HTTP/1.1 request on its own socket, with the body cut as `fault` says: what a hostile or
 * broken client does to a server, which no HTTP client library lets a test do.
 */
export function sendRaw(baseUrl: string, request: RawRequest): RawExchange {
  const { hostname, port } = new URL(baseUrl);
  const content = request.body ?? Buffer.alloc(0);
  const headers: Record<string, string> = { Host: `${hostname}:${port}`, Connection: 'close', ...request.headers };
  if (!Object.keys(headers).some((name) => /^(content-length|transfer-encoding)$/i.test(name))) {
    headers['Content-Length'] = String(content.length);
  }
  const head = `${request.method} ${request.path} HTTP/1.1\r\n${Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')}\r\n`;
  const body = faultyBody(content, request.fault, request.chunkSize);
  const chunked = Object.entries(headers).some(([name, value]) => /^transfer-encoding$/i.test(name) && /chunked/i.test(value));
  const socket: Socket = connect(Number(port), hostname);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined); // a reset from either side ends the exchange, nothing more
  let written = new Promise<void>((resolve) => socket.write(head, () => resolve()));
  const send = (bytes: Buffer | string) => {
    written = new Promise<void>((resolve) => socket.write(bytes, () => resolve()));
  };
  body.on('error', () => undefined); // its failure is what the socket then shows the server
  body.on('data', (chunk: Buffer) => {
    send(chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk);
    if (socket.writableNeedDrain) {
      body.pause();
      socket.once('drain', () => body.resume());
    }
  });
  body.once('end', () => {
    // Cut short: half-close without the last chunk; whole: the terminating chunk, if chunked.
    if (request.fault?.kind === 'end') socket.end();
    else if (chunked) send('0\r\n\r\n');
  });
  body.once('close', () => {
    if (body.readableEnded) return;
    if (request.fault?.kind === 'error') socket.resetAndDestroy();
    else socket.destroy();
  });
  const response = readResponse(socket);
  return {
    body,
    stalled: body.stalled.then(() => written),
    response,
    closed,
    abort: () => {
      body.destroy();
      socket.destroy();
    },
  };
}

/** Parse one response (status line, headers, a Content-Length body) from the socket. */
function readResponse(socket: Socket): Promise<RawResponse | undefined> {
  return new Promise((resolve) => {
    let buffered = Buffer.alloc(0);
    let parsed: { status: number; headers: Record<string, string>; bodyStart: number; length: number } | undefined;
    const finish = (value: RawResponse | undefined) => {
      socket.off('data', onData);
      resolve(value);
    };
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!parsed) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const [statusLine, ...lines] = buffered.subarray(0, end).toString('latin1').split('\r\n');
        const responseHeaders: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(':');
          responseHeaders[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        parsed = {
          status: Number(statusLine.split(' ')[1]),
          headers: responseHeaders,
          bodyStart: end + 4,
          length: Number(responseHeaders['content-length'] ?? 0),
        };
      }
      if (buffered.length - parsed.bodyStart >= parsed.length) {
        finish({
          status: parsed.status,
          headers: parsed.headers,
          body: buffered.subarray(parsed.bodyStart, parsed.bodyStart + parsed.length),
        });
      }
    };
    socket.on('data', onData);
    socket.once('close', () => finish(undefined));
  });
}
