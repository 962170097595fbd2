// The initial schema. See sql-metadata-store.ts for what each table means.
// Names and digests are compared and sorted in byte order: SQLite's default BINARY collation does
// that already, Postgres needs COLLATE "C" on the column (its default collation follows the locale).
import type { Knex } from 'knex';

function isPostgres(knex: Knex): boolean {
  return knex.client.dialect === 'postgresql';
}

export async function up(knex: Knex): Promise<void> {
  const key = isPostgres(knex) ? 'text COLLATE "C"' : 'text';

  await knex.schema.createTable('repositories', (t) => {
    t.specificType('name', key).primary();
    t.bigInteger('created_at').notNullable();
  });

  await knex.schema.createTable('blob_links', (t) => {
    t.specificType('repository', key).notNullable().references('name').inTable('repositories');
    t.specificType('digest', key).notNullable();
    t.bigInteger('size').notNullable();
    t.bigInteger('created_at').notNullable();
    t.primary(['repository', 'digest']);
    // isBlobLinked and listBlobRepositories look a digest up across repositories.
    t.index(['digest', 'repository'], 'blob_links_digest');
  });

  await knex.schema.createTable('manifests', (t) => {
    t.specificType('repository', key).notNullable().references('name').inTable('repositories');
    t.specificType('digest', key).notNullable();
    t.text('media_type').notNullable();
    t.binary('content').notNullable();
    t.bigInteger('size').notNullable();
    t.specificType('subject', key).nullable();
    t.text('artifact_type').nullable();
    t.text('annotations').nullable();
    t.text('blobs').notNullable();
    t.text('children').notNullable();
    t.bigInteger('created_at').notNullable();
    t.primary(['repository', 'digest']);
    // Referrers: equality on (repository, subject), then ordered by digest; only manifests with a
    // subject belong in the index.
    t.index(['repository', 'subject', 'digest'], 'manifests_referrers', { predicate: knex.whereNotNull('subject') });
  });

  await knex.schema.createTable('tags', (t) => {
    t.specificType('repository', key).notNullable();
    t.specificType('name', key).notNullable();
    t.specificType('digest', key).notNullable();
    t.bigInteger('updated_at').notNullable();
    t.primary(['repository', 'name']);
    t.foreign(['repository', 'digest']).references(['repository', 'digest']).inTable('manifests').onDelete('CASCADE');
    // deleteManifest drops the tags pointing at a digest.
    t.index(['repository', 'digest'], 'tags_digest');
  });

  await knex.schema.createTable('uploads', (t) => {
    t.specificType('id', key).primary();
    // No foreign key: an upload session does not make its repository exist.
    t.specificType('repository', key).notNullable();
    t.bigInteger('byte_offset').notNullable();
    t.text('state').notNullable();
    t.text('algorithm').nullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.text('lease_token').nullable();
    t.bigInteger('lease_until').notNullable();
    t.index(['updated_at'], 'uploads_updated_at');
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['uploads', 'tags', 'manifests', 'blob_links', 'repositories']) {
    await knex.schema.dropTableIfExists(table);
  }
}
