// MetadataStore on knex, one code path for SQLite (better-sqlite3) and Postgres (pg).
//
// Tables (migrations/; names and digests sort in byte order in both dialects):
//   repositories (name PK, tenant, bytes, blobs, created_at)  a row while anything is in it;
//                bytes/blobs: usage of the repository; tenant fixed when it is created
//   blob_links   (repository, digest PK; size, linked_at)  a repository's right to see a blob;
//                linked_at is its last push or mount (the GC grace period counts from it)
//   blobs        (digest PK; size, state live|deleting, run, touched_at)  one row per stored
//                digest: the lock every commit, mount and collection of the digest takes
//   manifests    (repository, digest PK; media_type, content, size, subject, artifact_type,
//                 annotations JSON, blobs JSON, children JSON, created_at)
//                exact pushed bytes; blobs/children are JSON so getManifest stays one row read;
//                partial index (repository, subject, digest) serves the referrers API
//   manifest_blobs (repository, manifest, blob), manifest_children (repository, manifest, child)
//                the same references as rows, for "is this referenced" as an indexed query
//   tags         (repository, name PK; digest, updated_at) -> manifests, ON DELETE CASCADE
//   uploads      (id PK; repository, tenant, byte_offset, state JSON, algorithm, reserved,
//                 committing, created_at, updated_at, lease_token, lease_until)
//                chunked-upload sessions shared by every process; `committing` pins a digest
//   tenants      (name PK; bytes, blobs, reserved)  usage and quota reservations per tenant
//   tenant_blobs (tenant, digest PK; size, links)  a blob counts once per tenant
//   leases       (name PK; holder, until)  one garbage collection at a time
// Times are epoch milliseconds in bigint columns, returned as JS numbers.
//
// Concurrency: single statements are atomic in both dialects, so upload leases are compare-and-set
// UPDATEs whose WHERE clause carries the expected state (offset, lease expiry, token) and whose
// affected-row count says who won. Multi-statement writes run in one transaction (BEGIN IMMEDIATE
// on SQLite, see knex-clients.ts; row locks in a fixed order on Postgres, see ledger.ts), and
// re-check under their locks what garbage collection relies on (see the MetadataStore port).
// Reads are single statements outside transactions. Writes that delete or move what readers
// cache (blob links, tags, manifests) announce it to other processes (change-feed.ts), behind
// `changeVersion()`.
import type { Knex } from 'knex';
import {
  NotFoundError,
  StoreError,
  type BlobRecord,
  type CommitStart,
  type Lease,
  type LinkRecord,
  type ManifestNode,
  type ManifestRecord,
  type MetadataStore,
  type Page,
  type ReferrerRecord,
  type RepositoryUsage,
  type Reservation,
  type TenantUsage,
  type UnlinkedBlob,
  type UploadRecord,
  type UploadState,
  type UsageRecompute,
} from '@berthjs/core';
import { setTimeout as sleep } from 'node:timers/promises';
import { isLostRace, toStoreError } from './backend-errors.js';
import { retryWhileBusy } from './busy-retry.js';
import type { ChangeFeed } from './change-feed.js';
import { chunks, Ledger } from './ledger.js';
import { runMigrations } from './migrate.js';
import type { Dialect } from './options.js';
import { manifestRow, toManifest, toReferrer, toUpload, type ReferrerRow, type UploadRow } from './rows.js';
import { recomputeUsage, type RecomputeOptions } from './usage.js';

/** The lease whose holder marks blobs for deletion (see CommitStart.abandoned). */
const GC_LEASE = 'gc';

/** Tries of a write transaction that keeps losing races to concurrent ones. */
const RACE_ATTEMPTS = 5;

export interface SqlMetadataStoreConfig {
  dialect: Dialect;
  /** Postgres schema the knex instance's search_path points at (created by `migrate`). */
  schema?: string;
  /**
   * How other processes' changes reach `changeVersion` (set by createSqlMetadataStore; without
   * it the core's read cache relies on its TTL).
   */
  changes?: ChangeFeed;
}

/** Thrown inside a transaction to roll it back and return `value` from `write`. */
class Rollback<T> {
  constructor(readonly value: T) {}
}

export class SqlMetadataStore implements MetadataStore {
  readonly name: string;
  readonly changeVersion?: () => number;
  private closed = false;

  /**
   * Wraps a knex instance. Prefer `createSqlMetadataStore`, which configures the connection
   * (SQLite pragmas and BEGIN IMMEDIATE transactions, Postgres bigint parsing and search_path).
   */
  constructor(
    private readonly db: Knex,
    private readonly config: SqlMetadataStoreConfig,
  ) {
    this.name = config.dialect;
    const { changes } = config;
    if (changes) this.changeVersion = () => changes.version();
  }

  /** Bring the schema up to date; safe to run from several processes at once. */
  async migrate(): Promise<void> {
    await this.run(() => runMigrations(this.db, this.config.dialect, this.config.schema));
  }

  // Repositories

  async repositoryExists(repository: string): Promise<boolean> {
    const row = await this.run(() => this.db('repositories').first('name').where({ name: repository }));
    return row !== undefined;
  }

  async listRepositories(page?: Page): Promise<string[]> {
    if (isEmptyPage(page)) return [];
    return this.run(() => paginate(this.db('repositories'), 'name', page).pluck('name'));
  }

  // Blobs

  async getBlob(repository: string, digest: string): Promise<{ size: number } | undefined> {
    const row = await this.run(() => this.db('blob_links').first('size').where({ repository, digest }));
    return row === undefined ? undefined : { size: Number(row.size) };
  }

  async unlinkBlob(repository: string, digest: string): Promise<boolean> {
    return this.write(async (ledger) => {
      const repo = await ledger.lockRepository(repository);
      const link = repo && (await ledger.trx('blob_links').first('size').where({ repository, digest }));
      if (!repo || !link) return false;
      await ledger.removeLinks(repository, repo.tenant, [{ digest, size: Number(link.size) }]);
      await ledger.endRepositoryIfEmpty(repository);
      await this.announce(ledger);
      return true;
    });
  }

  async listBlobRepositories(digest: string, page?: Page): Promise<string[]> {
    if (isEmptyPage(page)) return [];
    return this.run(() => paginate(this.db('blob_links').where({ digest }), 'repository', page).pluck('repository'));
  }

  async mountBlob(from: string, to: string, digest: string, tenant: string): Promise<{ size: number } | undefined> {
    return this.write(async (ledger) => {
      const toTenant = await ledger.takeRepository(to, tenant);
      const source = await ledger.trx('blob_links').first('size').where({ repository: from, digest });
      // Invariant: a link exists only while the blob is live; the shared lock keeps a
      // collection from marking it until this link is in.
      const blob = source && (await ledger.lock(ledger.trx('blobs').first('state').where({ digest }), 'share'));
      if (!source || blob?.state !== 'live') throw new Rollback(undefined);
      const size = Number(source.size);
      await ledger.addLink(to, toTenant, digest, size);
      return { size };
    });
  }

  // Manifests and tags

  async putManifest(manifest: ManifestRecord, tags: string[], tenant: string): Promise<string[]> {
    const { repository, digest } = manifest;
    // Deduplicated (one upsert may not touch a row twice) and sorted, so concurrent puts lock
    // tag rows in the same order and cannot deadlock each other on Postgres.
    const names = [...new Set(tags)].sort();
    const blobs = [...new Set(manifest.blobs)];
    const children = [...new Set(manifest.children)];
    return this.write(async (ledger) => {
      const { trx } = ledger;
      await ledger.takeRepository(repository, tenant);
      // Re-checked under the repository lock, which a collection deleting links or manifests
      // of this repository also takes: what is present now stays until this commits.
      const missing = [
        ...(await this.absent(trx, 'blob_links', repository, blobs)),
        ...(await this.absent(trx, 'manifests', repository, children)),
      ];
      if (missing.length > 0) throw new Rollback(missing);
      // Same digest, same bytes: an existing row (and its references) is already right.
      if (!(await trx('manifests').first('digest').where({ repository, digest }))) {
        await trx('manifests').insert(manifestRow(manifest, ledger.now));
        for (const batch of chunks(blobs))
          await trx('manifest_blobs').insert(batch.map((blob) => ({ repository, manifest: digest, blob })));
        for (const batch of chunks(children))
          await trx('manifest_children').insert(batch.map((child) => ({ repository, manifest: digest, child })));
      }
      if (names.length > 0) {
        await trx('tags')
          .insert(names.map((name) => ({ repository, name, digest, updated_at: ledger.now })))
          .onConflict(['repository', 'name'])
          .merge(['digest', 'updated_at']);
        await this.announce(ledger); // a tag may have moved
      }
      return [];
    });
  }

  async getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    const row = await this.run(() => this.db('manifests').first('*').where({ repository, digest }));
    return row === undefined ? undefined : toManifest(row);
  }

  async deleteManifest(repository: string, digest: string): Promise<boolean> {
    return this.write(async (ledger) => {
      if (!(await ledger.lockRepository(repository))) return false;
      const deleted = await this.dropManifest(ledger, repository, digest);
      if (deleted) {
        await ledger.endRepositoryIfEmpty(repository);
        await this.announce(ledger);
      }
      return deleted;
    });
  }

  async resolveTag(repository: string, tag: string): Promise<string | undefined> {
    const row = await this.run(() => this.db('tags').first('digest').where({ repository, name: tag }));
    return row?.digest;
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    return this.write(async (ledger) => {
      const deleted = await ledger.trx('tags').where({ repository, name: tag }).del();
      if (deleted > 0) await this.announce(ledger);
      return deleted > 0;
    });
  }

  async listTags(repository: string, page?: Page): Promise<string[]> {
    if (isEmptyPage(page)) return [];
    return this.run(() => paginate(this.db('tags').where({ repository }), 'name', page).pluck('name'));
  }

  async listReferrers(repository: string, subject: string, filter?: { artifactType?: string }, page?: Page): Promise<ReferrerRecord[]> {
    if (isEmptyPage(page)) return [];
    const rows = await this.run(() => {
      const query = this.db('manifests')
        .select<ReferrerRow[]>('digest', 'media_type', 'size', 'artifact_type', 'annotations')
        .where({ repository, subject });
      if (filter?.artifactType !== undefined) query.where({ artifact_type: filter.artifactType });
      return paginate(query, 'digest', page);
    });
    return rows.map(toReferrer);
  }

  // Upload sessions

  async createUpload(upload: Pick<UploadRecord, 'id' | 'repository' | 'tenant' | 'state' | 'algorithm'>): Promise<void> {
    const now = Date.now();
    const row: UploadRow = {
      id: upload.id,
      repository: upload.repository,
      tenant: upload.tenant,
      byte_offset: 0,
      state: JSON.stringify(upload.state),
      algorithm: upload.algorithm ?? null,
      reserved: 0,
      committing: null,
      created_at: now,
      updated_at: now,
      lease_token: null,
      lease_until: 0,
    };
    await this.run(() => this.db('uploads').insert(row));
  }

  async getUpload(id: string): Promise<UploadRecord | undefined> {
    const row = await this.run(() => this.db('uploads').first<UploadRow | undefined>('*').where({ id }));
    return row === undefined ? undefined : toUpload(row);
  }

  async claimUpload(id: string, offset: number, token: string, leaseUntil: number): Promise<boolean> {
    const now = Date.now();
    const updated = await this.run(() =>
      this.db('uploads')
        .where({ id, byte_offset: offset })
        // Free, expired, or already ours (a request re-claiming is not "another request").
        .andWhere((free) => free.where('lease_until', '<=', now).orWhere({ lease_token: token }))
        .update({ lease_token: token, lease_until: leaseUntil, updated_at: now }),
    );
    return updated > 0;
  }

  async renewUpload(id: string, token: string, leaseUntil: number): Promise<boolean> {
    // The token alone proves ownership: any other claim replaces it, even after expiry.
    const updated = await this.run(() =>
      this.db('uploads').where({ id, lease_token: token }).update({ lease_until: leaseUntil, updated_at: Date.now() }),
    );
    return updated > 0;
  }

  async advanceUpload(id: string, token: string, offset: number, state: UploadState): Promise<boolean> {
    const updated = await this.run(() =>
      this.db('uploads')
        .where({ id, lease_token: token })
        .update({ byte_offset: offset, state: JSON.stringify(state), lease_token: null, lease_until: 0, updated_at: Date.now() }),
    );
    return updated > 0;
  }

  async releaseUpload(id: string, token: string): Promise<void> {
    await this.run(() =>
      this.db('uploads').where({ id, lease_token: token }).update({ lease_token: null, lease_until: 0, updated_at: Date.now() }),
    );
  }

  async deleteUpload(id: string): Promise<boolean> {
    return this.write(async (ledger) => {
      const upload = await ledger.trx('uploads').first('tenant').where({ id });
      if (!upload) return false;
      await ledger.lockTenant(upload.tenant);
      const row = await ledger.lock(ledger.trx('uploads').first('reserved').where({ id }), 'update');
      if (!row) return false;
      await ledger.reserve(upload.tenant, -Number(row.reserved));
      await ledger.trx('uploads').where({ id }).del();
      return true;
    });
  }

  async listStaleUploads(updatedBefore: number, limit: number): Promise<UploadRecord[]> {
    if (limit <= 0) return [];
    const rows = await this.run(() =>
      this.db('uploads').select<UploadRow[]>('*').where('updated_at', '<', updatedBefore).orderBy('updated_at').limit(limit),
    );
    return rows.map(toUpload);
  }

  async reserveUpload(id: string, total: number, limit: number, digest?: string): Promise<Reservation> {
    return this.write(async (ledger) => {
      const { trx } = ledger;
      const upload = await this.uploadOrThrow(trx, id);
      if (digest && (await trx('tenant_blobs').first('digest').where({ tenant: upload.tenant, digest }))) return { granted: true };
      const usage = await ledger.lockTenant(upload.tenant);
      const current = await ledger.lock(trx('uploads').first('reserved').where({ id }), 'update');
      const needed = total - Number(current.reserved);
      if (needed <= 0) return { granted: true };
      if (usage.bytes + usage.reserved + needed > limit) return { granted: false, usage, needed };
      await ledger.reserve(upload.tenant, needed);
      await trx('uploads').where({ id }).update({ reserved: total });
      return { granted: true };
    });
  }

  async beginCommit(id: string, digest: string, size: number, limit?: number): Promise<CommitStart> {
    return this.write(async (ledger): Promise<CommitStart> => {
      const { trx } = ledger;
      const upload = await this.uploadOrThrow(trx, id);
      // The blob row is the one place a commit and a collection of this digest meet.
      const blob = await ledger.takeBlob(digest, size);
      if (blob.state === 'deleting') {
        const lease = await trx('leases').first('holder', 'until').where({ name: GC_LEASE });
        const abandoned = !lease || lease.holder !== blob.run || Number(lease.until) <= ledger.now;
        throw new Rollback({ status: 'deleting', abandoned } as CommitStart);
      }
      await trx('blobs').where({ digest }).update({ touched_at: ledger.now });
      if (limit !== undefined) {
        const held = await trx('tenant_blobs').first('digest').where({ tenant: upload.tenant, digest });
        const needed = held ? 0 : size;
        const usage = await ledger.lockTenant(upload.tenant);
        const current = Number((await ledger.lock(trx('uploads').first('reserved').where({ id }), 'update')).reserved);
        if (usage.bytes + usage.reserved - current + needed > limit)
          throw new Rollback({ status: 'over-quota', usage, needed } as CommitStart);
        await ledger.reserve(upload.tenant, needed - current);
        await trx('uploads').where({ id }).update({ reserved: needed });
      }
      await trx('uploads').where({ id }).update({ committing: digest });
      return { status: 'ready' };
    });
  }

  async finishCommit(id: string, digest: string, size: number): Promise<void> {
    await this.write(async (ledger) => {
      const { trx } = ledger;
      const upload = await this.uploadOrThrow(trx, id);
      const tenant = await ledger.takeRepository(upload.repository, upload.tenant);
      const blob = await ledger.lock(trx('blobs').first('state').where({ digest }), 'share');
      // beginCommit pinned it; anything else is a bug that must not turn into a dangling link.
      if (blob?.state !== 'live') throw new StoreError(`blob ${digest} is not live at the end of its commit`, this.name);
      await ledger.addLink(upload.repository, tenant, digest, size);
      if (upload.reserved > 0) {
        await ledger.lockTenant(upload.tenant);
        await ledger.reserve(upload.tenant, -upload.reserved);
      }
      await trx('uploads').where({ id }).del();
    });
  }

  // Usage

  async tenantUsage(tenant: string): Promise<TenantUsage> {
    const row = await this.run(() => this.db('tenants').first('bytes', 'blobs', 'reserved').where({ name: tenant }));
    return { bytes: Number(row?.bytes ?? 0), blobs: Number(row?.blobs ?? 0), reserved: Number(row?.reserved ?? 0) };
  }

  async repositoryUsage(repository: string): Promise<RepositoryUsage | undefined> {
    const row = await this.run(() => this.db('repositories').first('tenant', 'bytes', 'blobs').where({ name: repository }));
    return row && { tenant: row.tenant, bytes: Number(row.bytes), blobs: Number(row.blobs) };
  }

  async listTenants(page?: Page): Promise<Array<TenantUsage & { tenant: string }>> {
    if (isEmptyPage(page)) return [];
    const rows = await this.run(() =>
      paginate(
        this.db('tenants')
          .select('name', 'bytes', 'blobs', 'reserved')
          .where((q) => q.where('blobs', '>', 0).orWhere('reserved', '>', 0)),
        'name',
        page,
      ),
    );
    return rows.map((r) => ({ tenant: r.name, bytes: Number(r.bytes), blobs: Number(r.blobs), reserved: Number(r.reserved) }));
  }

  async recomputeUsage(options?: RecomputeOptions): Promise<UsageRecompute> {
    return this.run(() => recomputeUsage(this.db, (work) => this.write(work), options));
  }

  // Garbage collection

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease> {
    return this.write(async (ledger) => {
      const { trx, now } = ledger;
      // The no-op update takes the row lock, so a holder releasing it meanwhile cannot delete it under us.
      await trx('leases')
        .insert({ name, holder, until: now + ttlMs })
        .onConflict('name')
        .merge({ holder: trx.raw('??', ['leases.holder']) });
      const row = await trx('leases').first('holder', 'until').where({ name });
      if (row.holder !== holder && Number(row.until) > now) return { acquired: false, holder: row.holder, until: Number(row.until) };
      await trx('leases')
        .where({ name })
        .update({ holder, until: now + ttlMs });
      return { acquired: true, holder, until: now + ttlMs };
    });
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.run(() => this.db('leases').where({ name, holder }).del());
  }

  async listManifestNodes(repository: string, page?: Page): Promise<ManifestNode[]> {
    if (isEmptyPage(page)) return [];
    const rows = await this.run(() =>
      paginate(
        this.db('manifests')
          .select(
            'digest',
            'subject',
            'blobs',
            'children',
            'created_at',
            this.db.raw(
              'EXISTS (SELECT 1 FROM tags t WHERE t.repository = manifests.repository AND t.digest = manifests.digest) AS tagged',
            ),
          )
          .where({ repository }),
        'digest',
        page,
      ),
    );
    return rows.map((r) => {
      const node: ManifestNode = {
        digest: r.digest,
        blobs: JSON.parse(r.blobs),
        children: JSON.parse(r.children),
        tagged: Boolean(r.tagged),
        createdAt: Number(r.created_at),
      };
      if (r.subject !== null) node.subject = r.subject;
      return node;
    });
  }

  async listLinks(repository: string, page?: Page): Promise<LinkRecord[]> {
    if (isEmptyPage(page)) return [];
    const rows = await this.run(() =>
      paginate(this.db('blob_links').select('digest', 'size', 'linked_at').where({ repository }), 'digest', page),
    );
    return rows.map((r) => ({ digest: r.digest, size: Number(r.size), linkedAt: Number(r.linked_at) }));
  }

  async deleteUnreachableManifest(repository: string, digest: string, cutoff: number): Promise<boolean> {
    return this.write(async (ledger) => {
      const { trx } = ledger;
      if (!(await ledger.lockRepository(repository))) return false;
      const row = await trx('manifests').first('subject', 'created_at').where({ repository, digest });
      if (!row || Number(row.created_at) >= cutoff) return false;
      // Locally unreferenced implies unreachable: no tag, no index and no subject can keep it.
      if (await trx('tags').first('name').where({ repository, digest })) return false;
      if (await trx('manifest_children').first('manifest').where({ repository, child: digest })) return false;
      if (row.subject !== null && (await trx('manifests').first('digest').where({ repository, digest: row.subject }))) return false;
      await this.dropManifest(ledger, repository, digest);
      await ledger.endRepositoryIfEmpty(repository);
      await this.announce(ledger);
      return true;
    });
  }

  async deleteUnreferencedLinks(repository: string, digests: string[], cutoff: number): Promise<UnlinkedBlob[]> {
    if (digests.length === 0) return [];
    return this.write(async (ledger) => {
      const { trx } = ledger;
      const repo = await ledger.lockRepository(repository);
      if (!repo) return [];
      const doomed: Array<{ digest: string; size: number }> = [];
      for (const batch of chunks([...new Set(digests)])) {
        const links = await trx('blob_links')
          .select('digest', 'size')
          .where({ repository })
          .whereIn('digest', batch)
          .where('linked_at', '<', cutoff);
        const referenced = new Set(await trx('manifest_blobs').where({ repository }).whereIn('blob', batch).distinct().pluck('blob'));
        for (const l of links) if (!referenced.has(l.digest)) doomed.push({ digest: l.digest, size: Number(l.size) });
      }
      if (doomed.length === 0) return [];
      const removed = await ledger.removeLinks(repository, repo.tenant, doomed);
      await ledger.endRepositoryIfEmpty(repository);
      await this.announce(ledger);
      return removed;
    });
  }

  async listCollectableBlobs(cutoff: number, page?: Page): Promise<BlobRecord[]> {
    if (isEmptyPage(page)) return [];
    // Two range scans of blobs_state in digest order, merged: as one query (`state = 'deleting'
    // OR (state = 'live' AND ...)`), SQLite gathered and sorted every candidate past `last` for
    // each page, so a collection's pages cost the square of the blobs it went through.
    const [marked, live] = await Promise.all([
      this.run(() => paginate(this.db('blobs').select('digest', 'size').where({ state: 'deleting' }), 'digest', page)),
      this.run(() =>
        paginate(
          this.db('blobs')
            .select('digest', 'size')
            .where({ state: 'live' })
            .where('touched_at', '<', cutoff)
            .whereNotExists((s) => s.select(1).from('blob_links').whereRaw('blob_links.digest = blobs.digest'))
            .whereNotExists((s) => s.select(1).from('manifest_blobs').whereRaw('manifest_blobs.blob = blobs.digest'))
            .whereNotExists((s) => s.select(1).from('uploads').whereRaw('uploads.committing = blobs.digest')),
          'digest',
          page,
        ),
      ),
    ]);
    const merged: BlobRecord[] = [];
    let [i, j] = [0, 0];
    while ((i < marked.length || j < live.length) && (page?.limit === undefined || merged.length < page.limit)) {
      const next = j >= live.length || (i < marked.length && marked[i].digest <= live[j].digest) ? marked[i++] : live[j++];
      // A digest seen by both reads changed state between them: listed once.
      if (j < live.length && live[j].digest === next.digest) j++;
      merged.push({ digest: next.digest, size: Number(next.size) });
    }
    return merged;
  }

  async markBlobsDeleting(blobs: Array<{ digest: string; size?: number }>, run: string, cutoff: number): Promise<BlobRecord[]> {
    if (blobs.length === 0) return [];
    return this.write(async (ledger) => {
      const { trx, now } = ledger;
      const marked: BlobRecord[] = [];
      const wanted = new Map(blobs.map((b) => [b.digest, b.size]));
      // Sorted, so two transactions locking blob rows lock them in the same order.
      for (const batch of chunks([...wanted.keys()].sort())) {
        const rows = await ledger.lock(
          trx('blobs').select('digest', 'size', 'state', 'touched_at').whereIn('digest', batch).orderBy('digest'),
          'update',
        );
        const byDigest = new Map(rows.map((r) => [r.digest as string, r]));
        const inUse = new Set<string>([
          ...(await trx('blob_links').whereIn('digest', batch).distinct().pluck('digest')),
          ...(await trx('manifest_blobs').whereIn('blob', batch).distinct().pluck('blob')),
          ...(await trx('uploads').whereIn('committing', batch).distinct().pluck('committing')),
        ]);
        const adopted: BlobRecord[] = [];
        const unknown: string[] = [];
        for (const digest of batch) {
          const row = byDigest.get(digest);
          if (!row) {
            if (!inUse.has(digest)) unknown.push(digest);
          } else if (row.state === 'deleting' || (Number(row.touched_at) < cutoff && !inUse.has(digest))) {
            // A row left 'deleting' by an earlier run is adopted: its bytes may be half gone.
            adopted.push({ digest, size: Number(row.size) });
          }
        }
        // One statement per step, not one per blob: the rows are locked already.
        if (adopted.length > 0)
          await trx('blobs')
            .whereIn(
              'digest',
              adopted.map((b) => b.digest),
            )
            .update({ state: 'deleting', run });
        const claimed: BlobRecord[] = [];
        if (unknown.length > 0) {
          // Bytes no row knows of: claim them. A commit of such a digest inserts its row first,
          // so it either made one (we conflict and skip it) or will wait for ours.
          await trx('blobs')
            .insert(unknown.map((digest) => ({ digest, size: wanted.get(digest) ?? 0, state: 'deleting', run, touched_at: now })))
            .onConflict('digest')
            .ignore();
          const ours = await trx('blobs').select('digest', 'size').whereIn('digest', unknown).where({ state: 'deleting', run });
          for (const r of ours) claimed.push({ digest: r.digest, size: Number(r.size) });
        }
        marked.push(...[...adopted, ...claimed].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0)));
      }
      return marked;
    });
  }

  async unknownBlobs(digests: string[]): Promise<string[]> {
    const known = new Set<string>();
    for (const batch of chunks([...new Set(digests)])) {
      for (const digest of await this.run(() => this.db('blobs').whereIn('digest', batch).pluck('digest'))) known.add(digest);
    }
    return digests.filter((digest) => !known.has(digest));
  }

  async forgetBlobs(digests: string[]): Promise<void> {
    for (const batch of chunks(digests)) {
      await this.run(() => this.db('blobs').whereIn('digest', batch).where({ state: 'deleting' }).del());
    }
  }

  /** `select 1` through the pool: a connection can be had and the database answers. */
  async probe(): Promise<void> {
    await this.run(() => this.db.raw('select 1'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.config.changes?.close();
    await this.db.destroy();
  }

  // Helpers

  /** The digests among `digests` with no row for `repository` in `table` (inside a transaction). */
  private async absent(trx: Knex.Transaction, table: 'blob_links' | 'manifests', repository: string, digests: string[]): Promise<string[]> {
    const present = new Set<string>();
    for (const batch of chunks(digests)) {
      for (const digest of await trx(table).where({ repository }).whereIn('digest', batch).pluck('digest')) present.add(digest);
    }
    return digests.filter((digest) => !present.has(digest));
  }

  /** Delete a manifest with its tags and references (the repository row is locked). */
  private async dropManifest(ledger: Ledger, repository: string, digest: string): Promise<boolean> {
    const { trx } = ledger;
    // Explicit rather than left to ON DELETE CASCADE, which SQLite only honours with the
    // foreign_keys pragma on (a knex instance handed to the constructor may not have it).
    await trx('tags').where({ repository, digest }).del();
    await trx('manifest_blobs').where({ repository, manifest: digest }).del();
    await trx('manifest_children').where({ repository, manifest: digest }).del();
    return (await trx('manifests').where({ repository, digest }).del()) > 0;
  }

  private async uploadOrThrow(trx: Knex.Transaction, id: string): Promise<{ repository: string; tenant: string; reserved: number }> {
    const row = await trx('uploads').first('repository', 'tenant', 'reserved').where({ id });
    if (!row) throw new NotFoundError(`upload ${id} not found`, this.name);
    return { repository: row.repository, tenant: row.tenant, reserved: Number(row.reserved) };
  }

  /** Let other processes' read caches know, on commit, that cached data was deleted or moved. */
  private async announce(ledger: Ledger): Promise<void> {
    await this.config.changes?.announce(ledger.trx);
  }

  /**
   * One write transaction; a `Rollback` thrown inside undoes it and becomes the result. Run again
   * (a few times, after a short random pause) when it lost a race (see isLostRace).
   */
  private async write<T>(work: (ledger: Ledger) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.run(async () => {
          try {
            return await this.db.transaction((trx) => work(new Ledger(trx, this.config.dialect)));
          } catch (err) {
            if (err instanceof Rollback) return err.value as T;
            throw err;
          }
        });
      } catch (err) {
        if (attempt >= RACE_ATTEMPTS || !isLostRace(err)) throw err;
        await sleep(Math.random() * 5 * attempt);
      }
    }
  }

  /** Every backend call goes through here: SQLite busy retries, then typed errors. */
  private async run<T>(operation: () => PromiseLike<T>): Promise<T> {
    try {
      if (this.config.dialect === 'sqlite') return await retryWhileBusy(async () => operation());
      return await operation();
    } catch (err) {
      throw toStoreError(err, this.name);
    }
  }
}

/** `limit: 0` asks for nothing; answered without a query (and knex would drop a zero limit). */
function isEmptyPage(page: Page | undefined): boolean {
  return page?.limit !== undefined && page.limit <= 0;
}

/** Applies `page` to a query listing `column`: strictly after `last`, at most `limit`, byte order. */
function paginate<Q extends Knex.QueryBuilder>(query: Q, column: string, page: Page | undefined): Q {
  if (page?.last !== undefined) query.where(column, '>', page.last);
  query.orderBy(column);
  if (page?.limit !== undefined) query.limit(page.limit);
  return query;
}
