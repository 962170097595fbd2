// The memory stores pass the same contract suites as the fs, S3 and SQL stores, bare and behind
// a Faults wrapper with no rule armed (the wrapper must be invisible).
import { describeBlobStore, describeMetadataStore, Faults, MemoryBlobStore, MemoryMetadataStore } from '../src/index.js';

describeBlobStore('memory', async () => {
  const store = new MemoryBlobStore();
  return {
    store,
    cleanup: async () => {},
    listUploads: () => store.listUploads(),
    reopen: async () => store.replica(),
    breakStorage: async () => {
      const restore = store.outage();
      return async () => restore();
    },
  };
});

describeMetadataStore('memory', async () => {
  const store = new MemoryMetadataStore();
  return { store, cleanup: () => store.close(), reopen: async () => store.replica() };
});

describeBlobStore('memory behind Faults', async () => {
  const store = new MemoryBlobStore();
  const faults = new Faults();
  return {
    store: faults.wrap(store),
    cleanup: async () => {},
    listUploads: () => store.listUploads(),
    reopen: async () => faults.wrap(store.replica()),
    // Through the wrapper: the store's own outage, not a rule (a rule would only test the wrapper).
    breakStorage: async () => {
      const restore = store.outage();
      return async () => restore();
    },
  };
});

describeMetadataStore('memory behind Faults', async () => {
  const store = new Faults().wrap(new MemoryMetadataStore());
  return { store, cleanup: () => store.close(), reopen: async () => store.replica() };
});
