// What every write transaction does to links and usage, in one place, so that the figures stay
// exact and the locks are always taken in one order (Postgres; SQLite serializes every write
// transaction anyway): repositories → manifests → blobs → tenant_blobs → tenants → uploads.
//
// Every transaction that changes a repository's links, manifests or references starts by locking
// the repository row (takeRepository / lockRepository), so within one repository those writes
// are serialized and each can re-check what the others do.
import type { Knex } from 'knex';
import type { TenantUsage, UnlinkedBlob } from '@berthjs/core';
import type { Dialect } from './options.js';

/** Bound parameters per `IN (...)` list, well under SQLite's and Postgres' limits. */
export const IN_CHUNK = 500;

export function chunks<T>(items: readonly T[], size = IN_CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** One write transaction and what its helpers need to know. */
export class Ledger {
  readonly now = Date.now();

  constructor(
    readonly trx: Knex.Transaction,
    readonly dialect: Dialect,
  ) {}

  /** A row lock on Postgres; SQLite's BEGIN IMMEDIATE already excludes every other writer. */
  lock<Q extends Knex.QueryBuilder>(query: Q, mode: 'update' | 'share'): Q {
    if (this.dialect !== 'postgres') return query;
    return (mode === 'update' ? query.forUpdate() : query.forShare()) as Q;
  }

  /**
   * Lock the repository row, creating it with `tenant` if missing (a concurrent delete of an
   * empty repository is then either before, and the row is made again, or after, and sees us).
   * Returns the repository's tenant, which is fixed when it is created.
   */
  async takeRepository(name: string, tenant: string): Promise<string> {
    const { trx } = this;
    await trx('repositories')
      .insert({ name, tenant, created_at: this.now })
      .onConflict('name')
      .merge({ created_at: trx.raw('??', ['repositories.created_at']) });
    const row = await trx('repositories').first('tenant').where({ name });
    return row.tenant as string;
  }

  /**
   * Lock the blob row, creating it live if missing, and read its state. An upsert rather than
   * insert-or-ignore then select: a collection forgetting the row between those two statements
   * would leave nothing to lock, where the upsert waits for it and then makes the row again.
   */
  async takeBlob(digest: string, size: number): Promise<{ state: 'live' | 'deleting'; run: string | null }> {
    const { trx } = this;
    await trx('blobs')
      .insert({ digest, size, state: 'live', run: null, touched_at: this.now })
      .onConflict('digest')
      .merge({ digest: trx.raw('??', ['blobs.digest']) });
    return trx('blobs').first('state', 'run').where({ digest });
  }

  /** Lock an existing repository row; undefined when there is none. */
  async lockRepository(name: string): Promise<{ tenant: string } | undefined> {
    return this.lock(this.trx('repositories').first('tenant').where({ name }), 'update');
  }

  /** Link (or re-link: refresh `linked_at`) a blob; usage counts a new link. Returns whether it was new. */
  async addLink(repository: string, tenant: string, digest: string, size: number): Promise<boolean> {
    const { trx } = this;
    const existing = await trx('blob_links').first('size').where({ repository, digest });
    if (existing) {
      await trx('blob_links').where({ repository, digest }).update({ linked_at: this.now });
      return false;
    }
    await trx('blob_links').insert({ repository, digest, size, linked_at: this.now });
    await trx('repositories')
      .where({ name: repository })
      .update({ bytes: trx.raw('bytes + ?', [size]), blobs: trx.raw('blobs + 1') });
    await trx('tenant_blobs')
      .insert({ tenant, digest, size, links: 1 })
      .onConflict(['tenant', 'digest'])
      .merge({ links: trx.raw('?? + 1', ['tenant_blobs.links']) });
    const held = await trx('tenant_blobs').first('links').where({ tenant, digest });
    if (Number(held.links) === 1) await this.changeTenant(tenant, size, 1);
    return true;
  }

  /** Remove existing links (sizes as stored); usage follows. Returns them, marking those the tenant no longer holds. */
  async removeLinks(repository: string, tenant: string, links: Array<{ digest: string; size: number }>): Promise<UnlinkedBlob[]> {
    const { trx } = this;
    const removed: UnlinkedBlob[] = [];
    for (const batch of chunks(links)) {
      const digests = batch.map((l) => l.digest);
      await trx('blob_links').where({ repository }).whereIn('digest', digests).del();
      const bytes = batch.reduce((sum, l) => sum + l.size, 0);
      await trx('repositories')
        .where({ name: repository })
        .update({ bytes: trx.raw('bytes - ?', [bytes]), blobs: trx.raw('blobs - ?', [batch.length]) });
      await trx('tenant_blobs')
        .where({ tenant })
        .whereIn('digest', digests)
        .update({ links: trx.raw('links - 1') });
      const gone = new Set<string>(
        await trx('tenant_blobs').where({ tenant }).whereIn('digest', digests).where('links', '<=', 0).pluck('digest'),
      );
      if (gone.size > 0) {
        await trx('tenant_blobs')
          .where({ tenant })
          .whereIn('digest', [...gone])
          .del();
        const freed = batch.filter((l) => gone.has(l.digest)).reduce((sum, l) => sum + l.size, 0);
        await this.changeTenant(tenant, -freed, -gone.size);
      }
      for (const l of batch) removed.push({ digest: l.digest, size: l.size, released: gone.has(l.digest) });
    }
    return removed;
  }

  /** A repository with no manifest and no link left leaves the catalog (its row is locked by the caller). */
  async endRepositoryIfEmpty(name: string): Promise<boolean> {
    const { trx } = this;
    // One statement at a time: a transaction is one connection, and pg refuses overlapping queries on it.
    if (await trx('blob_links').first('digest').where({ repository: name })) return false;
    if (await trx('manifests').first('digest').where({ repository: name })) return false;
    await trx('tags').where({ repository: name }).del();
    await trx('repositories').where({ name }).del();
    return true;
  }

  /** Lock the tenant's row (creating it) and read its figures. */
  async lockTenant(tenant: string): Promise<TenantUsage> {
    const { trx } = this;
    await trx('tenants')
      .insert({ name: tenant, bytes: 0, blobs: 0, reserved: 0 })
      .onConflict('name')
      .merge({ bytes: trx.raw('??', ['tenants.bytes']) });
    const row = await trx('tenants').first('bytes', 'blobs', 'reserved').where({ name: tenant });
    return { bytes: Number(row.bytes), blobs: Number(row.blobs), reserved: Number(row.reserved) };
  }

  /** Change the tenant's reservation by `delta` bytes (the row is locked by the caller). */
  async reserve(tenant: string, delta: number): Promise<void> {
    if (delta === 0) return;
    await this.trx('tenants')
      .where({ name: tenant })
      .update({ reserved: this.trx.raw('reserved + ?', [delta]) });
  }

  private async changeTenant(tenant: string, bytes: number, blobs: number): Promise<void> {
    const { trx } = this;
    await trx('tenants')
      .insert({ name: tenant, bytes, blobs, reserved: 0 })
      .onConflict('name')
      .merge({ bytes: trx.raw('?? + ?', ['tenants.bytes', bytes]), blobs: trx.raw('?? + ?', ['tenants.blobs', blobs]) });
  }
}
