import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const packages = fileURLToPath(new URL('../packages', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : name.endsWith('.ts') ? [path] : [];
  });
}

describe('architecture', () => {
  it('keeps the core free of web frameworks and storage drivers', () => {
    const imports = /from\s+['"]([^'"]+)['"]/g;
    // lru-cache bounds the core's caches in bytes; it has no dependencies of its own.
    const allowed = new Set(['lru-cache']);
    for (const file of sources(join(packages, 'core', 'src'))) {
      for (const [, spec] of readFileSync(file, 'utf8').matchAll(imports)) {
        assert.ok(spec.startsWith('.') || spec.startsWith('node:') || allowed.has(spec), `${file} imports ${spec}`);
      }
    }
    const manifest = JSON.parse(readFileSync(join(packages, 'core', 'package.json'), 'utf8'));
    assert.deepEqual(Object.keys(manifest.dependencies ?? {}), [...allowed]);
  });

  it('keeps each adapter small (≤ 80 lines)', () => {
    for (const adapter of ['koa', 'express']) {
      const lines = readFileSync(join(packages, adapter, 'src', 'index.ts'), 'utf8').split('\n').length;
      assert.ok(lines <= 80, `${adapter} adapter has ${lines} lines`);
    }
  });
});
