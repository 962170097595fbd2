import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeMetadataStore, Faults } from '@berthjs/testkit';
import { createSqlMetadataStore } from '../src/index.js';
import { POSTGRES_URL, postgresUnreachable, query } from './fixtures/postgres.js';

describeMetadataStore('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-metadata-'));
  const filename = join(dir, 'metadata.sqlite');
  const store = await createSqlMetadataStore({ filename });
  const cleanup = async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { store, cleanup, reopen: () => createSqlMetadataStore({ filename }) };
});

// The fault wrapper of @berthjs/testkit, with no rule armed, must be invisible around a real store.
describeMetadataStore('sqlite behind Faults', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-metadata-'));
  const filename = join(dir, 'metadata.sqlite');
  const faults = new Faults();
  const store = faults.wrap(await createSqlMetadataStore({ filename }));
  const cleanup = async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { store, cleanup, reopen: async () => faults.wrap(await createSqlMetadataStore({ filename })) };
});

const url = POSTGRES_URL;
const unreachable = await postgresUnreachable();
if (unreachable && process.env.CI) it('reaches Postgres (required in CI)', () => assert.fail(`no Postgres at ${url}: ${unreachable}`));
else if (unreachable) describe('postgres', { skip: `no Postgres at ${url}: ${unreachable}` }, () => {});
else
  describeMetadataStore('postgres', async () => {
    const schema = `berth_test_${randomUUID().replaceAll('-', '')}`;
    const store = await createSqlMetadataStore({ url, schema });
    const cleanup = async () => {
      await store.close();
      await query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    };
    return { store, cleanup, reopen: () => createSqlMetadataStore({ url, schema }) };
  });
