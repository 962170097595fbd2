import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import Module, { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createSqlMetadataStore } from '../src/index.js';

// The drivers are optional peer dependencies; what a user without one sees is the point here.
// Node resolves every require() through Module._resolveFilename, so this is how "not installed"
// (and "installed without its addon") is staged without uninstalling anything.
type Resolve = (request: string, ...rest: unknown[]) => string;
const modules = Module as unknown as { _resolveFilename: Resolve };
const realResolve = modules._resolveFilename;
const require = createRequire(import.meta.url);
const unbuilt = fileURLToPath(new URL('./fixtures/unbuilt-better-sqlite3.cjs', import.meta.url));

function staging(replace: Record<string, string | null>, run: () => Promise<void>): Promise<void> {
  // Node remembers what a require() resolved to while that module stays cached: forget the real ones.
  for (const request of Object.keys(replace)) {
    try {
      delete require.cache[require.resolve(request)];
    } catch {
      // not installed here: nothing cached
    }
  }
  modules._resolveFilename = function (this: unknown, request, ...rest) {
    if (request in replace) {
      const target = replace[request];
      if (target === null)
        throw Object.assign(new Error(`Cannot find module '${request}'\nRequire stack:\n- x`), { code: 'MODULE_NOT_FOUND' });
      return target;
    }
    return realResolve.call(this, request, ...rest);
  };
  return run().finally(() => {
    modules._resolveFilename = realResolve;
    // Forget the stand-ins, so the next require() resolves the real package again.
    for (const target of Object.values(replace)) if (target) delete require.cache[target];
  });
}

describe('optional database drivers', () => {
  let dir: string;
  after(() => dir && rm(dir, { recursive: true, force: true }));

  it('Postgres without pg: an error naming the package to install', () =>
    staging({ pg: null }, async () => {
      await assert.rejects(createSqlMetadataStore({ url: 'postgres://postgres@127.0.0.1:5432/test' }), {
        message: 'Postgres metadata (a postgres:// url) needs the "pg" package, which is not installed: npm install pg',
      });
    }));

  it('SQLite without better-sqlite3: an error naming the package to install', async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-drivers-'));
    await staging({ 'better-sqlite3': null }, async () => {
      await assert.rejects(createSqlMetadataStore({ filename: join(dir, 'a.sqlite') }), {
        message:
          'SQLite metadata (the embedded default) needs the "better-sqlite3" package, which is not installed: npm install better-sqlite3',
      });
    });
  });

  it('better-sqlite3 whose addon was never built: says how to build it', () =>
    staging({ 'better-sqlite3': unbuilt }, async () => {
      await assert.rejects(createSqlMetadataStore({ filename: join(dir, 'b.sqlite') }), (err: Error) => {
        assert.match(
          err.message,
          /^better-sqlite3 is installed but its native addon does not load \(Could not locate the bindings file\. Tried:\)/,
        );
        assert.match(err.message, /npm rebuild better-sqlite3/);
        assert.match(err.message, /pnpm approve-builds/);
        return true;
      });
    }));

  // better-sqlite3 13 is refused on Node 20 (its addon would crash the process as it loads) and
  // accepted on Node 22 and later: each CI leg checks its side.
  const node = Number(process.versions.node.split('.')[0]);
  it(`better-sqlite3 13 on Node ${node}: ${node < 22 ? 'refused with the version to install' : 'opens'}`, () =>
    staging({ 'better-sqlite3/package.json': fileURLToPath(new URL('./fixtures/better-sqlite3-13.json', import.meta.url)) }, async () => {
      const opening = createSqlMetadataStore({ filename: join(dir, 'd.sqlite') });
      if (node >= 22) return (await opening).close();
      await assert.rejects(opening, {
        message: `better-sqlite3 13.0.0 needs Node 22 or later (this is Node ${process.versions.node}): npm install better-sqlite3@12`,
      });
    }));

  it('with the driver installed, the store opens', async () => {
    const store = await createSqlMetadataStore({ filename: join(dir, 'c.sqlite') });
    await store.close();
  });
});
