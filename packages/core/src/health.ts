/** One store's answer to its probe. */
export interface StoreHealth {
  /** The store's `name` (`fs`, `s3`, `sqlite`, `postgres`…). */
  store: string;
  ok: boolean;
  /** Why it is not usable: the probe's error message, or that it did not answer in time. */
  error?: string;
  /** How long the probe took (or how long it was waited for). */
  ms: number;
}

/** What `registry.health()` reports: ready when both stores answered their probe in time. */
export interface HealthReport {
  ok: boolean;
  blobs: StoreHealth;
  metadata: StoreHealth;
  /** Set once `close()` was called: the registry is draining or closed, so not ready. */
  closing?: boolean;
}

interface Probed {
  readonly name: string;
  probe(): Promise<void>;
}

/**
 * Runs a store's probe with a deadline. A probe still running from an earlier call (a backend
 * that hangs) is joined rather than started again, so a hung store never piles up probes.
 */
export class StoreProbe {
  private pending: Promise<void> | undefined;

  constructor(private readonly store: Probed) {}

  async check(timeoutMs: number): Promise<StoreHealth> {
    const started = performance.now();
    const ms = () => Math.round(performance.now() - started);
    this.pending ??= this.store.probe().finally(() => {
      this.pending = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      const result = await Promise.race([this.pending, timeout]);
      if (result === 'timeout') return { store: this.store.name, ok: false, error: `no answer within ${timeoutMs} ms`, ms: ms() };
      return { store: this.store.name, ok: true, ms: ms() };
    } catch (error) {
      return { store: this.store.name, ok: false, error: error instanceof Error ? error.message : String(error), ms: ms() };
    } finally {
      clearTimeout(timer);
    }
  }
}
