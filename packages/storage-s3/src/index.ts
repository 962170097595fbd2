export { S3BlobStore } from './s3-blob-store.js';
export type { S3BlobStoreOptions, S3UploadState, SweepResult } from './s3-blob-store.js';
export { MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE, choosePartSize, partSizeFor } from './multipart.js';
export type { PartRecord } from './multipart.js';
