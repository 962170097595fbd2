import type { Readable } from 'node:stream';

const ignore = () => undefined;

/**
 * Give a stream the store creates an 'error' listener at once. Whoever consumes it later still
 * sees the error (through its own listener, pipeline or for-await); this one only keeps an error
 * that comes before any consumer (a reset socket between two awaits) from taking the process down.
 */
export function quiet<T extends Readable>(stream: T): T {
  stream.on('error', ignore);
  return stream;
}
