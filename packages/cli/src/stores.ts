import { randomUUID } from 'node:crypto';
import { mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobStore, RegistryOptions } from '@berthjs/core';
import { createSqlMetadataStore, type SqlMetadataStore } from '@berthjs/metadata-sql';
import { FsBlobStore } from '@berthjs/storage-fs';
import type { S3BlobStore } from '@berthjs/storage-s3';
import type { Logger } from 'pino';
import { ConfigError, redactUrl, type ServeConfig } from './config.js';

/** How long start-up checks retry a store that does not answer yet (replicas may start before it). */
const STARTUP_RETRY_MS = 10_000;

/**
 * The S3 bucket (it must take a write), the data directory (when anything lives there), then the
 * metadata store (a Postgres server must answer), each checked before the next is made; S3 and
 * Postgres are retried for a few seconds while they do not answer at all.
 */
export async function openStores(config: ServeConfig, log?: Logger): Promise<{ blobs: BlobStore; metadata: SqlMetadataStore }> {
  let s3: S3BlobStore | undefined;
  if (config.s3) {
    // Imported only when used: the AWS SDK adds ~24 MB of RSS to every process that loads it.
    // Credentials are left to the AWS default chain (env, profile, SSO, IMDS, IRSA).
    const { S3AccessError, S3BlobStore } = await import('@berthjs/storage-s3');
    const store = new S3BlobStore(config.s3);
    try {
      await retrying(
        () => store.checkAccess(),
        (error) => error instanceof S3AccessError && error.retryable,
        (error) => log?.warn({ err: error }, 'S3 does not answer yet; retrying'),
      );
    } catch (error) {
      await store.close();
      throw new ConfigError(`--s3-bucket: ${error instanceof Error ? error.message : String(error)}`);
    }
    s3 = store;
  }
  const usesDataDir = !config.s3 || !config.databaseUrl || (config.token && !config.token.keyFile);
  if (usesDataDir)
    await prepareDataDir(config.dataDir).catch(async (error) => {
      await s3?.close();
      throw error;
    });
  let metadata: SqlMetadataStore;
  try {
    metadata = config.databaseUrl
      ? await retrying(
          () => createSqlMetadataStore({ url: config.databaseUrl, schema: config.databaseSchema }),
          (error) => (error as Error)?.name === 'UnavailableError',
          (error) => log?.warn({ err: error }, 'Postgres does not answer yet; retrying'),
        )
      : await createSqlMetadataStore({ filename: join(config.dataDir, 'berth.sqlite') });
  } catch (error) {
    await s3?.close();
    const setting = config.databaseUrl ? `--database-url ${redactUrl(config.databaseUrl)}` : `--data-dir ${config.dataDir}`;
    throw new ConfigError(`${setting}: cannot open the database: ${error instanceof Error ? error.message : String(error)}`);
  }
  const blobs = s3 ?? new FsBlobStore({ root: join(config.dataDir, 'blobs') });
  return { blobs, metadata };
}

/** Create the data directory and prove it takes a file, or say which path failed and why. */
async function prepareDataDir(dir: string): Promise<void> {
  const step = async (what: string, work: () => Promise<unknown>) => {
    try {
      await work();
    } catch (error) {
      const { code, message } = error as NodeJS.ErrnoException;
      throw new ConfigError(`--data-dir ${dir}: cannot ${what}: ${code ?? message}`);
    }
  };
  await step('create it', () => mkdir(dir, { recursive: true }));
  const probe = join(dir, `.berth-write-check-${process.pid}-${randomUUID()}`);
  await step('write to it', async () => {
    const handle = await open(probe, 'wx');
    await handle.close();
    await unlink(probe);
  });
}

/** Run `attempt` until it succeeds, fails for good, or STARTUP_RETRY_MS have passed. */
async function retrying<T>(
  attempt: () => Promise<T>,
  transient: (error: unknown) => boolean,
  onRetry: (error: unknown) => void,
): Promise<T> {
  const deadline = Date.now() + STARTUP_RETRY_MS;
  for (let delay = 250; ; delay = Math.min(delay * 2, 2000)) {
    try {
      return await attempt();
    } catch (error) {
      if (!transient(error) || Date.now() + delay > deadline) throw error;
      onRetry(error);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
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
