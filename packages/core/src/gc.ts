import { randomUUID } from 'node:crypto';
import type { RegistryEventEmitter } from './events.js';
import type { ReadCache } from './read-cache.js';
import type { BlobStore } from './ports/blob-store.js';
import type { BlobRecord, ManifestNode, MetadataStore, Page } from './ports/metadata-store.js';

/** Options of `registry.collectGarbage()`. */
export interface CollectOptions {
  /** Only what was last pushed longer ago than this is collected (ms). Default 24 h. */
  gracePeriodMs?: number;
  /** Also delete manifests no tag, index or kept subject reaches. Default false. */
  untagged?: boolean;
  /** Report what would be deleted; delete nothing. Default false. */
  dryRun?: boolean;
  /** Called as the collection goes, with the counts so far. */
  onProgress?: (progress: CollectProgress) => void;
}

export interface CollectProgress {
  phase: 'uploads' | 'repositories' | 'blobs' | 'orphans';
  /** Repositories, blobs or stored objects looked at in this phase so far. */
  done: number;
  manifestsDeleted: number;
  blobsDeleted: number;
  bytesFreed: number;
}

/** What a collection removed from one tenant's figures. */
export interface TenantCollectReport {
  manifestsDeleted: number;
  /** Links removed from its repositories. */
  linksDeleted: number;
  /** Blobs the tenant no longer holds, and their bytes (its usage went down by these). */
  blobsReleased: number;
  bytesReleased: number;
}

export interface CollectReport {
  /** Set when another process holds the collection lease; nothing was done. */
  skipped?: { holder: string; until: number };
  dryRun: boolean;
  untagged: boolean;
  gracePeriodMs: number;
  startedAt: number;
  durationMs: number;
  repositories: number;
  manifestsDeleted: number;
  linksDeleted: number;
  /** Blobs whose bytes were deleted from the blob store, and how many bytes that freed. */
  blobsDeleted: number;
  bytesFreed: number;
  /** Leftovers of upload sessions removed (expired sessions, files and uploads no session knows). */
  uploadsSwept: number;
  tenants: Record<string, TenantCollectReport>;
}

export const GC_LEASE = 'gc';
const PAGE = 1000;
/** Blobs marked, deleted and forgotten per step; a commit of one of them waits at most one step. */
const BATCH = 500;
const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Online garbage collection: marks from the metadata, deletes through the metadata store's
 * re-checking primitives, so pushes go on meanwhile (see the MetadataStore safety rule).
 * One collection at a time across processes (lease `gc`); a collection killed midway leaves
 * blobs marked `deleting`, which the next one (or a commit of the same digest) finishes.
 */
export class GarbageCollector {
  constructor(
    private readonly blobs: BlobStore,
    private readonly metadata: MetadataStore,
    /** The upload sweeper (expired sessions, leftovers no session knows). */
    private readonly sweepUploads: () => Promise<number>,
    private readonly cache: ReadCache,
    private readonly events: RegistryEventEmitter,
    private readonly leaseMs: number,
  ) {}

  async collect(options: CollectOptions = {}): Promise<CollectReport> {
    const startedAt = Date.now();
    const gracePeriodMs = options.gracePeriodMs ?? DAY_MS;
    if (!Number.isFinite(gracePeriodMs) || gracePeriodMs < 0) throw new RangeError('gracePeriodMs must be a non-negative number');
    const report: CollectReport = {
      dryRun: options.dryRun ?? false,
      untagged: options.untagged ?? false,
      gracePeriodMs,
      startedAt,
      durationMs: 0,
      repositories: 0,
      manifestsDeleted: 0,
      linksDeleted: 0,
      blobsDeleted: 0,
      bytesFreed: 0,
      uploadsSwept: 0,
      tenants: {},
    };
    const run = randomUUID();
    const lease = await this.metadata.acquireLease(GC_LEASE, run, this.leaseMs);
    if (!lease.acquired) {
      report.skipped = { holder: lease.holder, until: lease.until };
      report.durationMs = Date.now() - startedAt;
      return report;
    }
    const holder = new LeaseHolder(this.metadata, run, this.leaseMs);
    try {
      const pass = new Pass(
        this.blobs,
        this.metadata,
        this.cache,
        this.events,
        report,
        startedAt - gracePeriodMs,
        run,
        holder,
        options.onProgress,
      );
      if (!report.dryRun) {
        report.uploadsSwept = await this.sweepUploads();
        pass.progress('uploads', report.uploadsSwept);
      }
      await pass.repositories();
      await pass.collectableBlobs();
      await pass.orphans();
    } catch (error) {
      report.durationMs = Date.now() - startedAt;
      this.events.emit('gc.failed', { error, report });
      throw error;
    } finally {
      await holder.release();
    }
    report.durationMs = Date.now() - startedAt;
    this.events.emit('gc.completed', report);
    return report;
  }
}

/** Keeps the lease while a collection runs; a lost lease stops the collection at its next step. */
class LeaseHolder {
  private lost: unknown;
  private readonly timer: NodeJS.Timeout;
  /** The renewal in flight: release waits for it, or it would take the lease again after. */
  private renewing: Promise<void> = Promise.resolve();

  constructor(
    private readonly metadata: MetadataStore,
    readonly run: string,
    leaseMs: number,
  ) {
    this.timer = setInterval(
      () => {
        this.renewing = metadata.acquireLease(GC_LEASE, run, leaseMs).then(
          (lease) => {
            if (!lease.acquired) this.lost ??= new Error(`garbage collection lost its lease to ${lease.holder}`);
          },
          () => undefined, // a failed renewal is retried at the next tick; the lease still runs
        );
      },
      Math.max(250, leaseMs / 3),
    );
    this.timer.unref();
  }

  check(): void {
    if (this.lost) throw this.lost;
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.renewing;
    await this.metadata.releaseLease(GC_LEASE, this.run).catch(() => undefined);
  }
}

/** One collection's work, phase by phase. */
class Pass {
  /** Dry run: links we would delete, by digest, to tell which blobs would lose their last one. */
  private readonly doomedLinks = new Map<string, Set<string>>();
  private done = 0;

  constructor(
    private readonly blobs: BlobStore,
    private readonly metadata: MetadataStore,
    private readonly cache: ReadCache,
    private readonly events: RegistryEventEmitter,
    private readonly report: CollectReport,
    private readonly cutoff: number,
    private readonly run: string,
    private readonly lease: LeaseHolder,
    private readonly onProgress: CollectOptions['onProgress'],
  ) {}

  progress(phase: CollectProgress['phase'], done: number): void {
    const { manifestsDeleted, blobsDeleted, bytesFreed } = this.report;
    this.onProgress?.({ phase, done, manifestsDeleted, blobsDeleted, bytesFreed });
  }

  /** Mark and sweep each repository: tags → manifests → index children → referrers → blobs. */
  async repositories(): Promise<void> {
    for await (const repository of pages(
      (page) => this.metadata.listRepositories(page),
      (name) => name,
    )) {
      this.lease.check();
      await this.repository(repository);
      this.report.repositories++;
      this.progress('repositories', this.report.repositories);
    }
  }

  private async repository(repository: string): Promise<void> {
    const nodes = await collect(
      pages(
        (page) => this.metadata.listManifestNodes(repository, page),
        (n) => n.digest,
      ),
    );
    const links = await collect(
      pages(
        (page) => this.metadata.listLinks(repository, page),
        (l) => l.digest,
      ),
    );
    const tenant = (await this.metadata.repositoryUsage(repository))?.tenant ?? '';
    const kept = this.mark(nodes);
    const keptBlobs = new Set(nodes.filter((n) => kept.has(n.digest)).flatMap((n) => n.blobs));
    const doomedManifests = nodes.filter((n) => !kept.has(n.digest));
    const doomedLinks = links.filter((l) => !keptBlobs.has(l.digest) && l.linkedAt < this.cutoff);
    const figures = this.tenant(tenant);

    if (this.report.dryRun) {
      this.report.manifestsDeleted += doomedManifests.length;
      figures.manifestsDeleted += doomedManifests.length;
      this.report.linksDeleted += doomedLinks.length;
      figures.linksDeleted += doomedLinks.length;
      for (const link of doomedLinks) {
        const repositories = this.doomedLinks.get(link.digest) ?? new Set<string>();
        repositories.add(repository);
        this.doomedLinks.set(link.digest, repositories);
      }
      return;
    }

    // Parents and subjects go first: each deletion re-checks that nothing in the repository
    // refers to the manifest any more, and the graph is acyclic (content addressing).
    let pending = doomedManifests;
    while (pending.length > 0) {
      const next: ManifestNode[] = [];
      for (const node of pending) {
        if (await this.metadata.deleteUnreachableManifest(repository, node.digest, this.cutoff)) {
          this.report.manifestsDeleted++;
          figures.manifestsDeleted++;
          // This process's cache; other processes' caches follow the store's change feed.
          this.cache.invalidate(repository);
          this.events.emit('manifest.deleted', { repository, digest: node.digest });
        } else next.push(node);
      }
      if (next.length === pending.length) break; // the rest was referenced meanwhile (a push)
      pending = next;
    }
    for (let i = 0; i < doomedLinks.length; i += BATCH) {
      this.lease.check();
      const removed = await this.metadata.deleteUnreferencedLinks(
        repository,
        doomedLinks.slice(i, i + BATCH).map((l) => l.digest),
        this.cutoff,
      );
      this.report.linksDeleted += removed.length;
      figures.linksDeleted += removed.length;
      for (const blob of removed) {
        this.cache.forgetBlob(repository, blob.digest);
        this.events.emit('blob.deleted', { repository, digest: blob.digest });
        if (!blob.released) continue;
        figures.blobsReleased++;
        figures.bytesReleased += blob.size;
      }
    }
  }

  /**
   * The manifests to keep: with `untagged`, those reached from tags, from manifests younger than
   * the cutoff (a push in progress, children before their index), through index children and
   * referrers (a kept manifest keeps its signatures, SBOMs...); without it, all of them.
   */
  private mark(nodes: ManifestNode[]): Set<string> {
    if (!this.report.untagged) return new Set(nodes.map((n) => n.digest));
    const byDigest = new Map(nodes.map((n) => [n.digest, n]));
    const referrers = new Map<string, string[]>();
    for (const n of nodes) {
      if (n.subject) referrers.set(n.subject, [...(referrers.get(n.subject) ?? []), n.digest]);
    }
    const kept = new Set<string>();
    const stack = nodes.filter((n) => n.tagged || n.createdAt >= this.cutoff).map((n) => n.digest);
    while (stack.length > 0) {
      const digest = stack.pop() as string;
      if (kept.has(digest)) continue;
      kept.add(digest);
      stack.push(...(byDigest.get(digest)?.children ?? []), ...(referrers.get(digest) ?? []));
    }
    return kept;
  }

  /** Blobs with no link and no reference left (and those a killed collection left marked). */
  async collectableBlobs(): Promise<void> {
    this.done = 0;
    if (this.report.dryRun) {
      const counted = new Set<string>();
      for await (const blob of pages(
        (page) => this.metadata.listCollectableBlobs(this.cutoff, page),
        (b) => b.digest,
      )) {
        counted.add(blob.digest);
        this.countFreed(blob);
        this.progress('blobs', ++this.done);
      }
      // Blobs whose every link this run would delete.
      for (const [digest, doomed] of this.doomedLinks) {
        if (counted.has(digest)) continue;
        const linking = await this.metadata.listBlobRepositories(digest, { limit: doomed.size + 1 });
        if (linking.every((repository) => doomed.has(repository))) {
          const size = (await this.metadata.getBlob(linking[0], digest))?.size ?? 0;
          this.countFreed({ digest, size });
        }
        this.progress('blobs', ++this.done);
      }
      return;
    }
    let last: string | undefined;
    for (;;) {
      this.lease.check();
      const page = await this.metadata.listCollectableBlobs(this.cutoff, { limit: BATCH, last });
      if (page.length === 0) return;
      await this.delete(page);
      this.done += page.length;
      this.progress('blobs', this.done);
      last = page[page.length - 1].digest;
    }
  }

  /** Bytes in the blob store that no metadata knows of (a crash before their row, or data from before GC). */
  async orphans(): Promise<void> {
    this.done = 0;
    let batch: Array<{ digest: string; size?: number }> = [];
    const flush = async () => {
      this.lease.check();
      const unknown = new Set(await this.metadata.unknownBlobs(batch.map((b) => b.digest)));
      const orphans = batch.filter((b) => unknown.has(b.digest));
      batch = [];
      if (orphans.length === 0) return;
      for (const orphan of orphans) orphan.size ??= (await this.blobs.stat(orphan.digest))?.size;
      if (this.report.dryRun) for (const orphan of orphans) this.countFreed({ digest: orphan.digest, size: orphan.size ?? 0 });
      else await this.delete(orphans);
    };
    for await (const stored of this.blobs.listBlobs()) {
      this.progress('orphans', ++this.done);
      if (stored.modified >= this.cutoff) continue;
      batch.push({ digest: stored.digest, size: stored.size });
      if (batch.length >= BATCH) await flush();
    }
    if (batch.length > 0) await flush();
  }

  /** Mark (re-checked by the store), delete the bytes, forget the rows: each step idempotent. */
  private async delete(candidates: Array<{ digest: string; size?: number }>): Promise<void> {
    const marked = await this.metadata.markBlobsDeleting(candidates, this.run, this.cutoff);
    if (marked.length === 0) return;
    this.lease.check();
    await this.blobs.delete(marked);
    await this.metadata.forgetBlobs(marked.map((b) => b.digest));
    for (const blob of marked) this.countFreed(blob);
  }

  private countFreed(blob: BlobRecord): void {
    this.report.blobsDeleted++;
    this.report.bytesFreed += blob.size;
  }

  private tenant(name: string): TenantCollectReport {
    this.report.tenants[name] ??= { manifestsDeleted: 0, linksDeleted: 0, blobsReleased: 0, bytesReleased: 0 };
    return this.report.tenants[name];
  }
}

/** Every item of a keyset-paginated listing. */
async function* pages<T>(list: (page: Page) => Promise<T[]>, key: (item: T) => string): AsyncGenerator<T> {
  let last: string | undefined;
  for (;;) {
    const items = await list({ limit: PAGE, last });
    yield* items;
    if (items.length < PAGE) return;
    last = key(items[items.length - 1]);
  }
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
