import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { SendFileError } from '@berthjs/sendfile';
import type { BerthResponse } from './http.js';
import { isFileRangeBody, type FileRangeBody } from './ports/blob-store.js';
import { watchSend } from './send-idle.js';

// An optional dependency: without it (not installed, or its addon did not build) bodies stream.
const zeroCopy = await import('@berthjs/sendfile').catch(() => undefined);

/** Options of {@link writeResponse} and {@link writeBody}, and of the Koa and Express adapters. */
export interface NodeWriteOptions {
  /**
   * Send file-range bodies (fs blob downloads) with sendfile(2) where the connection allows it
   * (default true): plain HTTP/1.1, no TLS, nothing re-encoding the response, Linux with
   * @berthjs/sendfile's addon. Server CPU per GiB pulled drops from ~0.6 s to ~0.1 s. Off, every
   * byte goes through Node streams.
   */
  sendfile?: boolean;
  /**
   * End the body and close the connection once the client has read nothing of it for this long
   * (ms); 0 or absent: never. `writeResponse` takes it from the response (`idleTimeoutMs`, which
   * the registry sets from its `sendIdleTimeoutMs`).
   */
  idleTimeoutMs?: number;
}

/** A client that went away, or stopped reading (ETIMEDOUT: idleTimeoutMs), mid-download is not a storage error. */
const CLIENT_GONE = new Set(['ECANCELED', 'EPIPE', 'ECONNRESET', 'ETIMEDOUT']);
/**
 * Failures before any byte of the body went out after which it streams instead: sendfile(2)
 * errors of a file whose filesystem cannot splice its pages into a socket, and a head some hook
 * changed (a compression middleware dropped Content-Length).
 */
const STREAM_INSTEAD = new Set(['EINVAL', 'ENOSYS', 'EOPNOTSUPP', 'ERR_HEAD_CHANGED']);

/**
 * Write a Berth response to a Node `http.ServerResponse` whose head is not out yet: status and
 * headers with setHeader (so hooks on the head still see them), then the body as
 * {@link writeBody} does. For plain `node:http` hosts; the Koa and Express adapters use the same.
 */
export function writeResponse(res: ServerResponse, response: BerthResponse, options: NodeWriteOptions = {}): Promise<void> {
  res.statusCode = response.status;
  for (const [name, value] of Object.entries(response.headers)) res.setHeader(name, value);
  return writeBody(res, response.body, { idleTimeoutMs: response.idleTimeoutMs, ...options });
}

/**
 * Write a response body after the status and headers set on `res`, and end it: nothing for HEAD,
 * a Buffer as is, a stream piped. A file-range body (see FileRangeBody) goes from the page cache
 * to the socket with sendfile(2) when nothing stands between it and the connection (see
 * NodeWriteOptions.sendfile); otherwise it streams like any other. Resolves when the body is
 * out; rejects as `pipeline` does when the body or the connection fails (the response is then
 * destroyed).
 */
export async function writeBody(res: ServerResponse, body: Buffer | Readable | undefined, options: NodeWriteOptions = {}): Promise<void> {
  if (!body || res.req?.method === 'HEAD') {
    if (body && !Buffer.isBuffer(body)) body.destroy();
    res.end();
    return;
  }
  const idleMs = options.idleTimeoutMs ?? 0;
  if (Buffer.isBuffer(body)) {
    // Watched until it is out: an unread large manifest would otherwise hold its memory.
    watchSend(res, idleMs);
    res.end(body);
    return;
  }
  if (options.sendfile !== false && isFileRangeBody(body) && (await sendFileRange(res, body, idleMs))) return;
  const stop = watchSend(res, idleMs);
  try {
    await pipeline(body, res);
  } finally {
    stop();
  }
}

/**
 * Whether `res` writes its body bytes as they are: a middleware that compresses or otherwise
 * rewrites the body (Express's compression) replaces `write` and `end` on the response itself.
 */
function untransformed(res: ServerResponse): boolean {
  return !Object.hasOwn(res, 'write') && !Object.hasOwn(res, 'end');
}

/**
 * Send `body` with sendfile(2), or answer false (nothing of the body went out: stream it) when
 * the connection does not allow it or the file cannot be spliced.
 */
async function sendFileRange(res: ServerResponse, body: FileRangeBody, idleMs: number): Promise<boolean> {
  if (!zeroCopy || !untransformed(res)) return false;
  const span = body.fileRange.take();
  if (!span) return false;
  // Not a Node http/1 response (HTTP/2), TLS, head out, HEAD, no exact Content-Length, an encoding.
  const socket = zeroCopy.zeroCopySocket(res, span.length);
  if (!socket) {
    body.fileRange.release();
    return false;
  }
  try {
    await zeroCopy.flushHead(res, socket, span.length);
    // Destroyed meanwhile, the descriptor may be closed and its number reused: send nothing.
    if (body.destroyed) throw Object.assign(new Error('blob body destroyed'), { code: 'ECANCELED', sent: 0 });
    // Watched like a streamed body: bytes that left through the addon are progress too.
    let sent = () => 0;
    const stop = watchSend(res, idleMs, () => socket.bytesWritten + sent());
    try {
      await zeroCopy.sendFile(socket, span.fd, span.start, span.length, { onStart: (progress) => (sent = progress) });
    } finally {
      stop();
    }
  } catch (error) {
    const { code, sent } = error as SendFileError;
    if (sent === 0 && STREAM_INSTEAD.has(code ?? '') && !res.destroyed) {
      // The head may be out, but not a byte of the body: it can still stream the ordinary way.
      body.fileRange.release();
      return false;
    }
    // Part of the body may be out: the connection cannot carry another response.
    res.destroy();
    const gone = CLIENT_GONE.has(code ?? '');
    body.destroy(gone ? undefined : (error as Error));
    if (gone) return true;
    throw error;
  }
  body.fileRange.sent();
  res.end();
  return true;
}
