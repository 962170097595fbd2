export * from './blob-store.js';
export * from './metadata-store.js';
export * from './errors.js';
