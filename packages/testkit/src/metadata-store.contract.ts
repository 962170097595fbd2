// Placeholder: the shared MetadataStore contract suite is being written.
import type { MetadataStore } from '@berth/core';
export type MetadataStoreFactory = () => Promise<{ store: MetadataStore; cleanup: () => Promise<void> }>;
export function describeMetadataStore(_name: string, _factory: MetadataStoreFactory): void {}
