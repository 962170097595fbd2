import { randomBytes } from 'node:crypto';
import { s3ServeEnv, spawnBerth } from './support/cli.js';
import { describeClients } from './support/clients-suite.js';
import { createBucket, deleteBucket, requireS3, s3Client } from '@berthjs/storage-s3/testing';
import { dropSchema, POSTGRES_URL } from './support/stores.js';

// The same real clients against `berth serve` on S3 blobs + Postgres metadata (a bucket and a
// schema of its own). In CI a missing S3 fails the run; on a laptop it skips with a message.
const s3 = requireS3();
if (s3) {
  describeClients('berth serve (S3 + Postgres)', async () => {
    const admin = s3Client(s3);
    const bucket = await createBucket(admin, 'clients');
    const schema = `berth_clients_${randomBytes(5).toString('hex')}`;
    const berth = await spawnBerth(['--database-url', POSTGRES_URL], { ...s3ServeEnv(s3, bucket, schema), BERTH_LOG_LEVEL: 'info' });
    return {
      host: new URL(berth.url).host,
      async stop() {
        await berth.stop();
        await deleteBucket(admin, bucket);
        await dropSchema(schema);
        admin.destroy();
      },
    };
  });
}
