// The database drivers are optional peer dependencies: a Postgres user installs `pg`, a SQLite
// user `better-sqlite3` (a native addon), nobody needs both. Each is loaded when a store of its
// dialect is opened, from this package's own location (so it is the user's copy, whatever layout
// their package manager uses), and handed to knex, which would otherwise look from its own.
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';

const require = createRequire(import.meta.url);

/** The `pg` module, or an error naming the package to install. */
export function loadPg(): typeof pg {
  return loadOptional('pg', 'Postgres metadata (a postgres:// url)');
}

/**
 * The `better-sqlite3` module with its native addon loaded, or an error saying what to install or
 * rebuild. better-sqlite3 loads its addon only when the first database opens; opening one here
 * turns a blocked install script or a Node upgrade into a message at start instead of a stack
 * trace from inside knex's pool.
 */
let betterSqlite3: typeof BetterSqlite3 | undefined;

export function loadBetterSqlite3(): typeof BetterSqlite3 {
  if (betterSqlite3) return betterSqlite3;
  const Database = loadOptional<typeof BetterSqlite3>('better-sqlite3', 'SQLite metadata (the embedded default)');
  // better-sqlite3 13 needs Node 22; on Node 20 its addon crashes the process as it loads.
  const { version } = require('better-sqlite3/package.json') as { version: string };
  if (Number(version.split('.')[0]) >= 13 && Number(process.versions.node.split('.')[0]) < 22) {
    throw new Error(
      `better-sqlite3 ${version} needs Node 22 or later (this is Node ${process.versions.node}): npm install better-sqlite3@12`,
    );
  }
  try {
    new Database(':memory:').close();
  } catch (err) {
    const reason = String((err as Error).message).split('\n')[0];
    throw new Error(
      `better-sqlite3 is installed but its native addon does not load (${reason}). It is built by its install script: ` +
        'run `npm rebuild better-sqlite3` after switching Node versions; pnpm 10 and later skip install scripts unless ' +
        'allowed (`pnpm approve-builds`, or `allowBuilds` in pnpm-workspace.yaml).',
      { cause: err },
    );
  }
  betterSqlite3 = Database;
  return Database;
}

/** `require(name)`, or, when that package is not installed, an error saying so and what needs it. */
export function loadOptional<T>(name: string, usedFor: string): T {
  try {
    return require(name) as T;
  } catch (err) {
    const error = err as NodeJS.ErrnoException;
    // Only the driver itself missing; a broken install surfaces as it is.
    if (error.code === 'MODULE_NOT_FOUND' && error.message.startsWith(`Cannot find module '${name}'`)) {
      throw new Error(`${usedFor} needs the "${name}" package, which is not installed: npm install ${name}`, { cause: err });
    }
    throw err;
  }
}
