import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import assert from 'node:assert/strict';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const EMPTY_CONFIG = 'application/vnd.oci.empty.v1+json';

export const sha256 = (data: Buffer | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
export const sha512 = (data: Buffer | string) => `sha512:${createHash('sha512').update(data).digest('hex')}`;
export const randomBlob = (size: number) => randomBytes(size);

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  json<T = any>(): T;
  header(name: string): string | undefined;
}

export interface RawRequest {
  method?: string;
  headers?: Record<string, string | number>;
  /** Bytes sent with Content-Length, or chunks sent with chunked transfer encoding. */
  body?: Buffer | string | Buffer[];
}

/** A tiny HTTP client on node:http: exact control over headers, chunked bodies and HEAD. */
export function rawRequest(base: string, path: string, init: RawRequest = {}): Promise<RawResponse> {
  // The path goes out verbatim (no URL normalization), so tests can send `..` and odd encodings.
  const { hostname, port } = new URL(base);
  const headers: Record<string, string | number> = { ...init.headers };
  const chunks = Array.isArray(init.body) ? init.body : undefined;
  const single =
    chunks || init.body === undefined ? undefined : typeof init.body === 'string' ? Buffer.from(init.body) : (init.body as Buffer);
  if (single && headers['Content-Length'] === undefined) headers['Content-Length'] = single.length;
  if (chunks) headers['Transfer-Encoding'] = 'chunked';
  return new Promise((resolve, reject) => {
    const req = httpRequest({ hostname, port, path, method: init.method ?? 'GET', headers, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const body = Buffer.concat(parts);
        const text = body.toString('utf8');
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          text,
          json: () => JSON.parse(text),
          header: (name) => {
            const v = res.headers[name.toLowerCase()];
            return Array.isArray(v) ? v.join(', ') : v;
          },
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (chunks) for (const c of chunks) req.write(c);
    req.end(single);
  });
}

/** A registry client for tests, speaking the protocol step by step. */
export class TestClient {
  constructor(
    readonly base: string,
    readonly headers: Record<string, string> = {},
  ) {}

  req(path: string, init: RawRequest = {}) {
    return rawRequest(this.base, path, { ...init, headers: { ...this.headers, ...init.headers } });
  }

  /** POST + PUT (monolithic). */
  async pushBlob(repo: string, data: Buffer, digest = sha256(data)): Promise<string> {
    const start = await this.req(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(start.status, 202, start.text);
    const location = start.header('location')!;
    const put = await this.req(`${location}${location.includes('?') ? '&' : '?'}digest=${digest}`, {
      method: 'PUT',
      body: data,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(put.status, 201, put.text);
    return digest;
  }

  async pushManifest(repo: string, ref: string, manifest: unknown, mediaType = OCI_MANIFEST) {
    const body = Buffer.from(typeof manifest === 'string' ? manifest : JSON.stringify(manifest));
    return this.req(`/v2/${repo}/manifests/${ref}`, { method: 'PUT', body, headers: { 'Content-Type': mediaType } });
  }

  /** Push a config and one layer, then an image manifest under `tag`; returns its digest and bytes. */
  async pushImage(repo: string, tag: string, extra: Record<string, unknown> = {}) {
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, n: Math.random() }),
    );
    const layer = randomBlob(1024);
    await this.pushBlob(repo, config);
    await this.pushBlob(repo, layer);
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
      ...extra,
    };
    const bytes = Buffer.from(JSON.stringify(manifest));
    const res = await this.pushManifest(repo, tag, bytes.toString());
    assert.equal(res.status, 201, res.text);
    return { digest: sha256(bytes), bytes, size: bytes.length, manifest };
  }
}

/** Assert an error response carries the spec's JSON body with `code` first. */
export function assertError(res: RawResponse, status: number, code?: string) {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text}`);
  if (!code) return;
  assert.match(res.header('content-type') ?? '', /^application\/json/);
  const body = res.json<{ errors: { code: string; message: string }[] }>();
  assert.ok(Array.isArray(body.errors) && body.errors.length > 0, res.text);
  assert.equal(body.errors[0].code, code, res.text);
  assert.equal(typeof body.errors[0].message, 'string');
}

/** Open an upload session; its Location. */
export async function startSession(base: string, repository: string): Promise<string> {
  const res = await rawRequest(base, `/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  assert.equal(res.status, 202, res.text);
  return res.header('location')!;
}

/**
 * A streamed PATCH (chunked, no Content-Range) whose body the test writes piece by piece, or
 * stops writing; `response` resolves with the response, or with the error when it was cut.
 */
export function streamedPatch(base: string, location: string): { req: ClientRequest; response: Promise<IncomingMessage | Error> } {
  const { hostname, port } = new URL(base);
  const req = httpRequest({ hostname, port, path: location, method: 'PATCH', agent: false, headers: { 'Transfer-Encoding': 'chunked' } });
  const response = new Promise<IncomingMessage | Error>((resolve) => {
    req.once('response', resolve);
    req.once('error', resolve);
  });
  return { req, response };
}
