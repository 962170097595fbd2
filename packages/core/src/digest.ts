import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { OciError } from './errors.js';

/** Digest grammar from the image spec: `algorithm ":" encoded`. */
const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** The algorithms Berth computes, with the exact shape of their encoded part. */
const ALGORITHMS: Record<string, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};

export type DigestAlgorithm = 'sha256' | 'sha512';

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  encoded: string;
  digest: string;
}

export function isSupportedAlgorithm(algorithm: string): algorithm is DigestAlgorithm {
  return Object.hasOwn(ALGORITHMS, algorithm);
}

/** Parse and validate a digest; anything malformed or of an unsupported algorithm is DIGEST_INVALID (400). */
export function parseDigest(value: string | undefined): ParsedDigest {
  if (!value || value.length > 200 || !DIGEST_GRAMMAR.test(value)) {
    throw new OciError('DIGEST_INVALID', { message: 'invalid digest', detail: { digest: value ?? null } });
  }
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const encoded = value.slice(colon + 1);
  if (!isSupportedAlgorithm(algorithm)) {
    throw new OciError('DIGEST_INVALID', { message: `unsupported digest algorithm ${algorithm}`, detail: { digest: value } });
  }
  if (!ALGORITHMS[algorithm].test(encoded)) {
    throw new OciError('DIGEST_INVALID', { message: `invalid ${algorithm} digest`, detail: { digest: value } });
  }
  return { algorithm, encoded, digest: value };
}

/** Whether `value` is a syntactically valid digest of a supported algorithm. */
export function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

export function newHash(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

export function digestOf(algorithm: DigestAlgorithm, bytes: Buffer): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/**
 * Pass-through that counts bytes and, when given a hash, feeds it: the digest is computed while
 * the bytes stream to the store, never trusted from the client.
 */
export class HashingStream extends Transform {
  bytes = 0;

  constructor(
    readonly hash: Hash | undefined,
    private readonly limit = Number.POSITIVE_INFINITY,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      callback(new OciError('SIZE_INVALID', { message: 'body is longer than announced' }));
      return;
    }
    this.hash?.update(chunk);
    callback(null, chunk);
  }
}
