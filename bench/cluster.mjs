// Berth as stateless replicas behind one port: node:cluster forks N workers, each running the
// built `berth serve` registry on the same port over the same data dir and SQLite database.
// The primary only hands accepted connections to workers (round-robin); all protocol work is in
// the workers. Usage: node bench/cluster.mjs <workers> <berth serve flags...>
import cluster from 'node:cluster';
import { createRequire } from 'node:module';

// The settings of the `berth` command (packages/cli/src/runtime.cts). In the primary it sets
// UV_THREADPOOL_SIZE before the workers start (an ESM entry has started its own pool already).
createRequire(import.meta.url)('../packages/cli/dist/runtime.cjs').tuneRuntime();

const [count, ...args] = process.argv.slice(2);

if (cluster.isPrimary) {
  const workers = Array.from({ length: Number(count) || 2 }, () => cluster.fork());
  let listening = 0;
  for (const worker of workers) {
    worker.on('message', (message) => {
      if (message !== 'listening' || ++listening < workers.length) return;
      // One line for the benchmark: every pid whose memory counts.
      process.stdout.write(`${JSON.stringify({ msg: 'cluster ready', pids: [process.pid, ...workers.map((w) => w.process.pid)] })}\n`);
    });
    worker.on('exit', (code, signal) => {
      if (!stopping) {
        process.stderr.write(`worker ${worker.process.pid} exited (${code ?? signal})\n`);
        process.exit(1);
      }
    });
  }
  let stopping = false;
  const stop = () => {
    stopping = true;
    for (const worker of workers) worker.process.kill('SIGTERM');
    Promise.all(workers.map((w) => new Promise((resolve) => (w.isDead() ? resolve() : w.once('exit', resolve))))).then(() =>
      process.exit(0),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} else {
  // Loaded in workers only: the primary just hands out connections and stays small.
  const { parseServeConfig } = await import('../packages/cli/dist/config.js');
  const { serve } = await import('../packages/cli/dist/serve.js');
  const running = await serve(parseServeConfig(args));
  process.send('listening');
  const stop = () =>
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
