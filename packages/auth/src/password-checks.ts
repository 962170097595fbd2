import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import bcrypt from 'bcryptjs';
import { OciError } from '@berthjs/core';

/** Real checks at a bcrypt cost needed before a refusal waits instead of hashing. */
const SEED_CHECKS = 5;
/** Recent check times (per cost) whose median a refusal waits. */
const WINDOW = 9;
/** A wait not re-measured for this long is measured again by one real check: it follows the machine's load. */
const STALE_MS = 60_000;

/**
 * bcrypt checks run one at a time, in arrival order, and refusals that take as long without the work.
 *
 * bcryptjs holds the event loop for a whole check (~60 ms at cost 10), so concurrent checks finish
 * one after another anyway. A refusal for a user who does not exist takes its turn in the same line
 * and waits there as long as recent real checks at the same cost took in this process: the same
 * time as a wrong password, alone or among many concurrent attempts, without the CPU work. Only the
 * first checks at a cost, and one a minute after, are real.
 */
export class PasswordChecks {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private readonly timings = new Map<number, { samples: number[]; measuredAt: number }>();

  /** @param maxPending checks waiting or running before more are refused with 429 TOOMANYREQUESTS. */
  constructor(private readonly maxPending: number) {}

  /** Whether `password` matches the bcrypt `hash`. */
  check(password: string, hash: string): Promise<boolean> {
    return this.inTurn(() => this.compare(password, hash));
  }

  /** false, after as long as a wrong password against `hash` takes. */
  refuse(hash: string): Promise<false> {
    return this.inTurn(async () => {
      const timing = this.timings.get(costOf(hash));
      if (!timing || timing.samples.length < SEED_CHECKS || Date.now() - timing.measuredAt > STALE_MS) {
        await this.compare(randomBytes(18).toString('base64'), hash);
      } else {
        await sleep(median(timing.samples));
      }
      return false as const;
    });
  }

  private async compare(password: string, hash: string): Promise<boolean> {
    const start = performance.now();
    const ok = await bcrypt.compare(password, hash);
    const cost = costOf(hash);
    const timing = this.timings.get(cost) ?? { samples: [], measuredAt: 0 };
    timing.samples.push(performance.now() - start);
    if (timing.samples.length > WINDOW) timing.samples.shift();
    timing.measuredAt = Date.now();
    this.timings.set(cost, timing);
    return ok;
  }

  private inTurn<T>(job: () => Promise<T>): Promise<T> {
    if (this.pending >= this.maxPending) {
      return Promise.reject(
        new OciError('TOOMANYREQUESTS', {
          message: 'too many password checks in progress; retry shortly',
          headers: { 'Retry-After': '1' },
        }),
      );
    }
    this.pending++;
    const run = this.tail.then(job).finally(() => this.pending--);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** The cost field of a `$2y$10$...` hash. */
function costOf(hash: string): number {
  return Number(hash.slice(4, 6));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
