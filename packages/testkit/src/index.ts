export { describeBlobStore } from './blob-store.contract.js';
export type { BlobStoreFactory } from './blob-store.contract.js';
export { describeMetadataStore } from './metadata-store.contract.js';
export type { MetadataStoreFactory } from './metadata-store.contract.js';
