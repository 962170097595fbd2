// Placeholder: the shared BlobStore contract suite is being written.
import type { BlobStore } from '@berth/core';
export type BlobStoreFactory = () => Promise<{ store: BlobStore; cleanup: () => Promise<void> }>;
export function describeBlobStore(_name: string, _factory: BlobStoreFactory): void {}
