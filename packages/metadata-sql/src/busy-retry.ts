// SQLite lets one writer in at a time across every process sharing the file. busy_timeout covers
// short waits synchronously (blocking the event loop, so it is kept short); this loop covers the
// rest asynchronously with jittered backoff. Only SQLITE_BUSY/LOCKED are retried: they mean the
// statement or the whole transaction did not happen, so running it again is safe.
import { setTimeout as sleep } from 'node:timers/promises';
import { isSqliteBusy } from './backend-errors.js';

export interface BusyRetryOptions {
  /** Attempts after the first one. */
  retries: number;
  /** First backoff in ms; doubles each attempt up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_BUSY_RETRY: BusyRetryOptions = { retries: 20, baseDelayMs: 5, maxDelayMs: 250 };

export async function retryWhileBusy<T>(operation: () => Promise<T>, options: BusyRetryOptions = DEFAULT_BUSY_RETRY): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await operation();
    } catch (err) {
      if (attempt >= options.retries || !isSqliteBusy(err)) throw err;
      const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** attempt);
      await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
    }
  }
}
