import type { ServerResponse } from 'node:http';

/**
 * Destroys `res` (with an ETIMEDOUT error) once no byte of it has gone to the connection for
 * `idleMs`: a client that stops reading a download would otherwise hold the response, its file
 * or S3 stream and its socket forever. Progress is what Node handed the kernel for the socket
 * (`bytesWritten` stops moving once the kernel's buffer is full and the response is paused), so
 * a slow client that keeps reading is never cut. A body sent around Node (sendfile) adds its own
 * count to `progress`. Returns the stop, also run when the response closes.
 */
export function watchSend(res: ServerResponse, idleMs: number, progress = () => res.socket?.bytesWritten ?? 0): () => void {
  if (!(idleMs > 0)) return () => {};
  let seen = progress();
  let since = Date.now();
  const timer = setInterval(
    () => {
      const now = progress();
      if (now !== seen) {
        seen = now;
        since = Date.now();
      } else if (Date.now() - since >= idleMs) {
        stop();
        res.destroy(Object.assign(new Error(`the client read nothing for ${idleMs} ms`), { code: 'ETIMEDOUT' }));
      }
    },
    Math.max(10, Math.min(1000, idleMs / 4)),
  ).unref();
  const stop = () => {
    clearInterval(timer);
    res.off('close', stop);
  };
  res.once('close', stop);
  return stop;
}
