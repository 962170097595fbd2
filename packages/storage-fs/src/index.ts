export { FsBlobStore } from './fs-blob-store.js';
export type { FsBlobStoreOptions } from './fs-blob-store.js';
