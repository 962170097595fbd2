import {
  ConflictError,
  IntegrityError,
  NotFoundError,
  StoreError,
  UnavailableError,
  UnsupportedError,
  type BerthHandler,
  type CollectReport,
  type Registry,
  type RequestFacts,
} from '@berthjs/core';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry as PromRegistry } from 'prom-client';

export interface BerthMetricsOptions {
  /** The prom-client registry to register Berth's metrics in. Default: a new one. */
  register?: PromRegistry;
  /**
   * Also collect prom-client's default process and Node.js metrics (`process_cpu_seconds_total`,
   * `nodejs_heap_size_used_bytes`…). Default: true with a new registry, false with yours (which
   * may collect them already: registering them twice throws).
   */
  defaultMetrics?: boolean;
}

/** What a garbage collection run reports (`recordGc`). */
export interface GcRunReport {
  /** Blobs whose bytes were deleted. */
  blobsDeleted: number;
  /** Bytes those blobs held. */
  bytesFreed: number;
  /** Whether the run failed (it may have freed some bytes before). */
  failed?: boolean;
}

export interface BerthMetrics {
  /** The prom-client registry holding Berth's metrics: expose it yourself, or mount `handler`. */
  register: PromRegistry;
  /** Answers `GET /metrics` in Prometheus' text format; mount it with the Koa or Express adapter. */
  handler: BerthHandler;
  /**
   * Count one garbage collection run. Runs of `registry.collectGarbage()` are counted already
   * (from `gc.completed` and `gc.failed`); call it for a run made by another process.
   */
  recordGc(report: GcRunReport): void;
  /** Stop following the registry (its metrics stay registered). */
  close(): void;
}

/** Upper bounds of the request duration histogram (s): blob uploads and downloads run for minutes. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS']);
const BLOB_UPLOADS = new Set(['uploads', 'upload']);

/**
 * Prometheus metrics of one registry (every label bounded: route names, never repositories).
 *
 *   const metrics = berthMetrics(registry);
 *   app.use(berth(metrics.handler)); // GET /metrics, best on a port of its own
 */
export function berthMetrics(registry: Registry, options: BerthMetricsOptions = {}): BerthMetrics {
  const register = options.register ?? new PromRegistry();
  if (options.defaultMetrics ?? !options.register) collectDefaultMetrics({ register });
  const registers = [register];

  const requests = new Counter({
    name: 'berth_http_requests_total',
    help: 'Registry requests answered, by method, route name and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'berth_http_request_duration_seconds',
    help: 'Time from the request to the end of its response body, by method and route name.',
    labelNames: ['method', 'route'] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  const aborted = new Counter({
    name: 'berth_http_requests_aborted_total',
    help: 'Requests whose client went away (or that shutdown cut) before they were complete, by route name.',
    labelNames: ['route'] as const,
    registers,
  });
  const received = new Counter({
    name: 'berth_blob_bytes_received_total',
    help: 'Blob bytes received by uploads (POST, PATCH, PUT).',
    registers,
  });
  const sent = new Counter({
    name: 'berth_blob_bytes_sent_total',
    help: 'Blob bytes sent by blob GETs (all of a completed download; what had been passed on of an aborted one).',
    registers,
  });
  const storeErrors = new Counter({
    name: 'berth_store_errors_total',
    help: 'Store failures that failed a request, by store (fs, s3, sqlite, postgres) and kind.',
    labelNames: ['store', 'kind'] as const,
    registers,
  });
  new Gauge({
    name: 'berth_http_requests_in_flight',
    help: 'Requests being served now.',
    registers,
    collect() {
      this.set(registry.stats().inFlight);
    },
  });
  new Gauge({
    name: 'berth_uploads_in_progress',
    help: 'Uploads streaming bytes into a session now (POST, PATCH, PUT) in this process.',
    registers,
    collect() {
      this.set(registry.stats().uploadsInProgress);
    },
  });
  const cacheCounter = (result: 'hits' | 'misses') =>
    new Counter({
      name: `berth_cache_${result}_total`,
      help: `Read cache lookups ${result === 'hits' ? 'answered from memory' : 'that went to the metadata store'}, by cache (tags, manifests, blobs).`,
      labelNames: ['cache'] as const,
      registers,
      collect() {
        this.reset();
        for (const [cache, counts] of Object.entries(registry.stats().cache)) this.inc({ cache }, counts[result]);
      },
    });
  cacheCounter('hits');
  cacheCounter('misses');
  const gcRuns = new Counter({
    name: 'berth_gc_runs_total',
    help: 'Garbage collection runs, by result (ok, failed).',
    labelNames: ['result'] as const,
    registers,
  });
  const gcBlobs = new Counter({ name: 'berth_gc_blobs_deleted_total', help: 'Blobs deleted by garbage collection.', registers });
  const gcBytes = new Counter({ name: 'berth_gc_bytes_freed_total', help: 'Bytes freed by garbage collection.', registers });

  const onCompleted = (facts: RequestFacts) => {
    const method = METHODS.has(facts.method) ? facts.method : 'OTHER';
    const route = facts.route ?? 'unknown';
    requests.inc({ method, route, status: String(facts.status) });
    duration.observe({ method, route }, facts.durationMs / 1000);
    if (facts.aborted) aborted.inc({ route });
    if (BLOB_UPLOADS.has(route) && facts.bytesIn > 0) received.inc(facts.bytesIn);
    if (route === 'blob' && facts.bytesOut > 0) sent.inc(facts.bytesOut);
    if (facts.error instanceof StoreError) storeErrors.inc({ store: facts.error.store, kind: errorKind(facts.error) });
  };
  registry.events.on('request.completed', onCompleted);
  const recordGc = (report: GcRunReport) => {
    gcRuns.inc({ result: report.failed ? 'failed' : 'ok' });
    gcBlobs.inc(report.blobsDeleted);
    gcBytes.inc(report.bytesFreed);
  };
  // Dry runs delete nothing; skipped ones are not emitted (another replica collected).
  const onGc = (report: CollectReport) => {
    if (!report.skipped && !report.dryRun) recordGc(report);
  };
  const onGcFailed = ({ report }: { report: CollectReport }) => {
    if (!report.dryRun) recordGc({ ...report, failed: true });
  };
  registry.events.on('gc.completed', onGc);
  registry.events.on('gc.failed', onGcFailed);

  return {
    register,
    handler: {
      async handle(request) {
        if (request.url.split('?')[0] !== '/metrics') return undefined;
        if (request.method !== 'GET' && request.method !== 'HEAD') return { status: 405, headers: { Allow: 'GET, HEAD' } };
        const body = Buffer.from(await register.metrics());
        const headers = { 'Content-Type': register.contentType, 'Content-Length': String(body.length) };
        return { status: 200, headers, body: request.method === 'HEAD' ? undefined : body };
      },
    },
    recordGc,
    close() {
      registry.events.off('request.completed', onCompleted);
      registry.events.off('gc.completed', onGc);
      registry.events.off('gc.failed', onGcFailed);
    },
  };
}

function errorKind(error: StoreError): string {
  if (error instanceof UnavailableError) return 'unavailable';
  if (error instanceof NotFoundError) return 'not_found';
  if (error instanceof ConflictError) return 'conflict';
  if (error instanceof IntegrityError) return 'integrity';
  if (error instanceof UnsupportedError) return 'unsupported';
  return 'other';
}
