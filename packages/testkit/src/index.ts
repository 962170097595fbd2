export { describeBlobStore } from './blob-store.contract.js';
export type { BlobStoreFactory } from './blob-store.contract.js';
export { describeMetadataStore } from './metadata-store.contract.js';
export type { MetadataStoreFactory } from './metadata-store.contract.js';
export { MemoryBlobStore, type BlobStoreSnapshot, type MemoryBlobStoreOptions } from './memory-blob-store.js';
export { MemoryMetadataStore, type MetadataStoreSnapshot } from './memory-metadata-store.js';
export { Faults, type FailOptions, type FaultMatch, type Hang, type StoreCall, type StoreMethod } from './faults.js';
export { FaultyBody, faultyBody, sendRaw, type BodyFault, type RawExchange, type RawRequest, type RawResponse } from './fault-body.js';
export { linkBlob } from './seed.js';
