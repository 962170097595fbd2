import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeBlobStore } from '@berthjs/testkit';
import { FsBlobStore } from '@berthjs/storage-fs';

describeBlobStore('fs', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-fs-contract-'));
  const store = new FsBlobStore({ root });
  return {
    store,
    cleanup: () => rm(root, { recursive: true, force: true }),
    listUploads: () => store.listUploads(),
    // A second replica sharing the directory (e.g. an NFS mount or a shared volume).
    reopen: async () => new FsBlobStore({ root }),
  };
});
