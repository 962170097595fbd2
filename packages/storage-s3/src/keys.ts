/**
 * The object layout (see the README, "Object layout"): every key the store builds, the format of
 * a blob pointer, and the checks that keep keys made from a digest or an upload id under the
 * store's prefix.
 */
import { randomBytes } from 'node:crypto';
import { StoreError } from '@berthjs/core';

/** Where a blob's bytes live: its own address (inline) or the data object a pointer names. */
export interface Location {
  key: string;
  size: number;
}

/** User metadata of a pointer that names its data object (`x-amz-meta-berth-data-key`). */
export const POINTER_DATA_KEY_META = 'berth-data-key';
const SIZE_META = 'berth-size';
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^(sha256|sha512):([a-f0-9]+)$/;
const HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

export class KeyLayout {
  /** `""` or ending in `/`. */
  readonly prefix: string;
  /** Multipart keys (`data/<id>/<random>`): completed blobs' bytes and every open multipart upload. */
  readonly dataRoot: string;
  /** Staged tails of open sessions (`uploads/<id>/tail-<end>`). */
  readonly stagingRoot: string;
  /** Every digest's address (`blobs/<alg>/<hex>`). */
  readonly blobsRoot: string;

  constructor(
    prefix: string | undefined,
    private readonly store: string,
  ) {
    const p = (prefix ?? '').replace(/^\/+/, '');
    this.prefix = p === '' || p.endsWith('/') ? p : `${p}/`;
    this.dataRoot = `${this.prefix}data/`;
    this.stagingRoot = `${this.prefix}uploads/`;
    this.blobsRoot = `${this.prefix}blobs/`;
  }

  /** The digest's address, `blobs/<alg>/<hex>`; a malformed digest never becomes a key. */
  blob(digest: string): string {
    const m = DIGEST.exec(digest);
    if (!m || m[2].length !== HEX_LENGTH[m[1]]) throw new StoreError(`invalid digest ${JSON.stringify(digest)}`, this.store);
    return `${this.prefix}blobs/${m[1]}/${m[2]}`;
  }

  /** The digest a key under `blobsRoot` is the address of; undefined for anything else. */
  digestOf(key: string): string | undefined {
    if (!key.startsWith(this.blobsRoot)) return undefined;
    const [algorithm, hex, extra] = key.slice(this.blobsRoot.length).split('/');
    const digest = `${algorithm}:${hex}`;
    return extra === undefined && DIGEST.test(digest) && hex.length === HEX_LENGTH[algorithm] ? digest : undefined;
  }

  /** An upload id, checked: it becomes one path segment. */
  checkId(id: string): string {
    if (!ID.test(id)) throw new StoreError(`invalid upload id ${JSON.stringify(id)}`, this.store);
    return id;
  }

  /** Folder of the session's multipart key. */
  data(id: string): string {
    return `${this.dataRoot}${this.checkId(id)}/`;
  }

  /**
   * A fresh multipart key for the session. The random suffix keeps a reused upload id from ever
   * completing over a live blob.
   */
  newDataKey(id: string): string {
    return `${this.data(id)}${randomBytes(6).toString('hex')}`;
  }

  /** Whether `key` is a multipart key of session `id` (one segment below its folder). */
  isDataKeyOf(id: string, key: string): boolean {
    const folder = this.data(id);
    return key.startsWith(folder) && key.length > folder.length && !key.slice(folder.length).includes('/');
  }

  /** Whether `key` is a multipart key of any session (`data/<id>/<random>`). */
  isDataKey(key: string): boolean {
    if (!key.startsWith(this.dataRoot)) return false;
    const [id, name, extra] = key.slice(this.dataRoot.length).split('/');
    return ID.test(id) && name !== undefined && name !== '' && extra === undefined;
  }

  /** Folder of the session's staged tails. */
  staging(id: string): string {
    return `${this.stagingRoot}${this.checkId(id)}/`;
  }

  /** The staged tail of a session holding `end` bytes: each append writes a new one. */
  tail(id: string, end: number): string {
    return `${this.staging(id)}tail-${end}`;
  }

  /** The upload id a key under `root` (data or staging) belongs to. */
  idOf(root: string, key: string): string {
    return key.slice(root.length).split('/')[0];
  }

  /** User metadata of a 0-byte pointer naming the data object of a blob. */
  pointerMetadata(location: Location): Record<string, string> {
    return { [POINTER_DATA_KEY_META]: location.key, [SIZE_META]: String(location.size) };
  }

  /** The data key a pointer's metadata names, as written (undefined for an inline blob). */
  namedDataKey(metadata: Record<string, string> | undefined): string | undefined {
    return metadata?.[POINTER_DATA_KEY_META] || undefined;
  }

  /**
   * Where the bytes of the object at `key` are, from its HEAD: the object itself, or the data
   * object its pointer metadata names (which must be a data key of this store).
   */
  locate(key: string, metadata: Record<string, string> | undefined, contentLength: number | undefined, digest: string): Location {
    const dataKey = this.namedDataKey(metadata);
    if (!dataKey) return { key, size: contentLength ?? 0 };
    const size = Number(metadata?.[SIZE_META]);
    if (!dataKey.startsWith(this.dataRoot) || !Number.isSafeInteger(size) || size < 0)
      throw new StoreError(`blob ${digest} has a malformed pointer`, this.store);
    return { key: dataKey, size };
  }
}
