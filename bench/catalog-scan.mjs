#!/usr/bin/env node
// `_catalog` with many repositories and a caller who may see few of them: token auth (the token
// names one repository), an `authorize` that hides all but one team, and one that allows all.
// Runs in process on the built packages (`pnpm build` first), SQLite filled directly.
// Usage: node bench/catalog-scan.mjs [--repos 20000] [--runs 21]
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { createTokenEndpoint, tokenAuth } from '../packages/auth/dist/index.js';
import { createRegistry } from '../packages/core/dist/index.js';
import { createSqlMetadataStore } from '../packages/metadata-sql/dist/index.js';
import { FsBlobStore } from '../packages/storage-fs/dist/index.js';

const { values: opts } = parseArgs({ options: { repos: { type: 'string', default: '20000' }, runs: { type: 'string', default: '21' } } });
const count = Number(opts.repos);
const runs = Number(opts.runs);
const Database = createRequire(new URL('../packages/metadata-sql/package.json', import.meta.url))('better-sqlite3');

const dir = await mkdtemp(join(tmpdir(), 'berth-catalog-'));
const filename = join(dir, 'berth.db');
await (await createSqlMetadataStore({ filename })).close();
const db = new Database(filename);
const insert = db.prepare('INSERT INTO repositories (name, created_at) VALUES (?, ?)');
const name = (i) => `team${String(i % 100).padStart(3, '0')}/app${String(i).padStart(6, '0')}`;
db.transaction(() => {
  for (let i = 0; i < count; i++) insert.run(name(i), Date.now());
})();
db.close();

const request = (url, headers = {}) => ({ method: 'GET', url, headers, body: Readable.from([]) });
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const tokens = createTokenEndpoint({
  signingKey: { key: privateKey },
  service: 's',
  issuer: 'i',
  authenticate: () => ({ username: 'u' }),
  authorize: () => true,
});
// team050: half way through the sorted names, whatever the count.
const target = name(Math.floor(count / 2) + 50);
const token = JSON.parse(String((await tokens.handle(request(`/token?scope=repository:${target}:pull`))).body)).token;
const team = target.split('/')[0];
const setups = {
  'token (1 repository)': [
    tokenAuth({ realm: 'r', service: 's', issuer: 'i', keys: [{ key: privateKey }] }),
    { authorization: `Bearer ${token}` },
  ],
  [`authorize: ${team}/ only`]: [
    { authenticate: () => ({}), authorize: ({ repository }) => repository.startsWith(`${team}/`) },
    { authorization: 'x' },
  ],
  'authorize: all': [{ authenticate: () => ({}), authorize: () => true }, { authorization: 'x' }],
};
console.log(`${count} repositories, ${runs} runs each, median (min) per request`);
for (const [label, [auth, headers]] of Object.entries(setups)) {
  const registry = createRegistry({
    blobs: new FsBlobStore({ root: join(dir, 'blobs') }),
    metadata: await createSqlMetadataStore({ filename }),
    ...auth,
  });
  for (const url of ['/v2/_catalog?n=1', '/v2/_catalog?n=100', '/v2/_catalog']) {
    const times = [];
    let res;
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      res = await registry.handle(request(url, headers));
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    const names = JSON.parse(String(res.body)).repositories.length;
    const ms = `${times[Math.floor(runs / 2)].toFixed(1)} ms (${times[0].toFixed(1)})`;
    console.log(`${label.padEnd(24)} ${url.padEnd(18)} ${ms.padStart(20)}  ${names} names${res.headers.Link ? ', Link' : ''}`);
  }
  await registry.close();
}
await rm(dir, { recursive: true, force: true });
