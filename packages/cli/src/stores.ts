import { join } from 'node:path';
import type { BlobStore, RegistryOptions } from '@berthjs/core';
import { createSqlMetadataStore, type SqlMetadataStore } from '@berthjs/metadata-sql';
import { FsBlobStore } from '@berthjs/storage-fs';
import type { ServeConfig } from './config.js';

/** The stores a configuration names: what `berth serve`, `berth gc` and `berth usage` work on. */
export async function openStores(config: ServeConfig): Promise<{ blobs: BlobStore; metadata: SqlMetadataStore }> {
  const metadata = await createSqlMetadataStore(
    config.databaseUrl ? { url: config.databaseUrl, schema: config.databaseSchema } : { filename: join(config.dataDir, 'berth.sqlite') },
  );
  // Credentials are left to the AWS default chain (env, profile, SSO, IMDS, IRSA).
  // Imported only when used: the AWS SDK adds ~24 MB of RSS to every process that loads it.
  const blobs = config.s3
    ? new (await import('@berthjs/storage-s3')).S3BlobStore(config.s3)
    : new FsBlobStore({ root: join(config.dataDir, 'blobs'), sendfile: config.sendfile });
  return { blobs, metadata };
}

/**
 * Registry options every command shares: a repository's first path segment is its tenant (usage
 * and `--quota` count per tenant; mounts stay within one), and the collection lease.
 */
export function registryOptions(config: ServeConfig): Omit<RegistryOptions, 'blobs' | 'metadata'> {
  const { quota } = config;
  return {
    tenantOf: (repository) => repository.split('/')[0],
    quotaOf: quota === undefined ? undefined : () => quota,
    gcLeaseMs: config.gc.leaseMs,
    uploadTtlMs: config.uploadTtlMs,
    uploadLeaseMs: config.uploadLeaseMs,
  };
}
