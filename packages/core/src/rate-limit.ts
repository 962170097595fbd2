import type { Principal } from './auth.js';
import type { BerthRequest } from './http.js';
import type { Route } from './routes.js';

/** What the `rateLimit` hook is asked about: every `/v2` request, once the caller is known. */
export interface RateLimitRequest {
  request: BerthRequest;
  /** The caller, or undefined when anonymous (or when its credentials failed). */
  principal: Principal | undefined;
  /** The caller's name (see `principalName`), when there is one. */
  principalName: string | undefined;
  route: Route;
  /** The client's address (see `trustProxy`), when known. */
  client: string | undefined;
}

/**
 * Decides whether a request may go ahead: `undefined` (or 0) lets it through; a positive number
 * refuses it with 429 `TOOMANYREQUESTS` and says, as `Retry-After`, how many seconds to wait.
 */
export type RateLimit = (input: RateLimitRequest) => number | undefined | Promise<number | undefined>;

export interface TokenBucketOptions {
  /** Requests each caller may make per second, on average. */
  perSecond: number;
  /** Requests a caller may make at once after being idle. Default: one second's worth (at least 1). */
  burst?: number;
  /** Callers remembered at once; the longest idle are forgotten first (they start with a full bucket). Default 10,000. */
  maxCallers?: number;
  /** Names a caller. Default: the principal's name, else the client's address. */
  key?: (input: RateLimitRequest) => string;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * The built-in `rateLimit`: an in-memory token bucket per caller (the principal's name, or the
 * client's address for anonymous callers). Each replica counts on its own.
 */
export function tokenBucket(options: TokenBucketOptions): RateLimit {
  const { perSecond } = options;
  if (!(perSecond > 0) || !Number.isFinite(perSecond)) throw new RangeError('tokenBucket: perSecond must be a positive number');
  const burst = Math.max(1, options.burst ?? perSecond);
  const maxCallers = options.maxCallers ?? 10_000;
  const key = options.key ?? (({ principalName, client }) => (principalName ? `user:${principalName}` : `addr:${client ?? ''}`));
  const buckets = new Map<string, Bucket>();
  return (input) => {
    const name = key(input);
    const now = performance.now() / 1000;
    const seen = buckets.get(name);
    const bucket = seen ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + (now - bucket.at) * perSecond);
    bucket.at = now;
    // Re-insert: Map order doubles as least-recently-used order.
    buckets.delete(name);
    buckets.set(name, bucket);
    if (buckets.size > maxCallers) buckets.delete(buckets.keys().next().value as string);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / perSecond));
  };
}
