import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConflictError, UnavailableError } from '@berthjs/core';
import { createSqlMetadataStore } from '../src/index.js';
import { toStoreError } from '../src/backend-errors.js';

describe('backend errors', () => {
  it('maps an unreachable Postgres to UnavailableError', async () => {
    const started = Date.now();
    await assert.rejects(createSqlMetadataStore({ url: 'postgres://postgres@127.0.0.1:1/test' }), (err: unknown) => {
      assert.ok(err instanceof UnavailableError, String(err));
      assert.equal(err.store, 'postgres');
      return true;
    });
    assert.ok(Date.now() - started < 10_000, 'fails fast instead of waiting for the pool timeout');
  });

  it('maps unique violations to ConflictError and SQLITE_BUSY to UnavailableError', () => {
    assert.ok(toStoreError(Object.assign(new Error('dup'), { code: '23505' }), 'postgres') instanceof ConflictError);
    assert.ok(toStoreError(Object.assign(new Error('dup'), { code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }), 'sqlite') instanceof ConflictError);
    assert.ok(toStoreError(Object.assign(new Error('busy'), { code: 'SQLITE_BUSY' }), 'sqlite') instanceof UnavailableError);
    const other = new TypeError('bug');
    assert.equal(toStoreError(other, 'sqlite'), other);
  });
});
