import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { UndiciHttpHandler } from './http-handler.js';

export interface S3BlobStoreOptions {
  /** Bucket holding blobs and upload staging; it must exist. */
  bucket: string;
  /** Key prefix for everything this store writes (e.g. `registry/`); a trailing `/` is added. Default: none. */
  prefix?: string;
  /** Endpoint URL for non-AWS providers (MinIO, Ceph RGW, R2…). Default: AWS, from `region`. */
  endpoint?: string;
  /** Signing region. Default: `AWS_REGION`, else `us-east-1` (what Ceph, MinIO expect; R2 wants `auto`). */
  region?: string;
  /** Path-style URLs (`endpoint/bucket/key`), needed by most self-hosted providers. Default: false. */
  forcePathStyle?: boolean;
  /** Static credentials or a provider. Default: the standard AWS chain (env, profile, SSO, IMDS…). */
  credentials?: S3ClientConfig['credentials'];
  /**
   * Size of every multipart part but the last, in bytes (≥ 5 MiB, ≤ 5 GiB). Default 8 MiB. Also
   * advertised as `OCI-Chunk-Min-Length`: chunks of at least this size go straight to S3.
   * Memory per active upload is about (partConcurrency + 1) × part size.
   */
  partSize?: number;
  /**
   * Keep every part the same size. Off (default), the part size doubles every 1,000 parts so that a
   * stream of unknown length can reach S3's 5 TiB limit within 10,000 parts. Turn it on for
   * providers that reject unequal parts (Cloudflare R2): blobs are then limited to
   * 10,000 × partSize (80 GB at 8 MiB; more is refused with 413) unless the first chunk's length is known, in which case the
   * part size is raised once, up front, to fit.
   */
  equalPartSizes?: boolean;
  /** Part uploads in flight while the next part fills. Default 2 (three parts in memory). */
  partConcurrency?: number;
  /**
   * Largest blob sent to S3 in one streamed PutObject instead of parts, when one request carries
   * it whole with a Content-Length (a monolithic PUT, the session's only append) and it is larger
   * than one part: the gateway receives it as a plain upload, with no part buffers in memory. Such a
   * request is not retried against S3 (a stream is read once); the client retries it. 0 turns
   * this off. Default 512 MiB; at most 5 GiB (S3's PutObject limit).
   */
  singlePutMax?: number;
  /** Offer presigned GET URLs (`redirectUrl`, `capabilities.redirect`) so clients download directly. Default false. */
  redirect?: boolean;
  /** Milliseconds to establish a connection. Default 5,000. */
  connectionTimeoutMs?: number;
  /**
   * Milliseconds to wait for response headers once the request is sent, and for a request body
   * the gateway stops taking (a whole part upload). Default 120,000. Streamed response bodies are
   * bounded by `socketTimeoutMs` instead.
   */
  requestTimeoutMs?: number;
  /** Milliseconds a response body may send nothing before the request fails. Default 30,000. */
  socketTimeoutMs?: number;
  /** Attempts per request, with the SDK's standard jittered backoff. Default 3. */
  maxAttempts?: number;
  /** Concurrent sockets to the endpoint (open blob reads hold one each). Default 64. */
  maxSockets?: number;
  /**
   * Create blob pointers with `If-None-Match: *`, so two commits of one digest racing each other
   * keep one data object. Supported by AWS, R2, MinIO and Ceph RGW; turn off for a provider that
   * rejects the header (the race then leaves an unreferenced object behind). Default true.
   */
  conditionalWrites?: boolean;
  /**
   * Hash every part and small object for SigV4 (`x-amz-content-sha256`), so the gateway checks
   * their bytes against the signature. Off (default), requests are signed but their bodies are
   * not (`UNSIGNED-PAYLOAD`, as presigned URLs do): the SDK would otherwise hash every byte once
   * more in this process, and the gateway hash it again; over HTTPS, TLS protects the bytes in
   * transit anyway.
   */
  signPayload?: boolean;
  /** Use this client instead of building one (the connection options above are then ignored). */
  client?: S3Client;
}

/** The SDK client the options describe. */
export function clientConfig(options: S3BlobStoreOptions): S3ClientConfig {
  return {
    endpoint: options.endpoint,
    region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: options.forcePathStyle ?? false,
    credentials: options.credentials,
    maxAttempts: options.maxAttempts ?? 3,
    retryMode: 'standard',
    // Checksums only where S3 demands them: the core verifies every digest anyway, and the
    // trailer encoding the SDK would otherwise use is rejected by Ceph RGW and older MinIO.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // No `Expect: 100-continue` on bodies over 2 MiB: with it the SDK sends each part on a new
    // connection of its own, after a round trip for the 100.
    expectContinueHeader: false,
    // The SDK warns on the console when a streamed request fails; the error reaches the caller.
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    requestHandler: new UndiciHttpHandler({
      connectionTimeout: options.connectionTimeoutMs ?? 5_000,
      requestTimeout: options.requestTimeoutMs ?? 120_000,
      socketTimeout: options.socketTimeoutMs ?? 30_000,
      maxSockets: options.maxSockets ?? 64,
    }),
  };
}
