import type { Readable } from 'node:stream';

/**
 * The request as every adapter hands it to the core: no framework types. `url` is the path and
 * raw query string as received (`/v2/a/b/tags/list?n=10`); `headers` use lowercase names
 * (Node's IncomingHttpHeaders qualifies); `body` is the raw request stream, never pre-read.
 */
export interface BerthRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
  /** The peer's address (`req.socket.remoteAddress`), for logs and per-address rate limits. */
  remoteAddress?: string;
}

/**
 * What the adapter writes back. `body` is bytes or a stream; absent for HEAD, 202, 204 and the
 * like. Headers that must reach the wire untouched (Content-Length, Content-Type) are set here,
 * so an adapter copies them verbatim and must not compress or re-encode the body.
 */
export interface BerthResponse {
  status: number;
  headers: Record<string, string>;
  body?: Buffer | Readable;
  /** End the body, closing the connection, when the client reads nothing of it for this long (ms); see `sendIdleTimeoutMs`. */
  idleTimeoutMs?: number;
}

/** Anything that answers Berth requests (the registry, the token endpoint of @berthjs/auth): adapters mount any of them. */
export interface BerthHandler {
  /** Resolves to undefined when the path is not this handler's, so the host app serves it. */
  handle(request: BerthRequest): Promise<BerthResponse | undefined>;
}

export function header(request: Pick<BerthRequest, 'headers'>, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}
