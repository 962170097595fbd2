import { OciError } from './errors.js';

/** Seconds a client told 429 or 503 should wait before trying again. */
export const RETRY_AFTER_SECONDS = 5;

/**
 * A quantity the requests of one process share (upload streams, manifest bytes in memory): what
 * does not fit is refused at once with 429, never queued, so a flood cannot build up waiters.
 */
export class Budget {
  private used = 0;

  constructor(
    readonly limit: number,
    private readonly what: string,
  ) {}

  /** Take `amount`, returning its release (idempotent); throws 429 TOOMANYREQUESTS when it does not fit. */
  take(amount: number): () => void {
    if (this.used + amount > this.limit) {
      throw new OciError('TOOMANYREQUESTS', {
        message: `too many ${this.what} at once (limit ${this.limit}); retry later`,
        headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) },
      });
    }
    this.used += amount;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= amount;
    };
  }

  /** What is taken now. */
  get inUse(): number {
    return this.used;
  }
}
