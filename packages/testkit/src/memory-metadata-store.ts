/*
 * MemoryMetadataStore: the MetadataStore port in process memory, for tests (Berth's own and
 * embedders'). It answers as SqlMetadataStore does, table for table:
 *
 *   repositories  name -> created           a row once a blob link or a manifest was pushed
 *   links         repository -> digest -> size
 *   manifests     repository -> digest -> record   kept as first pushed (same digest, same bytes)
 *   tags          repository -> tag -> digest       moved by putManifest, dropped with their manifest
 *   uploads       id -> session, with the lease token that claimUpload compares and sets
 *
 * Every method does its whole change in one synchronous step after yielding to the event loop,
 * so each call is atomic (as one SQL statement or transaction is) while calls still interleave
 * as they do against a database. Records are copied in and out, through JSON where the SQL store
 * keeps JSON, so a caller never shares an object with the store. Listings sort by byte order
 * (UTF-8, as both SQL dialects do) and paginate strictly after `last`. `replica()` opens another
 * instance over the same data, like a second process on one database; `changeVersion()` moves
 * whenever a blob link, a tag or a manifest is deleted or a tag moves.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import {
  ConflictError,
  UnavailableError,
  type ManifestRecord,
  type MetadataStore,
  type Page,
  type ReferrerRecord,
  type UploadRecord,
  type UploadState,
} from '@berthjs/core';

interface UploadRow extends UploadRecord {
  leaseToken?: string;
}

interface MetadataData {
  repositories: Set<string>;
  links: Map<string, Map<string, number>>;
  manifests: Map<string, Map<string, ManifestRecord>>;
  tags: Map<string, Map<string, string>>;
  uploads: Map<string, UploadRow>;
  version: number;
}

/** Everything a MemoryMetadataStore holds, as plain sorted data: compare two with deepEqual, or restore one. */
export interface MetadataStoreSnapshot {
  repositories: string[];
  links: { repository: string; digest: string; size: number }[];
  manifests: ManifestRecord[];
  tags: { repository: string; tag: string; digest: string }[];
  /** Sessions with their lease holder (`leaseToken`, absent when free). */
  uploads: (UploadRecord & { leaseToken?: string })[];
}

function emptyData(): MetadataData {
  return { repositories: new Set(), links: new Map(), manifests: new Map(), tags: new Map(), uploads: new Map(), version: 0 };
}

/** A {@link MetadataStore} in memory. */
export class MemoryMetadataStore implements MetadataStore {
  readonly name = 'memory';
  #closed = false;
  #data: MetadataData = emptyData();

  /** A second store over the same data, as another replica would open the same database. */
  replica(): MemoryMetadataStore {
    const other = new MemoryMetadataStore();
    other.#data = this.#data;
    return other;
  }

  changeVersion(): number {
    return this.#data.version;
  }

  // Repositories

  async repositoryExists(repository: string): Promise<boolean> {
    await this.#io();
    return this.#data.repositories.has(repository);
  }

  async listRepositories(page?: Page): Promise<string[]> {
    await this.#io();
    return paginate([...this.#data.repositories], page);
  }

  // Blobs

  async linkBlob(repository: string, digest: string, size: number): Promise<void> {
    await this.#io();
    this.#data.repositories.add(repository);
    const links = inner(this.#data.links, repository);
    if (!links.has(digest)) links.set(digest, size);
  }

  async getBlob(repository: string, digest: string): Promise<{ size: number } | undefined> {
    await this.#io();
    const size = this.#data.links.get(repository)?.get(digest);
    return size === undefined ? undefined : { size };
  }

  async unlinkBlob(repository: string, digest: string): Promise<boolean> {
    await this.#io();
    const deleted = this.#data.links.get(repository)?.delete(digest) ?? false;
    if (deleted) this.#announce();
    return deleted;
  }

  async listBlobRepositories(digest: string, page?: Page): Promise<string[]> {
    await this.#io();
    const names = [...this.#data.links].filter(([, links]) => links.has(digest)).map(([repository]) => repository);
    return paginate(names, page);
  }

  async missingBlobs(repository: string, digests: string[]): Promise<string[]> {
    await this.#io();
    const links = this.#data.links.get(repository);
    return [...new Set(digests)].filter((digest) => !links?.has(digest));
  }

  async isBlobLinked(digest: string): Promise<boolean> {
    await this.#io();
    for (const links of this.#data.links.values()) if (links.has(digest)) return true;
    return false;
  }

  // Manifests and tags

  async putManifest(manifest: ManifestRecord, tags: string[]): Promise<void> {
    const record = copyManifest(manifest);
    const names = [...new Set(tags)];
    await this.#io();
    const { repository, digest } = record;
    this.#data.repositories.add(repository);
    const manifests = inner(this.#data.manifests, repository);
    if (!manifests.has(digest)) manifests.set(digest, record);
    if (names.length === 0) return;
    const repositoryTags = inner(this.#data.tags, repository);
    for (const name of names) repositoryTags.set(name, digest);
    this.#announce(); // a tag may have moved
  }

  async getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    await this.#io();
    const record = this.#data.manifests.get(repository)?.get(digest);
    return record === undefined ? undefined : copyManifest(record);
  }

  async missingManifests(repository: string, digests: string[]): Promise<string[]> {
    await this.#io();
    const manifests = this.#data.manifests.get(repository);
    return [...new Set(digests)].filter((digest) => !manifests?.has(digest));
  }

  async deleteManifest(repository: string, digest: string): Promise<boolean> {
    await this.#io();
    const tags = this.#data.tags.get(repository);
    for (const [name, target] of tags ?? []) if (target === digest) tags?.delete(name);
    const deleted = this.#data.manifests.get(repository)?.delete(digest) ?? false;
    if (deleted) this.#announce();
    return deleted;
  }

  async resolveTag(repository: string, tag: string): Promise<string | undefined> {
    await this.#io();
    return this.#data.tags.get(repository)?.get(tag);
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    await this.#io();
    const deleted = this.#data.tags.get(repository)?.delete(tag) ?? false;
    if (deleted) this.#announce();
    return deleted;
  }

  async listTags(repository: string, page?: Page): Promise<string[]> {
    await this.#io();
    return paginate([...(this.#data.tags.get(repository)?.keys() ?? [])], page);
  }

  async listReferrers(repository: string, subject: string, filter?: { artifactType?: string }, page?: Page): Promise<ReferrerRecord[]> {
    await this.#io();
    const byDigest = new Map<string, ReferrerRecord>();
    for (const record of this.#data.manifests.get(repository)?.values() ?? []) {
      if (record.subject !== subject) continue;
      if (filter?.artifactType !== undefined && record.artifactType !== filter.artifactType) continue;
      const referrer: ReferrerRecord = { digest: record.digest, mediaType: record.mediaType, size: record.content.length };
      if (record.artifactType !== undefined) referrer.artifactType = record.artifactType;
      if (record.annotations !== undefined) referrer.annotations = viaJson(record.annotations);
      byDigest.set(record.digest, referrer);
    }
    return paginate([...byDigest.keys()], page).map((digest) => byDigest.get(digest) as ReferrerRecord);
  }

  // Upload sessions

  async createUpload(upload: Pick<UploadRecord, 'id' | 'repository' | 'state' | 'algorithm'>): Promise<void> {
    const state = viaJson(upload.state);
    await this.#io();
    if (this.#data.uploads.has(upload.id)) throw new ConflictError(`upload ${upload.id} already exists`, this.name);
    const now = Date.now();
    const row: UploadRow = {
      id: upload.id,
      repository: upload.repository,
      offset: 0,
      state,
      createdAt: now,
      updatedAt: now,
      leaseUntil: 0,
    };
    if (upload.algorithm !== undefined) row.algorithm = upload.algorithm;
    this.#data.uploads.set(upload.id, row);
  }

  async getUpload(id: string): Promise<UploadRecord | undefined> {
    await this.#io();
    const row = this.#data.uploads.get(id);
    return row === undefined ? undefined : toRecord(row);
  }

  async claimUpload(id: string, offset: number, token: string, leaseUntil: number): Promise<boolean> {
    await this.#io();
    const row = this.#data.uploads.get(id);
    const now = Date.now();
    // Free, expired, or already ours (a request re-claiming is not "another request").
    if (!row || row.offset !== offset || (row.leaseUntil > now && row.leaseToken !== token)) return false;
    Object.assign(row, { leaseToken: token, leaseUntil, updatedAt: now });
    return true;
  }

  async renewUpload(id: string, token: string, leaseUntil: number): Promise<boolean> {
    await this.#io();
    // The token alone proves ownership: any other claim replaces it, even after expiry.
    return this.#update(id, token, { leaseUntil });
  }

  async advanceUpload(id: string, token: string, offset: number, state: UploadState): Promise<boolean> {
    const copy = viaJson(state);
    await this.#io();
    return this.#update(id, token, { offset, state: copy, leaseToken: undefined, leaseUntil: 0 });
  }

  async releaseUpload(id: string, token: string): Promise<void> {
    await this.#io();
    this.#update(id, token, { leaseToken: undefined, leaseUntil: 0 });
  }

  async deleteUpload(id: string): Promise<boolean> {
    await this.#io();
    return this.#data.uploads.delete(id);
  }

  async listStaleUploads(updatedBefore: number, limit: number): Promise<UploadRecord[]> {
    await this.#io();
    if (limit <= 0) return [];
    return [...this.#data.uploads.values()]
      .filter((row) => row.updatedAt < updatedBefore)
      .sort((a, b) => a.updatedAt - b.updatedAt)
      .slice(0, limit)
      .map(toRecord);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** Copies of every table, sorted, for comparing states (deepEqual) or restoring one. */
  snapshot(): MetadataStoreSnapshot {
    const { repositories, links, manifests, tags, uploads } = this.#data;
    return {
      repositories: sortBytes([...repositories]),
      links: flatten(links).map(([repository, digest, size]) => ({ repository, digest, size })),
      manifests: flatten(manifests).map(([, , record]) => copyManifest(record)),
      tags: flatten(tags).map(([repository, tag, digest]) => ({ repository, tag, digest })),
      uploads: sortBytes([...uploads.keys()]).map((id) => {
        const row = uploads.get(id) as UploadRow;
        return row.leaseToken === undefined ? toRecord(row) : { ...toRecord(row), leaseToken: row.leaseToken };
      }),
    };
  }

  /** Replace everything the store (and its replicas) holds with `snapshot`. */
  restore(snapshot: MetadataStoreSnapshot): void {
    const data = this.#data;
    const version = data.version + 1; // what readers cached may be gone
    Object.assign(data, emptyData(), { version });
    for (const name of snapshot.repositories) data.repositories.add(name);
    for (const { repository, digest, size } of snapshot.links) inner(data.links, repository).set(digest, size);
    for (const record of snapshot.manifests) inner(data.manifests, record.repository).set(record.digest, copyManifest(record));
    for (const { repository, tag, digest } of snapshot.tags) inner(data.tags, repository).set(tag, digest);
    for (const upload of snapshot.uploads) data.uploads.set(upload.id, { ...upload, state: viaJson(upload.state) });
  }

  /** Like a database round trip, answer on a later turn of the event loop; a closed store is unavailable. */
  async #io(): Promise<void> {
    await yieldToLoop();
    if (this.#closed) throw new UnavailableError('store is closed', this.name);
  }

  #announce(): void {
    this.#data.version++;
  }

  /** Change the session if `token` holds its lease. */
  #update(id: string, token: string, change: Partial<UploadRow>): boolean {
    const row = this.#data.uploads.get(id);
    if (!row || row.leaseToken !== token) return false;
    Object.assign(row, change, { updatedAt: Date.now() });
    if (row.leaseToken === undefined) delete row.leaseToken;
    return true;
  }
}

function inner<V>(outer: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let map = outer.get(key);
  if (map === undefined) outer.set(key, (map = new Map()));
  return map;
}

/** `[outer key, inner key, value]` for every entry, sorted by both keys in byte order. */
function flatten<V>(outer: Map<string, Map<string, V>>): [string, string, V][] {
  return sortBytes([...outer.keys()]).flatMap((a) => {
    const map = outer.get(a) as Map<string, V>;
    return sortBytes([...map.keys()]).map((b): [string, string, V] => [a, b, map.get(b) as V]);
  });
}

/** UTF-8 byte order is code point order (JavaScript's `<` compares UTF-16 units, which differs past U+FFFF). */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function sortBytes(values: string[]): string[] {
  return values.sort(compareBytes);
}

/** Sorted, strictly after `page.last`, at most `page.limit` (0 or less: none). */
function paginate(values: string[], page: Page | undefined): string[] {
  if (page?.limit !== undefined && page.limit <= 0) return [];
  const { last } = page ?? {};
  const after = last === undefined ? sortBytes(values) : sortBytes(values.filter((value) => compareBytes(value, last) > 0));
  return page?.limit === undefined ? after : after.slice(0, page.limit);
}

function viaJson<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** A record sharing nothing with `record`, with absent optional fields left out (never undefined-valued). */
function copyManifest(record: ManifestRecord): ManifestRecord {
  const copy: ManifestRecord = {
    repository: record.repository,
    digest: record.digest,
    mediaType: record.mediaType,
    content: Buffer.from(record.content),
    blobs: [...record.blobs],
    children: [...record.children],
  };
  if (record.subject !== undefined) copy.subject = record.subject;
  if (record.artifactType !== undefined) copy.artifactType = record.artifactType;
  if (record.annotations !== undefined) copy.annotations = viaJson(record.annotations);
  return copy;
}

function toRecord(row: UploadRow): UploadRecord {
  const { leaseToken: _token, ...record } = row;
  return { ...record, state: viaJson(row.state) };
}
