// The shared BlobStore contract on a real S3: one bucket per run, one prefix per test.
import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { describeBlobStore } from '@berthjs/testkit';
import { createBucket, deleteBucket, emptyBucket, listKeys, listUploads, requireS3, s3Client, storeFor } from './s3-env.js';

const env = requireS3();

if (env) {
  let client: S3Client;
  let bucket: string;
  before(async () => {
    client = s3Client(env);
    bucket = await createBucket(client, 'contract');
  });
  after(async () => {
    if (bucket) await deleteBucket(client, bucket);
    client?.destroy();
  });

  describeBlobStore('s3', async () => {
    const prefix = `t-${randomBytes(4).toString('hex')}/`;
    const open = () => storeFor(env, bucket, { prefix, redirect: true });
    return {
      store: open(),
      cleanup: () => emptyBucket(client, bucket, prefix),
      // Open multipart uploads and staging objects: what an abandoned session would leave.
      listUploads: async () => [
        ...(await listUploads(client, bucket, prefix)).map((u) => u.key),
        ...(await listKeys(client, bucket, `${prefix}uploads/`)),
      ],
      reopen: async () => open(),
      // The bucket goes away (this test's prefix is the only thing in it) and comes back empty.
      breakStorage: async () => {
        await deleteBucket(client, bucket);
        return async () => {
          await client.send(new CreateBucketCommand({ Bucket: bucket }));
        };
      },
    };
  });
}
