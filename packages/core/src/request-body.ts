import type { Readable, Writable } from 'node:stream';
import { OciError } from './errors.js';

/** Why a request body did not arrive whole. */
export type BodyFailure = 'aborted' | 'idle' | 'failed';

/**
 * A request body that did not arrive whole: the client closed the connection (`aborted`, answered
 * 499 and not reported as a failure), sent nothing for the idle timeout (`idle`, 408), or the
 * stream itself failed (`failed`, 400). Rendered by `renderError` like every other error.
 */
export class BodyError extends Error {
  constructor(
    readonly reason: BodyFailure,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'BodyError';
  }
}

/** What became of `body`, given the error it died of (if any). */
export function bodyError(body: Readable, error: unknown = body.errored ?? undefined): BodyError {
  if (error instanceof BodyError) return error;
  // A client that hangs up leaves Node's IncomingMessage destroyed with ECONNRESET ("aborted"),
  // or with no error at all; anything else is the stream's own failure.
  const code = (error as { code?: unknown } | undefined)?.code;
  if (error === undefined || code === 'ECONNRESET' || (body as { aborted?: boolean }).aborted === true) {
    return new BodyError('aborted', 'the client closed the request before its body ended', { cause: error });
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new BodyError('failed', `the request body failed: ${reason}`, { cause: error });
}

/** Whether `body` died before its end (the client left, or the stream failed) already. */
export function isDead(body: Readable): boolean {
  return body.destroyed && !body.readableEnded;
}

/** How fast a body must arrive: in every window of `idleMs`, at least one byte and `minBytesPerSecond` on average. */
export interface BodyPace {
  /** The window (ms); 0: no bound. */
  idleMs: number;
  minBytesPerSecond: number;
}

const NO_PACE: BodyPace = { idleMs: 0, minBytesPerSecond: 0 };

/**
 * Call `onFailure` once if `body` dies before its end, or arrives slower than `pace` (checked at
 * the end of each window, so a body that stops is ended within two windows).
 * Returns a function that stops watching; watching also stops when the body ends.
 */
export function watchBody(body: Readable, pace: BodyPace, onFailure: (error: BodyError) => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let received = 0;
  const fail = (error: BodyError) => {
    stop();
    onFailure(error);
  };
  const onError = (error: unknown) => fail(bodyError(body, error));
  const onClose = () => (body.readableEnded ? stop() : fail(bodyError(body)));
  const touch = (chunk: Buffer) => {
    received += chunk.length;
  };
  const stop = () => {
    clearInterval(timer);
    body.off('error', onError).off('close', onClose).off('end', stop).off('data', touch);
  };
  if (isDead(body)) {
    queueMicrotask(onClose);
    return () => undefined;
  }
  body.once('error', onError).once('close', onClose).once('end', stop);
  const { idleMs, minBytesPerSecond } = pace;
  if (idleMs > 0) {
    // A client trickling a byte every few seconds would hold its connection and lease forever
    // under a plain idle timeout: each window must also bring the minimum rate's worth.
    const needed = Math.max(1, Math.floor((minBytesPerSecond * idleMs) / 1000));
    timer = setInterval(() => {
      const seconds = idleMs / 1000;
      if (received === 0) fail(new BodyError('idle', `no byte of the request body arrived for ${seconds} s`));
      else if (received < needed) {
        const rate = Math.round(received / seconds);
        fail(
          new BodyError('idle', `the request body arrived at ${rate} bytes/s over ${seconds} s, below the minimum of ${minBytesPerSecond}`),
        );
      }
      received = 0;
    }, idleMs);
    timer.unref();
    // Added after the reader set the stream flowing, so this listener never resumes a paused body.
    body.on('data', touch);
  }
  return stop;
}

/**
 * Stream `body` into `into`: a body that dies or goes idle destroys `into` with the BodyError, so
 * whatever consumes `into` (a store's append) rejects instead of waiting forever.
 */
export function pipeBody(body: Readable, into: Writable, pace: BodyPace): void {
  body.pipe(into);
  const stop = watchBody(body, pace, (error) => into.destroy(error));
  into.once('close', stop);
}

/**
 * Read a small body (a manifest) into memory, refusing more than `limit` bytes with 413 (before
 * reading any of it when Content-Length already says so). The rest of a refused body is left to
 * `settleBody`, which drains it before the response goes out.
 */
export function readBody(body: Readable, limit: number, pace: BodyPace, contentLength?: string): Promise<Buffer> {
  if (contentLength !== undefined && Number(contentLength) > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let stop = () => {};
    const done = () => {
      stop();
      body.off('data', onData).off('end', onEnd);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      done();
      chunks.length = 0;
      reject(tooLarge(limit));
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks, size));
    };
    body.on('data', onData).once('end', onEnd);
    stop = watchBody(body, pace, (error) => {
      body.off('data', onData).off('end', onEnd);
      reject(error);
    });
  });
}

function tooLarge(limit: number): OciError {
  return new OciError('SIZE_INVALID', { status: 413, message: `manifest exceeds the ${limit}-byte limit`, detail: { limit } });
}

/** How much of an unread body is drained before an error response, so that the client reads it. */
export interface DrainLimits {
  bytes: number;
  ms: number;
}

/**
 * Before an early answer (an error, a 413) goes out on a connection whose request body is still
 * arriving: read and discard the rest, up to `limits`, so the client gets to read the answer.
 * (Closing a socket with unread bytes in it makes the kernel send a reset, and the client may lose
 * the answer with it.) Resolves to whether the body ended; if not, the caller closes the connection.
 */
export function settleBody(body: Readable, limits: DrainLimits, contentLength?: string): Promise<boolean> {
  if (body.readableEnded) return Promise.resolve(true);
  if (body.destroyed) return Promise.resolve(false);
  if (contentLength !== undefined && Number(contentLength) > limits.bytes) return Promise.resolve(false);
  return new Promise((resolve) => {
    let drained = 0;
    let stop = () => {};
    const finish = (ended: boolean) => {
      clearTimeout(deadline);
      stop();
      body.off('data', onData).off('end', onEnd);
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      drained += chunk.length;
      if (drained > limits.bytes) {
        body.pause();
        finish(false);
      }
    };
    const onEnd = () => finish(true);
    const deadline = setTimeout(() => finish(false), limits.ms);
    deadline.unref();
    body.on('data', onData).once('end', onEnd);
    body.resume();
    stop = watchBody(body, NO_PACE, () => finish(false));
  });
}
