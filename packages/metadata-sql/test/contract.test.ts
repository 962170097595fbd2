import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describeMetadataStore } from '@berth/testkit';
import { createSqlMetadataStore } from '../src/index.js';

describeMetadataStore('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-metadata-'));
  const filename = join(dir, 'metadata.sqlite');
  const store = await createSqlMetadataStore({ filename });
  const cleanup = async () => (await store.close(), await rm(dir, { recursive: true, force: true }));
  return { store, cleanup, reopen: () => createSqlMetadataStore({ filename }) };
});

const url = process.env.BERTH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// One throwaway client per statement: probing the server and dropping a test schema.
async function query(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query(sql);
  } finally {
    await client.end().catch(() => undefined);
  }
}
const unreachable = await query('SELECT 1').then(() => undefined, (err: Error) => err.message || String(err));
if (unreachable && process.env.CI) it('reaches Postgres (required in CI)', () => assert.fail(`no Postgres at ${url}: ${unreachable}`));
else if (unreachable) describe('postgres', { skip: `no Postgres at ${url}: ${unreachable}` }, () => {});
else
  describeMetadataStore('postgres', async () => {
    const schema = `berth_test_${randomUUID().replaceAll('-', '')}`;
    const store = await createSqlMetadataStore({ url, schema });
    const cleanup = async () => (await store.close(), await query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
    return { store, cleanup, reopen: () => createSqlMetadataStore({ url, schema }) };
  });
