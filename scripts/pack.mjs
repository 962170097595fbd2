#!/usr/bin/env node
// Packs every published package (packages/*) with `pnpm pack`, exactly as `pnpm publish` would
// (workspace: ranges replaced, publishConfig applied), checks what each tarball holds, and keeps
// the README's list of tarball contents in step with it.
//
// Usage: node scripts/pack.mjs [--out DIR] [--write-readme | --check-readme]
//   --out DIR        where the tarballs go (default: a fresh temp dir); prints { name: path } as JSON
//   --write-readme   rewrite the README's tarball list from what was packed
//   --check-readme   fail when the README's list differs from what was packed
// Run `pnpm build` first: the tarballs hold dist/.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: { out: { type: 'string' }, 'write-readme': { type: 'boolean' }, 'check-readme': { type: 'boolean' } },
});
const out = values.out ?? mkdtempSync(join(tmpdir(), 'berth-packs-'));
const START = '<!-- tarballs:start (scripts/pack.mjs --write-readme) -->';
const END = '<!-- tarballs:end -->';

const license = readFileSync(join(root, 'LICENSE'));
const problems = [];
const packed = [];
for (const dir of readdirSync(join(root, 'packages')).sort()) {
  const cwd = join(root, 'packages', dir);
  const manifest = JSON.parse(readFileSync(join(cwd, 'package.json'), 'utf8'));
  if (manifest.private) continue;
  const result = JSON.parse(execFileSync('pnpm', ['pack', '--json', '--pack-destination', out], { cwd, encoding: 'utf8' }));
  const listing = execFileSync('tar', ['-tvzf', result.filename], { encoding: 'utf8' }).trim().split('\n');
  const files = listing.map((line) => {
    const fields = line.trim().split(/\s+/);
    return {
      path: fields
        .slice(5)
        .join(' ')
        .replace(/^package\//, ''),
      size: Number(fields[2]),
    };
  });
  packed.push({ name: manifest.name, dir, filename: result.filename, packedBytes: result.size ?? 0, files });

  const read = (path) => execFileSync('tar', ['-xzOf', result.filename, `package/${path}`]);
  const paths = new Set(files.map((f) => f.path));
  for (const needed of ['package.json', 'README.md', 'LICENSE']) {
    if (!paths.has(needed)) problems.push(`${manifest.name}: no ${needed} in the tarball`);
  }
  if (paths.has('LICENSE') && !read('LICENSE').equals(license)) problems.push(`${manifest.name}: LICENSE differs from the root LICENSE`);
  for (const { path } of files) {
    if (/(^|\/)(src|test)\/|\.map$|\.tsbuildinfo$|\.test\./.test(path)) problems.push(`${manifest.name}: ${path} is not for users`);
  }
  const published = JSON.parse(read('package.json').toString());
  const ranges = JSON.stringify([published.dependencies, published.optionalDependencies, published.peerDependencies]);
  if (ranges.includes('workspace:')) problems.push(`${manifest.name}: a workspace: range survived packing`);
  if (JSON.stringify(published.exports ?? {}).includes('"source"')) problems.push(`${manifest.name}: exports point at TypeScript sources`);
  for (const target of exportTargets(published.exports)) {
    if (!paths.has(target.replace(/^\.\//, ''))) problems.push(`${manifest.name}: exports name ${target}, which is not in the tarball`);
  }
}

const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
const listingMarkdown = [
  '| package | tarball | unpacked | files |',
  '|---|---:|---:|---|',
  ...packed.map(({ name, packedBytes, files }) => {
    const total = files.reduce((sum, f) => sum + f.size, 0);
    return `| \`${name}\` | ${kib(packedBytes)} | ${kib(total)} | ${summarize(files.map((f) => f.path))} |`;
  }),
].join('\n');

const readmePath = join(root, 'README.md');
const readme = readFileSync(readmePath, 'utf8');
const start = readme.indexOf(START);
const end = readme.indexOf(END);
if (values['write-readme'] || values['check-readme']) {
  if (start < 0 || end < start) problems.push(`README.md has no ${START} ... ${END} block`);
  else if (values['write-readme']) {
    writeFileSync(readmePath, `${readme.slice(0, start + START.length)}\n${listingMarkdown}\n${readme.slice(end)}`);
  } else if (stripSizes(readme.slice(start + START.length, end).trim()) !== stripSizes(listingMarkdown)) {
    problems.push('README.md lists other tarball contents than packed: run node scripts/pack.mjs --write-readme');
  }
}

if (problems.length > 0) {
  for (const problem of problems) console.error(`pack: ${problem}`);
  process.exit(1);
}
console.log(JSON.stringify(Object.fromEntries(packed.map((p) => [p.name, p.filename])), null, 2));

/** Every file path an `exports` map points at. */
function exportTargets(exports) {
  if (typeof exports === 'string') return [exports];
  if (!exports || typeof exports !== 'object') return [];
  return Object.values(exports).flatMap(exportTargets);
}

/**
 * One entry per top-level file, and per top-level directory and extension (`dist`, any depth,
 * `.js`), so the table stays short and a new module does not change it (a new kind of file does).
 */
function summarize(paths) {
  const keys = paths.sort().map((path) => {
    const parts = path.split('/');
    if (parts.length === 1) return path;
    const ext = /(\.d)?\.[a-z]+$/.exec(parts.at(-1))?.[0] ?? '';
    return `${parts[0]}/**/*${ext}`;
  });
  return [...new Set(keys)].map((key) => `\`${key}\``).join(', ');
}

/** Sizes move with every change to the code; the check is about which files ship. */
function stripSizes(markdown) {
  return markdown
    .split('\n')
    .map((line) => line.replace(/\| [\d.]+ KiB \| [\d.]+ KiB \|/, '| |'))
    .join('\n');
}
