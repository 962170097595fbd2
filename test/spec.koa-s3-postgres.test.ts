import { requireS3 } from '@berthjs/storage-s3/testing';
import { describeRestart, describeSpec } from './support/spec-suite.js';
import { s3PostgresStores } from './support/stores.js';

// Skipped with a message without S3_ENDPOINT on a laptop; a failure in CI (see requireS3).
if (requireS3()) {
  describeSpec('koa + s3 + postgres', 'koa', s3PostgresStores);
  describeRestart('koa + s3 + postgres', 'koa', s3PostgresStores);
}
