// MetadataStore on knex, one code path for SQLite (better-sqlite3) and Postgres (pg).
//
// Tables (migrations/001_initial.ts; names and digests sort in byte order in both dialects):
//   repositories (name PK, created_at)                 a row once anything was pushed to it
//   blob_links   (repository, digest PK; size, created_at)
//                a repository's right to see a blob; the size lives on the link, since bytes are
//                the BlobStore's business and there is nothing else to know about a blob
//   manifests    (repository, digest PK; media_type, content, size, subject, artifact_type,
//                 annotations JSON, blobs JSON, children JSON, created_at)
//                exact pushed bytes; blobs/children are JSON so getManifest stays one row read;
//                partial index (repository, subject, digest) serves the referrers API
//   tags         (repository, name PK; digest, updated_at) -> manifests, ON DELETE CASCADE
//   uploads      (id PK; repository, byte_offset, state JSON, algorithm, created_at, updated_at,
//                 lease_token, lease_until)  chunked-upload sessions shared by every process
// Times are epoch milliseconds in bigint columns, returned as JS numbers.
//
// Concurrency: single statements are atomic in both dialects, so upload leases are compare-and-set
// UPDATEs whose WHERE clause carries the expected state (offset, lease expiry, token) and whose
// affected-row count says who won; no SELECT ... FOR UPDATE. Multi-statement writes run in one
// transaction (BEGIN IMMEDIATE on SQLite, see knex-clients.ts). Reads are single statements
// outside transactions. Writes that delete or move what readers cache (blob links, tags,
// manifests) announce it to other processes (change-feed.ts), behind `changeVersion()`.
import type { Knex } from 'knex';
import type { ManifestRecord, MetadataStore, Page, ReferrerRecord, UploadRecord, UploadState } from '@berthjs/core';
import { toStoreError } from './backend-errors.js';
import { retryWhileBusy } from './busy-retry.js';
import type { ChangeFeed } from './change-feed.js';
import { runMigrations } from './migrate.js';
import type { Dialect } from './options.js';
import { manifestRow, toManifest, toReferrer, toUpload, type ReferrerRow, type UploadRow } from './rows.js';

/** Bound parameters per `IN (...)` list, well under SQLite's and Postgres' limits. */
const IN_CHUNK = 500;

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

  async linkBlob(repository: string, digest: string, size: number): Promise<void> {
    const now = Date.now();
    await this.write(async (trx) => {
      await ensureRepository(trx, repository, now);
      await trx('blob_links').insert({ repository, digest, size, created_at: now }).onConflict(['repository', 'digest']).ignore();
    });
  }

  async getBlob(repository: string, digest: string): Promise<{ size: number } | undefined> {
    const row = await this.run(() => this.db('blob_links').first('size').where({ repository, digest }));
    return row === undefined ? undefined : { size: Number(row.size) };
  }

  async unlinkBlob(repository: string, digest: string): Promise<boolean> {
    return this.write(async (trx) => {
      const deleted = await trx('blob_links').where({ repository, digest }).del();
      if (deleted > 0) await this.announce(trx);
      return deleted > 0;
    });
  }

  async listBlobRepositories(digest: string, page?: Page): Promise<string[]> {
    if (isEmptyPage(page)) return [];
    return this.run(() => paginate(this.db('blob_links').where({ digest }), 'repository', page).pluck('repository'));
  }

  async missingBlobs(repository: string, digests: string[]): Promise<string[]> {
    return this.missing('blob_links', repository, digests);
  }

  async isBlobLinked(digest: string): Promise<boolean> {
    const row = await this.run(() => this.db('blob_links').first('repository').where({ digest }));
    return row !== undefined;
  }

  // Manifests and tags

  async putManifest(manifest: ManifestRecord, tags: string[]): Promise<void> {
    const now = Date.now();
    const { repository, digest } = manifest;
    // Deduplicated (one upsert may not touch a row twice) and sorted, so concurrent puts lock
    // tag rows in the same order and cannot deadlock each other on Postgres.
    const names = [...new Set(tags)].sort();
    await this.write(async (trx) => {
      await ensureRepository(trx, repository, now);
      // Same digest, same bytes: an existing row is already right, keep it as first pushed.
      await trx('manifests').insert(manifestRow(manifest, now)).onConflict(['repository', 'digest']).ignore();
      if (names.length > 0) {
        await trx('tags')
          .insert(names.map((name) => ({ repository, name, digest, updated_at: now })))
          .onConflict(['repository', 'name'])
          .merge(['digest', 'updated_at']);
        await this.announce(trx); // a tag may have moved
      }
    });
  }

  async getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    const row = await this.run(() => this.db('manifests').first('*').where({ repository, digest }));
    return row === undefined ? undefined : toManifest(row);
  }

  async missingManifests(repository: string, digests: string[]): Promise<string[]> {
    return this.missing('manifests', repository, digests);
  }

  async deleteManifest(repository: string, digest: string): Promise<boolean> {
    return this.write(async (trx) => {
      // Explicit rather than left to ON DELETE CASCADE, which SQLite only honours with the
      // foreign_keys pragma on (a knex instance handed to the constructor may not have it).
      await trx('tags').where({ repository, digest }).del();
      const deleted = (await trx('manifests').where({ repository, digest }).del()) > 0;
      if (deleted) await this.announce(trx);
      return deleted;
    });
  }

  async resolveTag(repository: string, tag: string): Promise<string | undefined> {
    const row = await this.run(() => this.db('tags').first('digest').where({ repository, name: tag }));
    return row?.digest;
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    return this.write(async (trx) => {
      const deleted = await trx('tags').where({ repository, name: tag }).del();
      if (deleted > 0) await this.announce(trx);
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

  async createUpload(upload: Pick<UploadRecord, 'id' | 'repository' | 'state' | 'algorithm'>): Promise<void> {
    const now = Date.now();
    const row: UploadRow = {
      id: upload.id,
      repository: upload.repository,
      byte_offset: 0,
      state: JSON.stringify(upload.state),
      algorithm: upload.algorithm ?? null,
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
    const deleted = await this.run(() => this.db('uploads').where({ id }).del());
    return deleted > 0;
  }

  async listStaleUploads(updatedBefore: number, limit: number): Promise<UploadRecord[]> {
    if (limit <= 0) return [];
    const rows = await this.run(() =>
      this.db('uploads').select<UploadRow[]>('*').where('updated_at', '<', updatedBefore).orderBy('updated_at').limit(limit),
    );
    return rows.map(toUpload);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.config.changes?.close();
    await this.db.destroy();
  }

  // Helpers

  /** The digests among `digests` with no row for `repository` in `table`, first-seen order. */
  private async missing(table: 'blob_links' | 'manifests', repository: string, digests: string[]): Promise<string[]> {
    const wanted = [...new Set(digests)];
    const present = new Set<string>();
    for (let i = 0; i < wanted.length; i += IN_CHUNK) {
      const chunk = wanted.slice(i, i + IN_CHUNK);
      const found = await this.run(() => this.db(table).where({ repository }).whereIn('digest', chunk).pluck('digest'));
      for (const digest of found) present.add(digest);
    }
    return wanted.filter((digest) => !present.has(digest));
  }

  /** Let other processes' read caches know, on commit, that cached data was deleted or moved. */
  private async announce(trx: Knex.Transaction): Promise<void> {
    await this.config.changes?.announce(trx);
  }

  private write<T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
    return this.run(() => this.db.transaction(work));
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

/** Creating any link creates the repository. */
async function ensureRepository(trx: Knex.Transaction, name: string, now: number): Promise<void> {
  await trx('repositories').insert({ name, created_at: now }).onConflict('name').ignore();
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
