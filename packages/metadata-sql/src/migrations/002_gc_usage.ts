// Garbage collection, usage and quotas (see sql-metadata-store.ts for what each table means).
// Existing data is carried over: a blob row per linked digest (touched now, so the first
// collection after the upgrade spares everything for one grace period), reference rows from the
// manifests' JSON columns, and usage figures computed from the links.
import type { Knex } from 'knex';

function isPostgres(knex: Knex): boolean {
  return knex.client.dialect === 'postgresql';
}

const BATCH = 500;

export async function up(knex: Knex): Promise<void> {
  const key = isPostgres(knex) ? 'text COLLATE "C"' : 'text';
  const now = Date.now();

  await knex.schema.createTable('blobs', (t) => {
    t.specificType('digest', key).primary();
    t.bigInteger('size').notNullable();
    // 'live', or 'deleting' once a collection chose it (its bytes are going).
    t.text('state').notNullable();
    // The collection (holder of the `gc` lease) that marked it.
    t.text('run').nullable();
    t.bigInteger('touched_at').notNullable();
    t.index(['state', 'digest'], 'blobs_state');
  });

  await knex.schema.createTable('manifest_blobs', (t) => {
    t.specificType('repository', key).notNullable();
    t.specificType('manifest', key).notNullable();
    t.specificType('blob', key).notNullable();
    t.primary(['repository', 'manifest', 'blob']);
    t.foreign(['repository', 'manifest']).references(['repository', 'digest']).inTable('manifests').onDelete('CASCADE');
    t.index(['blob', 'repository'], 'manifest_blobs_blob');
  });

  await knex.schema.createTable('manifest_children', (t) => {
    t.specificType('repository', key).notNullable();
    t.specificType('manifest', key).notNullable();
    t.specificType('child', key).notNullable();
    t.primary(['repository', 'manifest', 'child']);
    t.foreign(['repository', 'manifest']).references(['repository', 'digest']).inTable('manifests').onDelete('CASCADE');
    t.index(['repository', 'child'], 'manifest_children_child');
  });

  await knex.schema.alterTable('repositories', (t) => {
    t.specificType('tenant', key).notNullable().defaultTo('');
    t.bigInteger('bytes').notNullable().defaultTo(0);
    t.bigInteger('blobs').notNullable().defaultTo(0);
    t.index(['tenant', 'name'], 'repositories_tenant');
  });

  await knex.schema.createTable('tenants', (t) => {
    t.specificType('name', key).primary();
    t.bigInteger('bytes').notNullable().defaultTo(0);
    t.bigInteger('blobs').notNullable().defaultTo(0);
    t.bigInteger('reserved').notNullable().defaultTo(0);
  });

  await knex.schema.createTable('tenant_blobs', (t) => {
    t.specificType('tenant', key).notNullable();
    t.specificType('digest', key).notNullable();
    t.bigInteger('size').notNullable();
    // How many of the tenant's repositories link the digest.
    t.integer('links').notNullable();
    t.primary(['tenant', 'digest']);
  });

  await knex.schema.alterTable('uploads', (t) => {
    t.specificType('tenant', key).notNullable().defaultTo('');
    t.bigInteger('reserved').notNullable().defaultTo(0);
    t.specificType('committing', key).nullable();
    t.index(['committing'], 'uploads_committing');
  });

  await knex.schema.createTable('leases', (t) => {
    t.text('name').primary();
    t.text('holder').notNullable();
    t.bigInteger('until').notNullable();
  });

  // Last push or mount of the blob into the repository: the grace period counts from it.
  await knex.raw('ALTER TABLE blob_links RENAME COLUMN created_at TO linked_at');

  // Carry existing data over.
  await knex.raw(
    'INSERT INTO blobs (digest, size, state, touched_at) SELECT digest, MAX(size), ?, CAST(? AS BIGINT) FROM blob_links GROUP BY digest',
    ['live', now],
  );
  let last: [string, string] | undefined;
  for (;;) {
    const page = knex('manifests').select('repository', 'digest', 'blobs', 'children').orderBy(['repository', 'digest']).limit(BATCH);
    if (last) page.whereRaw('(repository, digest) > (?, ?)', last);
    const rows: Array<{ repository: string; digest: string; blobs: string; children: string }> = await page;
    if (rows.length === 0) break;
    const blobRefs = rows.flatMap((r) =>
      (JSON.parse(r.blobs) as string[]).map((blob) => ({ repository: r.repository, manifest: r.digest, blob })),
    );
    const childRefs = rows.flatMap((r) =>
      (JSON.parse(r.children) as string[]).map((child) => ({ repository: r.repository, manifest: r.digest, child })),
    );
    for (let i = 0; i < blobRefs.length; i += BATCH)
      await knex('manifest_blobs')
        .insert(blobRefs.slice(i, i + BATCH))
        .onConflict()
        .ignore();
    for (let i = 0; i < childRefs.length; i += BATCH)
      await knex('manifest_children')
        .insert(childRefs.slice(i, i + BATCH))
        .onConflict()
        .ignore();
    const tail = rows[rows.length - 1];
    last = [tail.repository, tail.digest];
  }
  // A manifest pushed before references were checked may name blobs that were never linked: keep them live.
  await knex.raw(
    'INSERT INTO blobs (digest, size, state, touched_at) SELECT DISTINCT blob, 0, ?, CAST(? AS BIGINT) FROM manifest_blobs WHERE blob NOT IN (SELECT digest FROM blobs)',
    ['live', now],
  );
  // Usage: every repository is in tenant '' until `recomputeUsage` (berth usage --recompute) assigns tenants.
  await knex.raw(
    'UPDATE repositories SET bytes = COALESCE((SELECT SUM(size) FROM blob_links l WHERE l.repository = repositories.name), 0), blobs = (SELECT COUNT(*) FROM blob_links l WHERE l.repository = repositories.name)',
  );
  await knex.raw(
    "INSERT INTO tenant_blobs (tenant, digest, size, links) SELECT '', digest, MAX(size), COUNT(*) FROM blob_links GROUP BY digest",
  );
  await knex.raw(
    "INSERT INTO tenants (name, bytes, blobs, reserved) SELECT '', COALESCE(SUM(size), 0), COUNT(*), 0 FROM tenant_blobs HAVING COUNT(*) > 0",
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE blob_links RENAME COLUMN linked_at TO created_at');
  for (const table of ['leases', 'tenant_blobs', 'tenants', 'manifest_children', 'manifest_blobs', 'blobs']) {
    await knex.schema.dropTableIfExists(table);
  }
  await knex.schema.alterTable('uploads', (t) => {
    t.dropIndex(['committing'], 'uploads_committing');
    t.dropColumns('tenant', 'reserved', 'committing');
  });
  await knex.schema.alterTable('repositories', (t) => {
    t.dropIndex(['tenant', 'name'], 'repositories_tenant');
    t.dropColumns('tenant', 'bytes', 'blobs');
  });
}
