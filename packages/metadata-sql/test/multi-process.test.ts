// Several processes on one SQLite file: compare-and-set claims must give each offset exactly one
// winner, and lock contention (BEGIN IMMEDIATE, busy_timeout, retries) must never surface.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSqlMetadataStore } from '../src/index.js';
import { contend, SESSION, type ContendResult } from './fixtures/contend.js';

const STEPS = 300;
const CHILDREN = 2;
const contender = fileURLToPath(new URL('./fixtures/contender.ts', import.meta.url));

function startChild(filename: string, label: string): { child: ChildProcess; ready: Promise<void>; result: Promise<ContendResult> } {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', contender, filename, label, String(STEPS)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const ready = new Promise<void>((resolve, reject) => {
    const check = () => (output.startsWith('ready\n') ? resolve() : undefined);
    child.stdout!.on('data', check);
    child.once('exit', (code) => reject(new Error(`${label} exited (${code}) before ready`)));
  });
  const result = once(child, 'exit').then(([code]) => {
    assert.equal(code, 0, `${label} exit code`);
    return JSON.parse(output.slice('ready\n'.length)) as ContendResult;
  });
  return { child, ready, result };
}

describe('SQLite shared by several processes', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('lets exactly one process win each compare-and-set and surfaces no SQLITE_BUSY', { timeout: 120_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-multiprocess-'));
    dirs.push(dir);
    const filename = join(dir, 'metadata.sqlite');
    const store = await createSqlMetadataStore({ filename });
    try {
      await store.createUpload({ id: SESSION, repository: 'contended', tenant: '', state: {} });
      const children = Array.from({ length: CHILDREN }, (_, i) => startChild(filename, `child-${i}`));
      await Promise.all(children.map((c) => c.ready));
      for (const { child } of children) child.stdin!.end('go\n');
      const results = await Promise.all([contend(store, 'parent', STEPS), ...children.map((c) => c.result)]);

      for (const result of results) assert.deepEqual(result.errors, [], `${result.label} saw errors`);
      t.diagnostic(`wins/attempts: ${results.map((r) => `${r.label}=${r.wins.length}/${r.attempts}`).join(' ')}`);
      // Compare-and-set: each offset was won exactly once, by someone.
      const won = results.flatMap((r) => r.wins).sort((a, b) => a - b);
      assert.deepEqual(
        won,
        Array.from({ length: STEPS }, (_, i) => i),
      );
      const upload = await store.getUpload(SESSION);
      assert.equal(upload?.offset, STEPS);
      const last = results.find((r) => r.wins.includes(STEPS - 1));
      assert.deepEqual(upload?.state, { winner: last?.label, offset: STEPS - 1 });
      // More than one process won: they really raced side by side.
      const winners = results.filter((r) => r.wins.length > 0);
      assert.ok(winners.length >= 2, `wins: ${results.map((r) => `${r.label}=${r.wins.length}/${r.attempts}`)}`);
      assert.ok(await store.resolveTag('contended', 'latest'));
      assert.equal((await store.listTags('contended')).length, 6);
    } finally {
      await store.close();
    }
  });
});
