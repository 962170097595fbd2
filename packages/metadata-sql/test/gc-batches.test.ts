// Garbage collection's batch primitives take a bounded number of statements per batch, whatever
// its size: a collection of 100,000 blobs makes them a few hundred times, and one statement per
// blob was most of a collection's time on Postgres. What they mark stays what the port says.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { connect } from '../src/connect.js';
import { SqlMetadataStore } from '../src/index.js';
import { postgresUrl, query } from './fixtures/postgres.js';

const digestOf = (n: string) => `sha256:${createHash('sha256').update(n).digest('hex')}`;

interface Fixture {
  store: SqlMetadataStore;
  db: Knex;
  cleanup(): Promise<void>;
}

async function sqlite(): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-gc-batches-'));
  const { db, dialect } = connect({ filename: join(dir, 'metadata.sqlite') });
  const store = new SqlMetadataStore(db, { dialect });
  await store.migrate();
  return {
    store,
    db,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function postgres(t: TestContext): Promise<Fixture | undefined> {
  const url = await postgresUrl(t);
  if (!url) return undefined;
  const schema = `berth_test_${randomUUID().replaceAll('-', '')}`;
  const { db, dialect } = connect({ url, schema });
  const store = new SqlMetadataStore(db, { dialect, schema });
  await store.migrate();
  return {
    store,
    db,
    cleanup: async () => {
      await store.close();
      await query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    },
  };
}

/** Commit `digest` into `repository` through the upload path. */
async function commit(store: SqlMetadataStore, repository: string, digest: string, size: number): Promise<void> {
  const id = randomUUID();
  await store.createUpload({ id, repository, tenant: 't', state: {} });
  assert.deepEqual(await store.beginCommit(id, digest, size), { status: 'ready' });
  await store.finishCommit(id, digest, size);
}

/** Blobs committed to `gc/app` and unlinked again: collectable once the grace period passed. */
async function unlinkedBlobs(store: SqlMetadataStore, labels: string[]): Promise<string[]> {
  const digests = labels.map(digestOf);
  for (const digest of digests) {
    await commit(store, 'gc/app', digest, 10);
    assert.equal(await store.unlinkBlob('gc/app', digest), true);
  }
  return digests;
}

/** Statements `work` sends through `db`. */
async function statements(db: Knex, work: () => Promise<unknown>): Promise<Array<{ sql: string; bindings: unknown[] }>> {
  const sent: Array<{ sql: string; bindings: unknown[] }> = [];
  const listener = (q: { sql: string; bindings?: unknown[] }) => sent.push({ sql: q.sql, bindings: q.bindings ?? [] });
  db.on('query', listener);
  try {
    await work();
  } finally {
    db.off('query', listener);
  }
  return sent;
}

for (const [name, open] of [
  ['sqlite', sqlite],
  ['postgres', postgres],
] as const) {
  describe(`garbage collection batches on ${name}`, () => {
    it('markBlobsDeleting marks a batch of 500 in a bounded number of statements, exactly what may go', async (t) => {
      const fixture = await open(t);
      if (!fixture) return;
      const { store, db } = fixture;
      try {
        // 300 unlinked rows (collectable), 200 digests no row knows of, one linked blob (in use),
        // one left 'deleting' by an earlier run (adopted), one touched after the cutoff (young).
        const unlinked = await unlinkedBlobs(
          store,
          Array.from({ length: 300 }, (_, i) => `unlinked ${i}`),
        );
        const unknown = Array.from({ length: 200 }, (_, i) => digestOf(`unknown ${i}`));
        const linked = digestOf('linked');
        await commit(store, 'gc/app', linked, 10);
        const abandoned = digestOf('abandoned');
        await commit(store, 'gc/app', abandoned, 10);
        await store.unlinkBlob('gc/app', abandoned);
        assert.deepEqual(await store.markBlobsDeleting([{ digest: abandoned }], 'earlier-run', Date.now() + 1), [
          { digest: abandoned, size: 10 },
        ]);
        await new Promise((resolve) => setTimeout(resolve, 2));
        const cutoff = Date.now();
        await new Promise((resolve) => setTimeout(resolve, 2));
        const young = digestOf('young');
        await commit(store, 'gc/app', young, 10);
        await store.unlinkBlob('gc/app', young);

        const candidates = [...unlinked, ...unknown, linked, abandoned, young].map((digest) => ({ digest, size: 7 }));
        let marked: Awaited<ReturnType<SqlMetadataStore['markBlobsDeleting']>> = [];
        const sent = await statements(db, async () => {
          marked = await store.markBlobsDeleting(candidates, 'run', cutoff);
        });
        const expected = [
          ...unlinked.map((digest) => ({ digest, size: 10 })),
          ...unknown.map((digest) => ({ digest, size: 7 })),
          { digest: abandoned, size: 10 },
        ].sort((a, b) => (a.digest < b.digest ? -1 : 1));
        assert.deepEqual(marked, expected);
        // Two batches of up to 500 (the IN-list size); per batch: the locking read, three
        // "in use" reads, one update, one insert and one read back; plus BEGIN and COMMIT.
        assert.ok(sent.length <= 20, `markBlobsDeleting sent ${sent.length} statements for ${candidates.length} candidates`);

        assert.deepEqual(await store.listCollectableBlobs(cutoff), expected);
        assert.deepEqual(await store.unknownBlobs([linked, young, ...unknown.slice(0, 2)]), []);
      } finally {
        await fixture.cleanup();
      }
    });

    it('listCollectableBlobs pages through marked and live blobs in digest order, each once', async (t) => {
      const fixture = await open(t);
      if (!fixture) return;
      const { store, db } = fixture;
      try {
        const digests = await unlinkedBlobs(
          store,
          Array.from({ length: 12 }, (_, i) => `blob ${i}`),
        );
        const kept = digestOf('kept');
        await commit(store, 'gc/app', kept, 10);
        // Every third one marked (by a run that died), the rest live: the two interleave.
        await store.markBlobsDeleting(
          digests.filter((_, i) => i % 3 === 0).map((digest) => ({ digest })),
          'dead-run',
          Date.now() + 1,
        );
        const cutoff = Date.now() + 1;
        const all = [...digests].sort().map((digest) => ({ digest, size: 10 }));
        assert.deepEqual(await store.listCollectableBlobs(cutoff), all);
        const paged: Array<{ digest: string; size: number }> = [];
        let last: string | undefined;
        const sent = await statements(db, async () => {
          for (;;) {
            const page = await store.listCollectableBlobs(cutoff, { limit: 5, last });
            paged.push(...page);
            if (page.length < 5) break;
            last = page[page.length - 1].digest;
          }
        });
        assert.deepEqual(paged, all);
        if (name !== 'sqlite') return;
        // Each page reads in index order and stops at its limit: no sort of every candidate past
        // `last` (the cost of a page grew with the blobs left, a collection with their square).
        for (const { sql, bindings } of sent) {
          const plan: Array<{ detail: string }> = await db.raw(`EXPLAIN QUERY PLAN ${sql}`, bindings as Knex.RawBinding[]);
          const details = plan.map((p) => p.detail).join('; ');
          assert.doesNotMatch(details, /TEMP B-TREE FOR ORDER BY|MULTI-INDEX OR/, `${sql}: ${details}`);
        }
      } finally {
        await fixture.cleanup();
      }
    });
  });
}
