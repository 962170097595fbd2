export { S3AccessError } from './access-check.js';
export { S3BlobStore } from './s3-blob-store.js';
export type { S3BlobStoreOptions } from './options.js';
export type { S3UploadState } from './upload-state.js';
export { MAX_PARTS, MAX_PART_SIZE, MIN_PART_SIZE, choosePartSize, partSizeFor } from './multipart.js';
export type { PartRecord } from './multipart.js';
