// CommonJS so that the `berth` launcher (bin.cts) can load it before anything asynchronous runs.
import v8 = require('node:v8');

/**
 * Process-wide settings for a process that serves Berth, measured with `pnpm bench`. Call it
 * before anything uses libuv's threadpool: the pool reads its size once, when it starts.
 */
function tuneRuntime(): void {
  // Blob bodies stream through short-lived Buffers whose external memory makes V8 start
  // incremental marking over and over (a full mark-compact every few MiB); scavenges alone free
  // them. Pull CPU 1.75 -> 0.70 s/GiB, push 2.9 -> 2.1. The heap is small, so the occasional
  // non-incremental mark-compact stays short. Safe at runtime: Node keeps flags unfrozen.
  v8.setFlagsFromString('--no-incremental-marking');
  // Every file operation runs on the threadpool, 4 threads by default. The fs store's background
  // fdatasyncs (10-15 ms each, one per upload in flight) can hold all four, so a PATCH's open
  // and stat queue behind them: 8 MiB chunked pushes ran 9 % faster with 16 threads, monolithic
  // pushes 4 %. An idle thread costs a stack, nothing else. The operator's own value wins.
  process.env.UV_THREADPOOL_SIZE ??= '16';
}

export = { tuneRuntime };
