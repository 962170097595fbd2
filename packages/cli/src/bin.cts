#!/usr/bin/env node
// The `berth` command. CommonJS on purpose: Node reads an ESM entry point through libuv's
// threadpool, which starts the pool (and fixes its size) before the entry's first line runs.
// A CommonJS entry runs first, so tuneRuntime can still size the pool; then the ESM CLI loads.
import runtime = require('./runtime.cjs');

runtime.tuneRuntime();
import('./main.js').then(
  ({ main }) => main(process.argv.slice(2)),
  (error: unknown) => {
    process.stderr.write(`berth: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
