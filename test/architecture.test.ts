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
    // lru-cache bounds the core's caches in bytes; it has no dependencies of its own.
    const allowed = new Set(['lru-cache']);
    // The Node writer sends file-range bodies with sendfile(2) where the addon loads; optional.
    const optional = new Set(['@berthjs/sendfile']);
    const imports = /(?:from\s+|import\()['"]([^'"]+)['"]/g;
    for (const file of sources(join(packages, 'core', 'src'))) {
      for (const [, spec] of readFileSync(file, 'utf8').matchAll(imports)) {
        const ok = spec.startsWith('.') || spec.startsWith('node:') || allowed.has(spec) || optional.has(spec);
        assert.ok(ok, `${file} imports ${spec}`);
      }
    }
    const manifest = JSON.parse(readFileSync(join(packages, 'core', 'package.json'), 'utf8'));
    assert.deepEqual(Object.keys(manifest.dependencies ?? {}), [...allowed]);
    assert.deepEqual(Object.keys(manifest.optionalDependencies ?? {}), [...optional]);
  });

  it('keeps each adapter small (≤ 80 lines)', () => {
    for (const adapter of ['koa', 'express']) {
      const lines = readFileSync(join(packages, adapter, 'src', 'index.ts'), 'utf8').split('\n').length;
      assert.ok(lines <= 80, `${adapter} adapter has ${lines} lines`);
    }
  });
});
