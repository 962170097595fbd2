import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OciError } from '../src/errors.js';
import { parseQuery, parseRoute } from '../src/routes.js';

describe('parseRoute', () => {
  it('matches from the right so names may contain route words', () => {
    assert.deepEqual(parseRoute('/v2/a/blobs/manifests/tags/list'), { name: 'tags', repository: 'a/blobs/manifests', reference: '' });
    assert.deepEqual(parseRoute('/v2/a/manifests/b/manifests/latest'), {
      name: 'manifest',
      repository: 'a/manifests/b',
      reference: 'latest',
    });
    assert.deepEqual(parseRoute('/v2/a/blobs/uploads/'), { name: 'uploads', repository: 'a', reference: '' });
    assert.deepEqual(parseRoute('/v2/a/blobs/uploads'), { name: 'uploads', repository: 'a', reference: '' });
    assert.deepEqual(parseRoute('/v2/x/blobs/uploads/abc-1'), { name: 'upload', repository: 'x', reference: 'abc-1' });
    assert.deepEqual(parseRoute('/v2/x/blobs/uploads/blobs/sha256:ab'), {
      name: 'blob',
      repository: 'x/blobs/uploads',
      reference: 'sha256:ab',
    });
    assert.deepEqual(parseRoute('/v2/o/r/referrers/sha256:ab'), { name: 'referrers', repository: 'o/r', reference: 'sha256:ab' });
    assert.deepEqual(parseRoute('/v2/o/r/blobs/sha256%3Aab'), { name: 'blob', repository: 'o/r', reference: 'sha256:ab' });
  });

  it('knows the base, catalog and non-registry paths', () => {
    assert.equal(parseRoute('/v2')?.name, 'base');
    assert.equal(parseRoute('/v2/')?.name, 'base');
    assert.equal(parseRoute('/v2/_catalog')?.name, 'catalog');
    assert.equal(parseRoute('/health'), undefined);
    assert.equal(parseRoute('/v20/x'), undefined);
  });

  it('rejects invalid names and unknown shapes', () => {
    const code = (path: string) => {
      try {
        parseRoute(path);
        return 'none';
      } catch (error) {
        return (error as OciError).code;
      }
    };
    assert.equal(code('/v2/A/tags/list'), 'NAME_INVALID');
    assert.equal(code('/v2/a/../b/tags/list'), 'NAME_INVALID');
    assert.equal(code('/v2/a/%zz/tags/list'), 'NAME_INVALID');
    assert.equal(code('/v2/a'), 'NAME_UNKNOWN');
    assert.equal(code('/v2/tags/list'), 'NAME_UNKNOWN');
  });
});

describe('parseQuery', () => {
  it('keeps a literal + and decodes %2B, repeated keys kept in order', () => {
    const q = parseQuery('artifactType=application/vnd.a+json&tag=a&tag=b&x=%2B&bad=%zz&flag');
    assert.deepEqual(q.get('artifactType'), ['application/vnd.a+json']);
    assert.deepEqual(q.get('tag'), ['a', 'b']);
    assert.deepEqual(q.get('x'), ['+']);
    assert.deepEqual(q.get('bad'), ['%zz']);
    assert.deepEqual(q.get('flag'), ['']);
  });
});
