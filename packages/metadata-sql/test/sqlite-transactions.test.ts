// Write transactions must hold SQLite's write lock from BEGIN on (BEGIN IMMEDIATE), so that a
// transaction never has to upgrade a read snapshot that another process made stale.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { connect } from '../src/connect.js';

describe('SQLite write transactions', () => {
  it('take the write lock at BEGIN', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-immediate-'));
    const { db } = connect({ filename: join(dir, 'x.sqlite') });
    const outsider = new Database(join(dir, 'x.sqlite'), { timeout: 0 });
    try {
      await db.raw('CREATE TABLE t (x INTEGER)');
      await db.transaction(async (trx) => {
        await trx.raw('SELECT count(*) FROM t');
        assert.throws(() => outsider.prepare('INSERT INTO t VALUES (1)').run(), { code: 'SQLITE_BUSY' });
      });
      outsider.prepare('INSERT INTO t VALUES (1)').run();
    } finally {
      outsider.close();
      await db.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
