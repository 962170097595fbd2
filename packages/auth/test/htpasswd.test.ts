import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import type { OciError } from '@berthjs/core';
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

/** One refused check: how long it took and the CPU it used (ms). */
async function refusal(check: () => Promise<boolean>): Promise<{ ms: number; cpu: number }> {
  const before = process.cpuUsage();
  const start = performance.now();
  assert.equal(await check(), false);
  const ms = performance.now() - start;
  const used = process.cpuUsage(before);
  return { ms, cpu: (used.user + used.system) / 1000 };
}

/** `htpasswd -nbB -C <cost>`'s line, or undefined without apache2-utils. */
function apacheLine(user: string, password: string, cost: number): string | undefined {
  try {
    return execFileSync('htpasswd', ['-nbB', '-C', String(cost), user, password], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe('Htpasswd refusal timing', () => {
  // Medians over interleaved attempts: a wrong password for a user in the file against a user who
  // is not there. The old decoy (bcrypt at cost 10 whatever the file used) took ~60 ms against
  // ~2 ms at cost 5, and burned that CPU on every unknown user.
  for (const [cost, attempts] of [
    [5, 41],
    [10, 9],
  ] as const) {
    it(`takes as long for an unknown user as for a wrong password, with little CPU (bcrypt cost ${cost})`, async (t) => {
      const users = ['alice', 'bob', 'carol'];
      const lines = await Promise.all(users.map((user) => htpasswdLine(user, `${user}-secret`, cost)));
      // One line as the README's `htpasswd -B` writes it (apache2-utils), where installed.
      const apache = apacheLine('alice', 'alice-secret', cost);
      if (apache) lines[0] = apache;
      const file = new Htpasswd(lines.join('\n'), { cacheTtlMs: 0 });
      // Warm up: JIT, and whatever the file learns about its own bcrypt cost.
      for (let i = 0; i < 3; i++) {
        await file.verify('bob', `nope${i}`);
        await file.verify(`ghost${i}`, 'nope');
      }
      const known: { ms: number; cpu: number }[] = [];
      const unknown: { ms: number; cpu: number }[] = [];
      // Alternate single attempts so load drift on a shared machine hits both alike.
      for (let i = 0; i < attempts; i++) {
        known.push(await refusal(() => file.verify(users[i % users.length], `wrong-${i}`)));
        unknown.push(await refusal(() => file.verify(`mallory${i}`, `wrong-${i}`)));
      }
      const k = median(known.map((r) => r.ms));
      const u = median(unknown.map((r) => r.ms));
      const what = `cost ${cost}: wrong password ${k.toFixed(2)} ms, unknown user ${u.toFixed(2)} ms (medians of ${attempts})`;
      const [knownCpu, unknownCpu] = [sum(known.map((r) => r.cpu)), sum(unknown.map((r) => r.cpu))];
      const cpu = `CPU ${unknownCpu.toFixed(1)} ms for the unknown users, ${knownCpu.toFixed(1)} ms for the wrong passwords`;
      t.diagnostic(`${what}; ${cpu}`);
      // Within a factor of 2, loose enough for a loaded shared machine: the old decoy was 30x off at cost 5.
      assert.ok(Math.abs(k - u) <= Math.max(2, Math.min(k, u)), what);
      // A quarter of a real check, or 3 ms an attempt: process CPU also counts V8's background threads.
      assert.ok(unknownCpu < Math.max(0.25 * knownCpu, 3 * attempts), cpu);
    });
  }
});

describe('Htpasswd under concurrent logins', () => {
  it('refuses a burst of unknown users as slowly as a burst of wrong passwords (checks take turns)', async (t) => {
    const file = new Htpasswd(await htpasswdLine('bob', 'builder', 5), { cacheTtlMs: 0 });
    for (let i = 0; i < 6; i++) await file.verify('bob', `warm-${i}`);
    const burst = async (user: (i: number) => string) => {
      const start = performance.now();
      await Promise.all(Array.from({ length: 12 }, (_, i) => file.verify(user(i), `wrong-${Math.random()}`)));
      return performance.now() - start;
    };
    const known: number[] = [];
    const unknown: number[] = [];
    for (let round = 0; round < 9; round++) {
      known.push(await burst(() => 'bob'));
      unknown.push(await burst((i) => `ghost-${round}-${i}`));
    }
    const [k, u] = [median(known), median(unknown)];
    t.diagnostic(`12 at once: wrong passwords ${k.toFixed(1)} ms, unknown users ${u.toFixed(1)} ms (medians of 9 bursts)`);
    // Within a factor of 2; refusals that did not take turns would all end after one wait.
    assert.ok(Math.abs(k - u) <= Math.max(3, Math.min(k, u)), `wrong passwords ${k.toFixed(1)} ms, unknown users ${u.toFixed(1)} ms`);
  });

  it('shares one check among identical concurrent logins, and refuses a flood beyond maxPendingChecks with 429', async () => {
    const file = new Htpasswd(await htpasswdLine('bob', 'builder', 4), { maxPendingChecks: 2 });
    const same = await Promise.all(Array.from({ length: 10 }, () => file.verify('bob', 'builder')));
    assert.deepEqual(same, Array(10).fill(true));
    const flood = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => file.verify(i % 2 ? 'bob' : `ghost${i}`, `guess${i}`)));
    assert.deepEqual(
      flood.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'rejected', 'rejected'],
    );
    for (const r of flood) {
      if (r.status === 'rejected') {
        assert.equal((r.reason as OciError).code, 'TOOMANYREQUESTS');
        assert.equal((r.reason as OciError).headers['Retry-After'], '1');
      } else assert.equal(r.value, false);
    }
    assert.equal(await file.verify('bob', 'nope'), false, 'the queue drains');
  });
});
