import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeBlobStore, Faults } from '@berthjs/testkit';
import { FsBlobStore } from '@berthjs/storage-fs';

/** The data directory disappears, as an unmounted volume would; the returned function puts it back. */
async function unmount(root: string): Promise<() => Promise<void>> {
  await rename(root, `${root}.gone`);
  return () => rename(`${root}.gone`, root);
}

describeBlobStore('fs', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-fs-contract-'));
  const store = new FsBlobStore({ root });
  return {
    store,
    cleanup: () => rm(root, { recursive: true, force: true }),
    listUploads: () => store.listUploads(),
    // A second replica sharing the directory (e.g. an NFS mount or a shared volume).
    reopen: async () => new FsBlobStore({ root }),
    // The volume goes away: the store must not quietly make an empty directory in its place.
    breakStorage: () => unmount(root),
  };
});

// The fault wrapper of @berthjs/testkit, with no rule armed, must be invisible around a real store.
describeBlobStore('fs behind Faults', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-fs-contract-'));
  const store = new FsBlobStore({ root });
  return {
    store: new Faults().wrap(store),
    cleanup: () => rm(root, { recursive: true, force: true }),
    listUploads: () => store.listUploads(),
    reopen: async () => new Faults().wrap(new FsBlobStore({ root })),
    breakStorage: () => unmount(root),
  };
});
