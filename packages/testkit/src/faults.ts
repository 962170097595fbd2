/*
 * Fault injection for stores: wrap any BlobStore or MetadataStore (the memory stores, or a real
 * fs/S3/SQL store) and make chosen calls fail, wait or hang.
 *
 *   const faults = new Faults();
 *   const blobs = faults.wrap(new MemoryBlobStore(), 'blobs');
 *   const metadata = faults.wrap(new MemoryMetadataStore(), 'metadata');
 *   faults.fail('appendUpload', new UnavailableError('disk gone', 'test'));      // every call
 *   faults.fail('linkBlob', error, { nth: 2 });                                  // the 2nd call only
 *   faults.fail('*', error, { nth: 7, after: true });     // the 7th call of any method, after it ran
 *   faults.delay('putManifest', 50, { when: (manifest) => manifest.repository === 'a' });
 *   const hang = faults.hang('commitUpload');
 *   await hang.reached;      // a call is being held
 *   hang.release();          // let it (and later ones) through; or hang.fail(error)
 *
 * A rule applies to the calls it matches from the moment it is added: `nth` counts those calls
 * (1-based), `times` limits how many it takes. Every call through a wrapper is logged in `calls`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BlobStore, MetadataStore } from '@berthjs/core';

type MethodOf<T> = { [K in keyof T]-?: T[K] extends (...args: never[]) => unknown ? K : never }[keyof T] & string;

/** Any method of either port, or `'*'` for every call. */
export type StoreMethod = MethodOf<BlobStore> | MethodOf<MetadataStore> | '*';

export interface FaultMatch {
  /** Only calls through the wrapper with this label (see `wrap`). */
  store?: string;
  /** Only calls whose arguments satisfy this. */
  // biome-ignore lint/suspicious/noExplicitAny: the arguments of whichever port method the rule names
  when?: (...args: any[]) => boolean;
  /** Only the nth matching call (1-based), counted from when the rule was added. */
  nth?: number;
  /** At most this many calls (default: every matching call; 1 with `nth`). */
  times?: number;
}

export interface FailOptions extends FaultMatch {
  /** Run the real call first, then throw: the change happened but the caller never heard of it. */
  after?: boolean;
}

/** A held call site: calls matching a `hang` rule wait here until released or failed. */
export interface Hang {
  /** Resolves once the first call is being held. */
  readonly reached: Promise<void>;
  /** How many calls are waiting now. */
  readonly waiting: number;
  /** Let every waiting call (and any later one) proceed to the real store. */
  release(): void;
  /** Reject every waiting call (and any later one) with `error`. */
  fail(error: unknown): void;
}

export interface StoreCall {
  store: string;
  method: string;
  args: unknown[];
}

type Action = { kind: 'fail'; error: unknown; after: boolean } | { kind: 'delay'; ms: number } | { kind: 'hang'; gate: Gate };

interface Rule {
  method: StoreMethod;
  match: FaultMatch;
  action: Action;
  seen: number;
  taken: number;
}

/** The state behind a Hang handle. */
class Gate implements Hang {
  readonly reached: Promise<void>;
  #reach!: () => void;
  #outcome: { error?: unknown } | undefined;
  #waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor() {
    this.reached = new Promise((resolve) => {
      this.#reach = resolve;
    });
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  wait(): Promise<void> {
    this.#reach();
    const outcome = this.#outcome;
    if (outcome) return 'error' in outcome ? Promise.reject(outcome.error) : Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  release(): void {
    this.#settle({});
  }

  fail(error: unknown): void {
    this.#settle({ error });
  }

  #settle(outcome: { error?: unknown }): void {
    this.#outcome ??= outcome;
    for (const waiter of this.#waiters.splice(0)) {
      if ('error' in outcome) waiter.reject(outcome.error);
      else waiter.resolve();
    }
  }
}

/** Fault rules shared by every store it wraps. */
export class Faults {
  /** Every call made through a wrapper, in order. */
  readonly calls: StoreCall[] = [];
  #rules: Rule[] = [];
  #gates: Gate[] = [];

  /**
   * A view of `store` whose every method goes through the rules. `label` names it in rules and
   * the call log (default: the store's `name`).
   */
  wrap<T extends object>(store: T, label: string = (store as { name?: string }).name ?? 'store'): T {
    return new Proxy(store, {
      get: (target, property) => {
        const value = Reflect.get(target, property, target);
        if (typeof value !== 'function' || typeof property !== 'string') return value;
        // changeVersion is synchronous by contract (read before every cached read): never faulted.
        if (property === 'changeVersion') return value.bind(target);
        return (...args: unknown[]) => this.#call(label, property, args, () => value.apply(target, args));
      },
    });
  }

  /** Make matching calls reject with `error` (before or, with `after`, after the real call). */
  fail(method: StoreMethod, error: unknown, options: FailOptions = {}): this {
    const { after = false, ...match } = options;
    return this.#add(method, match, { kind: 'fail', error, after });
  }

  /** Make matching calls wait `ms` before reaching the store. */
  delay(method: StoreMethod, ms: number, match: FaultMatch = {}): this {
    return this.#add(method, match, { kind: 'delay', ms });
  }

  /** Hold matching calls until the returned handle releases or fails them. */
  hang(method: StoreMethod, match: FaultMatch = {}): Hang {
    const gate = new Gate();
    this.#gates.push(gate);
    this.#add(method, match, { kind: 'hang', gate });
    return gate;
  }

  /** Remove every rule and release every held call (so nothing stays pending). The call log stays. */
  clear(): void {
    this.#rules = [];
    for (const gate of this.#gates.splice(0)) gate.release();
  }

  #add(method: StoreMethod, match: FaultMatch, action: Action): this {
    this.#rules.push({ method, match, action, seen: 0, taken: 0 });
    return this;
  }

  /** The first rule that takes this call, counting it against every rule it matches. */
  #pick(store: string, method: string, args: unknown[]): Rule | undefined {
    let picked: Rule | undefined;
    for (const rule of this.#rules) {
      const { match } = rule;
      if (rule.method !== '*' && rule.method !== method) continue;
      if (match.store !== undefined && match.store !== store) continue;
      if (match.when && !match.when(...args)) continue;
      rule.seen++;
      if (match.nth !== undefined && rule.seen !== match.nth) continue;
      const limit = match.times ?? (match.nth !== undefined ? 1 : Number.POSITIVE_INFINITY);
      if (rule.taken >= limit || picked) continue;
      rule.taken++;
      picked = rule;
    }
    return picked;
  }

  /** Calls no rule takes go straight through (a synchronous method stays synchronous). */
  #call(store: string, method: string, args: unknown[], real: () => unknown): unknown {
    this.calls.push({ store, method, args });
    const action = this.#pick(store, method, args)?.action;
    if (action === undefined) return real();
    return (async () => {
      if (action.kind === 'delay') await sleep(action.ms);
      if (action.kind === 'hang') await action.gate.wait();
      if (action.kind === 'fail' && !action.after) throw action.error;
      const result = await real();
      if (action.kind === 'fail') throw action.error;
      return result;
    })();
  }
}
