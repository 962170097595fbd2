import { createRequire } from 'node:module';
import { constants } from 'node:os';
import type { Socket } from 'node:net';
import { ServerResponse } from 'node:http';

/** The addon (native/sendfile.c): one transfer per start(), finished by its callback exactly once. */
interface Addon {
  start(
    socketFd: number,
    fileFd: number,
    offset: number,
    length: number,
    done: (error: NodeJS.ErrnoException | null, sent: number) => void,
  ): unknown;
  cancel(transfer: unknown): void;
  /** Bytes sent so far; only before the callback ran. */
  progress(transfer: unknown): number;
}

/**
 * The addon built in a checkout of Berth (build/Release), else the one the published tarball
 * ships prebuilt for this platform (prebuilds/), else none: not Linux, another CPU than the
 * prebuilt ones, or a libc it does not load on. Callers then stream.
 */
function loadAddon(): Addon | undefined {
  const require = createRequire(import.meta.url);
  for (const path of ['../build/Release/sendfile.node', `../prebuilds/${process.platform}-${process.arch}/sendfile.node`]) {
    try {
      const addon = require(path) as Partial<Addon>;
      // Built on a system without sendfile(2): the module loads but exports nothing.
      return typeof addon.start === 'function' ? (addon as Addon) : undefined;
    } catch {
      // absent, or does not load here (another libc): try the next
    }
  }
  return undefined;
}

const addon = loadAddon();

/** Whether zero-copy transfers are possible in this process (the addon built, on Linux). */
export const sendfileAvailable = addon !== undefined;

const errnoNames = new Map(Object.entries(constants.errno).map(([name, value]) => [value, name]));

/** The descriptor of a plain TCP (or Unix) socket; undefined for TLS, which must encrypt in process. */
function descriptorOf(socket: Socket): number | undefined {
  if ((socket as Socket & { encrypted?: boolean }).encrypted) return undefined;
  const fd = (socket as Socket & { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

export interface SendFileError extends NodeJS.ErrnoException {
  /** Bytes that reached the socket before the failure. */
  sent: number;
}

export interface SendFileOptions {
  /**
   * Called once the transfer has started, with a function answering how many bytes of it have
   * gone out so far (a stall watchdog's progress). To end a transfer the client stopped reading,
   * destroy the socket: the transfer then rejects with ECANCELED.
   */
  onStart?: (sent: () => number) => void;
}

/**
 * Sends `length` bytes of `fileFd` from `offset` to `socket`'s connection with sendfile(2), so the
 * bytes go from the page cache to the socket without passing through this process. Nothing else
 * may write to the socket until it settles. Resolves when every byte is in the socket's buffer;
 * rejects with an errno error (`code` EPIPE, ECONNRESET, ...; ECANCELED when the socket closed
 * first; EINVAL or ENOSYS where the file's filesystem cannot splice) whose `sent` says how many
 * bytes went out. The caller may close `fileFd` at any time: the transfer uses its own duplicate.
 */
export function sendFile(socket: Socket, fileFd: number, offset: number, length: number, options: SendFileOptions = {}): Promise<void> {
  const socketFd = descriptorOf(socket);
  if (!addon || socketFd === undefined) return Promise.reject(new Error('sendFile: no zero-copy path for this socket'));
  const { start, cancel, progress } = addon;
  return new Promise((resolve, reject) => {
    let settled: number | undefined;
    // Node closing its socket leaves the connection open through our duplicate: stop at once.
    const onClose = () => settled !== undefined || cancel(transfer);
    const transfer = start(socketFd, fileFd, offset, length, (error, sent) => {
      settled = sent;
      socket.off('close', onClose);
      if (!error) return resolve();
      error.code = error.errno ? errnoNames.get(error.errno) : 'ERR_FILE_TOO_SHORT';
      reject(Object.assign(error, { sent }));
    });
    socket.once('close', onClose);
    // The addon answers progress only until its callback ran; after that, the final count.
    options.onStart?.(() => settled ?? progress(transfer));
  });
}

/** Whether `response`'s head frames an unencoded body of exactly `length` bytes. */
function declaresExactly(response: ServerResponse, length: number): boolean {
  return Number(response.getHeader('content-length')) === length && response.getHeader('content-encoding') === undefined;
}

/**
 * The socket a body of `length` bytes can be sent to with sendFile, or undefined when it must be
 * streamed: not a Node http response, headers already out, not yet at the head of its keep-alive
 * connection, HEAD, no exact Content-Length (chunked framing) or a Content-Encoding, TLS, or no
 * addon.
 */
export function zeroCopySocket(destination: unknown, length: number): Socket | undefined {
  if (!addon || !(destination instanceof ServerResponse)) return undefined;
  const { socket, req } = destination;
  if (!socket || destination.headersSent || destination.writableEnded || req.method === 'HEAD') return undefined;
  if (!declaresExactly(destination, length)) return undefined;
  return descriptorOf(socket) === undefined ? undefined : socket;
}

/**
 * Writes `response`'s head and waits until it is in the socket, so a sendFile of the body that
 * starts next follows it (check zeroCopySocket first). Rejects with `code` ERR_HEAD_CHANGED and
 * `sent` 0 when a hook on the head (a compression middleware, say) dropped the Content-Length or
 * added a Content-Encoding: the body must then go through the response's own write(), to be
 * framed and encoded as that head says.
 */
export async function flushHead(response: ServerResponse, socket: Socket, length: number): Promise<void> {
  response.flushHeaders();
  if (!declaresExactly(response, length)) {
    throw Object.assign(new Error('a hook changed the response head; the body must be written through it'), {
      code: 'ERR_HEAD_CHANGED',
      sent: 0,
    });
  }
  // The head goes out through Node's own write queue; the body must not overtake it.
  await new Promise<void>((resolve, reject) => socket.write(Buffer.alloc(0), (error) => (error ? reject(error) : resolve())));
}
