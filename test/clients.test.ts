import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnBerth } from './support/cli.js';
import { describeClients } from './support/clients-suite.js';

// skopeo, podman and buildah against `berth serve` started as the README says (fs + SQLite).
// Another backend is one more describeClients call with its own start function.
describeClients('berth serve (fs + SQLite)', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'berth-clients-data-'));
  const berth = await spawnBerth(['--data-dir', dataDir]);
  return {
    host: new URL(berth.url).host,
    async stop() {
      await berth.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
});
