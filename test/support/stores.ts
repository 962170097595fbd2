import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { BlobStore, MetadataStore } from '@berthjs/core';
import { FsBlobStore } from '@berthjs/storage-fs';
import { createSqlMetadataStore } from '@berthjs/metadata-sql';
import { S3BlobStore } from '@berthjs/storage-s3';
import { createBucket, deleteBucket, listKeys, s3Client, s3TestEnv } from '@berthjs/storage-s3/testing';

export const POSTGRES_URL = process.env.BERTH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface StoreSet {
  /** Open (or reopen, after a simulated restart) stores over the same data. */
  open(): Promise<{ blobs: BlobStore; metadata: MetadataStore }>;
  /** Remove every trace of the data. */
  destroy(): Promise<void>;
  /** Every file (fs: below the blob store's root) or object (S3: in the bucket) the blob store holds. */
  stored(): Promise<string[]>;
}

/** Files below `dir`, as paths relative to it. */
async function filesBelow(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

/** fs blobs + embedded SQLite metadata in one temp data directory. */
export async function embeddedStores(): Promise<StoreSet> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-spec-'));
  return {
    async open() {
      return {
        blobs: new FsBlobStore({ root: join(dir, 'blobs') }),
        metadata: await createSqlMetadataStore({ filename: join(dir, 'berth.db') }),
      };
    },
    destroy: () => rm(dir, { recursive: true, force: true }),
    stored: () => filesBelow(join(dir, 'blobs')),
  };
}

/** fs blobs + Postgres metadata in a fresh schema of its own. */
export async function postgresStores(): Promise<StoreSet> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-spec-'));
  const schema = `berth_spec_${randomBytes(6).toString('hex')}`;
  return {
    async open() {
      return {
        blobs: new FsBlobStore({ root: join(dir, 'blobs') }),
        metadata: await createSqlMetadataStore({ url: POSTGRES_URL, schema }),
      };
    },
    async destroy() {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
      await rm(dir, { recursive: true, force: true });
    },
    stored: () => filesBelow(join(dir, 'blobs')),
  };
}

/** Drop a schema made by a test run. */
export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/**
 * S3 blobs in a bucket of this run's own (created here, deleted with everything in it by
 * `destroy`) + Postgres metadata in a fresh schema. Needs S3_ENDPOINT (see `requireS3`).
 */
export async function s3PostgresStores(): Promise<StoreSet> {
  const env = s3TestEnv();
  if (!env) throw new Error('s3PostgresStores: S3_ENDPOINT is not set');
  const admin = s3Client(env);
  const bucket = await createBucket(admin, 'spec');
  const schema = `berth_spec_${randomBytes(6).toString('hex')}`;
  return {
    async open() {
      return {
        blobs: new S3BlobStore({
          bucket,
          endpoint: env.endpoint,
          region: env.region,
          forcePathStyle: true,
          credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
          // The smallest part S3 allows, so that modest test blobs already span several parts.
          partSize: 5 * 1024 * 1024,
        }),
        metadata: await createSqlMetadataStore({ url: POSTGRES_URL, schema }),
      };
    },
    async destroy() {
      try {
        await deleteBucket(admin, bucket);
        await dropSchema(schema);
      } finally {
        admin.destroy();
      }
    },
    stored: () => listKeys(admin, bucket),
  };
}
