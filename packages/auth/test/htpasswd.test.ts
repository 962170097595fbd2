import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Htpasswd, htpasswdLine } from '../src/htpasswd.js';

// Hashed by another implementation (libxcrypt, via Python's crypt), with the `$2y$` prefix `htpasswd -B` writes.
const FOREIGN_LINE = 'alice:$2y$04$zrYKE90/odGVfL1.kSTekuzwKiWcp0zBgH9yvHpIUcBC55ilf7BRq';

describe('Htpasswd', () => {
  it('checks $2y$, $2a$ and $2b$ entries and refuses wrong passwords and unknown users', async () => {
    const bob = await htpasswdLine('bob', 'builder', 4);
    assert.match(bob, /^bob:\$2y\$04\$/);
    const carol = (await htpasswdLine('carol', 'c:ol pass', 4)).replace('$2y$', '$2a$');
    const dave = (await htpasswdLine('dave', 'd', 4)).replace('$2y$', '$2b$');
    const file = new Htpasswd(['# users', '', bob, carol, dave].join('\n'));
    assert.deepEqual(file.usernames, ['bob', 'carol', 'dave']);
    assert.equal(await file.verify('bob', 'builder'), true);
    assert.equal(await file.verify('carol', 'c:ol pass'), true);
    assert.equal(await file.verify('dave', 'd'), true);
    assert.equal(await file.verify('bob', 'builder '), false);
    assert.equal(await file.verify('bob', 'd'), false);
    assert.equal(await file.verify('nobody', 'builder'), false);
  });

  it('reads a $2y$ line hashed by another bcrypt implementation', async () => {
    const file = new Htpasswd(`${FOREIGN_LINE}\r\n`);
    assert.equal(await file.verify('alice', 'wonderland'), true);
    assert.equal(await file.verify('alice', 'Wonderland'), false);
  });

  it('refuses non-bcrypt formats and malformed lines at load', () => {
    assert.throws(() => new Htpasswd('alice:$apr1$abc$def'), /line 1.*bcrypt/);
    assert.throws(() => new Htpasswd('# ok\nalice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g='), /line 2/);
    assert.throws(() => new Htpasswd('no-colon-here'), /line 1/);
    assert.throws(() => new Htpasswd(':$2y$04$zrYKE90/odGVfL1.kSTekuzwKiWcp0zBgH9yvHpIUcBC55ilf7BRq'), /line 1/);
  });

  it('remembers a successful check only for the exact credentials', async () => {
    const file = new Htpasswd(await htpasswdLine('bob', 'builder', 4), { cacheTtlMs: 60_000 });
    assert.equal(await file.verify('bob', 'builder'), true);
    assert.equal(await file.verify('bob', 'builder'), true);
    assert.equal(await file.verify('bob', 'builde'), false);
  });
});
