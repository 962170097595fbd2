// One garbage collection over a stack seeded by bench/gc.mjs, in a process of its own so that its
// peak RSS and CPU time are the collection's. argv[2]: { config, options } as JSON. Prints JSON:
// the report, the total and per-phase milliseconds, time and count of every store call, peak RSS.
//
// Phases are cut where the collector first calls the method that starts each one
// (listRepositories, listCollectableBlobs, BlobStore.listBlobs); before that is the lease and the
// upload sweep. Store calls are timed through a Proxy; the collection makes them one at a time.
import { createRegistry } from '@berthjs/core';
import { openStores } from './gc.mjs';

const PHASE_STARTS = { listRepositories: 'repositories', listCollectableBlobs: 'blobs', listBlobs: 'orphans' };

const { config, options } = JSON.parse(process.argv[2]);
const calls = {};
const phaseStarts = {};
let t0 = 0;

function timed(store, side) {
  const add = (name, ms) => {
    const entry = (calls[`${side}.${name}`] ??= { calls: 0, ms: 0 });
    entry.calls++;
    entry.ms += ms;
  };
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      return (...args) => {
        if (t0 && PHASE_STARTS[prop] && phaseStarts[PHASE_STARTS[prop]] === undefined)
          phaseStarts[PHASE_STARTS[prop]] = performance.now() - t0;
        const start = performance.now();
        const result = value.apply(target, args);
        if (typeof result?.then === 'function') return result.finally(() => add(prop, performance.now() - start));
        if (typeof result?.[Symbol.asyncIterator] === 'function') return timedIteration(result, (ms) => add(prop, ms));
        return result;
      };
    },
  });
}

/** Time spent waiting for each item of an async iterable, summed. */
async function* timedIteration(iterable, add) {
  const iterator = iterable[Symbol.asyncIterator]();
  for (;;) {
    const start = performance.now();
    const next = await iterator.next();
    add(performance.now() - start);
    if (next.done) return;
    yield next.value;
  }
}

const stores = await openStores(config);
const registry = createRegistry({
  blobs: timed(stores.blobs, 'blobs'),
  metadata: timed(stores.metadata, 'metadata'),
  tenantOf: (repository) => repository.split('/')[0],
});
const rssBefore = process.memoryUsage.rss();
const cpuBefore = process.cpuUsage();
t0 = performance.now();
const report = await registry.collectGarbage(options);
const totalMs = performance.now() - t0;
const cpu = process.cpuUsage(cpuBefore);
await registry.close();

const order = ['uploads', 'repositories', 'blobs', 'orphans'];
const starts = { uploads: 0, ...phaseStarts };
const phases = {};
for (const [i, phase] of order.entries()) {
  const end = order.slice(i + 1).find((p) => starts[p] !== undefined);
  if (starts[phase] !== undefined) phases[phase] = (end ? starts[end] : totalMs) - starts[phase];
}
process.stdout.write(
  JSON.stringify({
    report,
    totalMs,
    phases,
    calls,
    cpuMs: (cpu.user + cpu.system) / 1000,
    rssBefore,
    // resourceUsage().maxRSS is in KiB: the process's peak, opening the stores included.
    peakRss: process.resourceUsage().maxRSS * 1024,
  }),
);
