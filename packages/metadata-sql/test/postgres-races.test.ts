// Interleavings on Postgres that a load test hits only now and then, forced here step by step:
// another connection holds a row lock, the store's statement queues behind it, and the holder
// changes the row before letting go.
import { it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createSqlMetadataStore } from '../src/index.js';
import { postgresUrl, query } from './fixtures/postgres.js';

const DIGEST = `sha256:${'c'.repeat(64)}`;

/** Resolves once a backend other than `self` waits on a lock (pg_stat_activity), within 10 s. */
async function someoneWaits(holder: pg.Client, self: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await holder.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> $1 AND datname = current_database()",
      [self],
    );
    if (rows[0].n > 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail('the store never queued behind the held lock');
}

/** A store in a schema of its own, and a second connection (`holder`) to hold its rows' locks. */
async function openRace(t: TestContext) {
  const url = await postgresUrl(t);
  if (!url) return undefined;
  const schema = `berth_race_${randomUUID().replaceAll('-', '')}`;
  const store = await createSqlMetadataStore({ url, schema });
  const holder = new pg.Client({ connectionString: url });
  t.after(async () => {
    await holder.end().catch(() => undefined);
    await store.close();
    await query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });
  await holder.connect();
  await holder.query(`SET search_path TO "${schema}"`);
  const self = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  /** Start `beginCommit` while `holder` locks the blob row; once it queues, run `change` on the row and let go. */
  const commitBehind = async (id: string, change: string) => {
    await holder.query('BEGIN');
    await holder.query('SELECT digest FROM blobs WHERE digest = $1 FOR UPDATE', [DIGEST]);
    const commit = store.beginCommit(id, DIGEST, 3);
    commit.catch(() => undefined);
    await someoneWaits(holder, self);
    await holder.query(change, [DIGEST]);
    await holder.query('COMMIT');
    return commit;
  };
  return { store, commitBehind };
}

it('a commit that queues behind a collection forgetting the same blob row starts on a fresh row', async (t) => {
  const race = await openRace(t);
  if (!race) return;
  const { store, commitBehind } = race;

  // A collection has claimed the bytes (no row knew them) and is about to forget the row.
  const marked = await store.markBlobsDeleting([{ digest: DIGEST, size: 3 }], 'run-1', Date.now());
  assert.deepEqual(marked, [{ digest: DIGEST, size: 3 }]);
  await store.createUpload({ id: 'u1', repository: 'acme/app', tenant: 'acme', state: {}, algorithm: undefined });

  assert.deepEqual(await commitBehind('u1', 'DELETE FROM blobs WHERE digest = $1'), { status: 'ready' });
  await store.finishCommit('u1', DIGEST, 3);
  assert.deepEqual(
    (await store.listLinks('acme/app')).map((l) => l.digest),
    [DIGEST],
  );
  assert.deepEqual(await store.unknownBlobs([DIGEST]), []);
});

it('a commit that queues behind a collection marking the blob sees it deleting', async (t) => {
  const race = await openRace(t);
  if (!race) return;
  const { store, commitBehind } = race;

  await store.createUpload({ id: 'u0', repository: 'acme/app', tenant: 'acme', state: {}, algorithm: undefined });
  assert.deepEqual(await store.beginCommit('u0', DIGEST, 3), { status: 'ready' });
  await store.finishCommit('u0', DIGEST, 3);
  await store.createUpload({ id: 'u1', repository: 'acme/other', tenant: 'acme', state: {}, algorithm: undefined });

  // The row is live and unlinked nowhere yet: the holder plays a collection that marks it.
  const started = await commitBehind('u1', "UPDATE blobs SET state = 'deleting', run = 'run-1' WHERE digest = $1");
  assert.equal(started.status, 'deleting');
});
