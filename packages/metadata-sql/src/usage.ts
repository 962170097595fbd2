// Usage recomputed from scratch (MetadataStore.recomputeUsage): every figure from the links and
// upload sessions, compared with the running ones, corrected where they differ. One transaction
// per tenant, holding its repository rows and its tenant row, which every link, unlink and
// reservation of that tenant also takes: the tenant's figures cannot move while they are counted.
import type { Knex } from 'knex';
import type { UsageCorrection, UsageFigures, UsageRecompute } from '@berthjs/core';
import { chunks, type Ledger } from './ledger.js';

type Write = <T>(work: (ledger: Ledger) => Promise<T>) => Promise<T>;

export interface RecomputeOptions {
  /** Move repositories whose stored tenant differs from this (e.g. after tenants were introduced). */
  tenantOf?: (repository: string) => string;
  onProgress?: (done: number, total: number) => void;
}

const PAGE = 1000;

export async function recomputeUsage(db: Knex, write: Write, options: RecomputeOptions = {}): Promise<UsageRecompute> {
  if (options.tenantOf) await retenant(db, write, options.tenantOf);
  const tenants = await tenantNames(db);
  const corrections: UsageCorrection[] = [];
  let repositories = 0;
  for (const [i, tenant] of tenants.entries()) {
    repositories += await write((ledger) => recomputeTenant(ledger, tenant, corrections));
    options.onProgress?.(i + 1, tenants.length);
  }
  return { tenants: tenants.length, repositories, corrections };
}

async function recomputeTenant(ledger: Ledger, tenant: string, corrections: UsageCorrection[]): Promise<number> {
  const { trx } = ledger;
  const repos: Array<{ name: string; bytes: number; blobs: number }> = await ledger.lock(
    trx('repositories').select('name', 'bytes', 'blobs').where({ tenant }).orderBy('name'),
    'update',
  );
  const running = await ledger.lockTenant(tenant);
  const links = () => trx('blob_links as l').join('repositories as r', 'r.name', 'l.repository').where('r.tenant', tenant);

  const perRepository = new Map<string, UsageFigures>();
  for (const row of await links().groupBy('l.repository').select('l.repository').count('* as blobs').sum('l.size as bytes')) {
    perRepository.set(row.repository as string, { bytes: Number(row.bytes ?? 0), blobs: Number(row.blobs) });
  }
  for (const repo of repos) {
    const recomputed = perRepository.get(repo.name) ?? { bytes: 0, blobs: 0 };
    const was = { bytes: Number(repo.bytes), blobs: Number(repo.blobs) };
    if (was.bytes === recomputed.bytes && was.blobs === recomputed.blobs) continue;
    await trx('repositories').where({ name: repo.name }).update(recomputed);
    corrections.push({ scope: 'repository', name: repo.name, running: was, recomputed });
  }

  // The digests the tenant holds, each once, with how many of its repositories link it.
  const held: Array<{ digest: string; size: number; links: number }> = (
    await links().groupBy('l.digest').select('l.digest').max('l.size as size').count('* as links')
  ).map((r) => ({ digest: r.digest as string, size: Number(r.size), links: Number(r.links) }));
  const stored = new Map<string, { size: number; links: number }>();
  for (const r of await trx('tenant_blobs').select('digest', 'size', 'links').where({ tenant })) {
    stored.set(r.digest, { size: Number(r.size), links: Number(r.links) });
  }
  const same =
    held.length === stored.size && held.every((h) => stored.get(h.digest)?.links === h.links && stored.get(h.digest)?.size === h.size);
  if (!same) {
    await trx('tenant_blobs').where({ tenant }).del();
    for (const batch of chunks(held)) await trx('tenant_blobs').insert(batch.map((h) => ({ tenant, ...h })));
  }

  const reserved = Number((await trx('uploads').where({ tenant }).sum('reserved as total').first())?.total ?? 0);
  const recomputed = { bytes: held.reduce((sum, h) => sum + h.size, 0), blobs: held.length, reserved };
  if (running.bytes !== recomputed.bytes || running.blobs !== recomputed.blobs || running.reserved !== recomputed.reserved) {
    await trx('tenants').where({ name: tenant }).update(recomputed);
    corrections.push({ scope: 'tenant', name: tenant, running, recomputed });
  }
  return repos.length;
}

/** Give every repository the tenant `tenantOf` names for it now. */
async function retenant(db: Knex, write: Write, tenantOf: (repository: string) => string): Promise<void> {
  let last: string | undefined;
  for (;;) {
    const page = db('repositories').select('name', 'tenant').orderBy('name').limit(PAGE);
    if (last !== undefined) page.where('name', '>', last);
    const rows: Array<{ name: string; tenant: string }> = await page;
    const moved = rows.filter((r) => tenantOf(r.name) !== r.tenant);
    if (moved.length > 0) {
      await write(async ({ trx }) => {
        for (const r of moved)
          await trx('repositories')
            .where({ name: r.name })
            .update({ tenant: tenantOf(r.name) });
      });
    }
    if (rows.length < PAGE) return;
    last = rows[rows.length - 1].name;
  }
}

/** Every tenant with a repository, a usage row or an upload. */
async function tenantNames(db: Knex): Promise<string[]> {
  const rows = await db
    .select('tenant as name')
    .from('repositories')
    .union((q) => q.select('name').from('tenants'))
    .union((q) => q.select('tenant as name').from('uploads'));
  return [...new Set(rows.map((r) => r.name as string))].sort();
}
