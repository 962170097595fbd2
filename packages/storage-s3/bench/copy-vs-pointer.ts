// Measures the two ways of making a completed multipart object readable under its digest:
// a server-side CopyObject of the whole blob versus an extra HEAD (pointer lookup) per read.
// Usage: eval "$(/work/shared/s3/start-rgw.sh)"; npx tsx packages/storage-s3/bench/copy-vs-pointer.ts [MiB]
import { randomBytes } from 'node:crypto';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  S3Client,
  UploadPartCopyCommand,
  CreateMultipartUploadCommand,
  CompleteMultipartUploadCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

const mib = Number(process.argv[2] ?? 256);
const client = new S3Client({
  endpoint: process.env.S3_ENDPOINT,
  region: process.env.S3_REGION ?? 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: process.env.S3_ACCESS_KEY!, secretAccessKey: process.env.S3_SECRET_KEY! },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});
const Bucket = `berth-bench-${Date.now()}`;
await client.send(new CreateBucketCommand({ Bucket }));
const part = randomBytes(8 << 20);
const body = Buffer.concat(Array.from({ length: mib / 8 }, () => part));
let t = performance.now();
await new Upload({ client, params: { Bucket, Key: 'src', Body: body }, partSize: 8 << 20, queueSize: 4 }).done();
console.log(`put ${mib} MiB (lib-storage, 8 MiB parts): ${(performance.now() - t).toFixed(0)} ms`);

for (let i = 0; i < 3; i++) {
  t = performance.now();
  await client.send(new CopyObjectCommand({ Bucket, Key: `copy-${i}`, CopySource: `${Bucket}/src` }));
  console.log(`CopyObject ${mib} MiB: ${(performance.now() - t).toFixed(0)} ms`);
}
// Objects over 5 GiB need a multipart copy; time it too (64 MiB UploadPartCopy ranges).
t = performance.now();
const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key: 'mpcopy' }));
const size = mib << 20;
const step = 64 << 20;
const parts = await Promise.all(
  Array.from({ length: Math.ceil(size / step) }, async (_, i) => {
    const r = await client.send(
      new UploadPartCopyCommand({
        Bucket,
        Key: 'mpcopy',
        UploadId,
        PartNumber: i + 1,
        CopySource: `${Bucket}/src`,
        CopySourceRange: `bytes=${i * step}-${Math.min(size, (i + 1) * step) - 1}`,
      }),
    );
    return { PartNumber: i + 1, ETag: r.CopyPartResult!.ETag };
  }),
);
await client.send(new CompleteMultipartUploadCommand({ Bucket, Key: 'mpcopy', UploadId, MultipartUpload: { Parts: parts } }));
console.log(`UploadPartCopy x${parts.length} (parallel) ${mib} MiB: ${(performance.now() - t).toFixed(0)} ms`);

const n = 200;
t = performance.now();
for (let i = 0; i < n; i++) await client.send(new HeadObjectCommand({ Bucket, Key: 'src' }));
console.log(`HEAD (keep-alive, sequential): ${((performance.now() - t) / n).toFixed(2)} ms each`);

for (const Key of ['src', 'copy-0', 'copy-1', 'copy-2', 'mpcopy']) await client.send(new DeleteObjectCommand({ Bucket, Key }));
await client.send(new DeleteBucketCommand({ Bucket }));
