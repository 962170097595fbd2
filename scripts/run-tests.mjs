#!/usr/bin/env node
// Runs every *.test.ts in the workspace with node:test, straight from TypeScript sources
// (tsx loader + the "source" export condition), so `pnpm test` needs no build step.
// Usage: pnpm test [substring ...]   (only test files whose path contains one of the substrings)
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const skip = new Set(['node_modules', 'dist', '.git', 'data']);

function find(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (skip.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) find(path, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, path));
  }
  return out;
}

const filters = process.argv.slice(2);
const files = ['packages', 'test', 'examples']
  .filter((dir) => existsSync(join(root, dir)))
  .flatMap((dir) => find(join(root, dir)))
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error('no test files match', filters);
  process.exit(1);
}
const args = ['--conditions=source', '--import', 'tsx', '--test', '--test-concurrency=2', ...files];
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(signal ? 1 : (code ?? 1)));
