/*
 * MemoryMetadataStore: the MetadataStore port in process memory, for tests (Berth's own and
 * embedders'). It answers as SqlMetadataStore does, table for table:
 *
 *   repositories  name -> tenant and usage    while a blob link or a manifest is in it
 *   links         repository -> digest -> size, linkedAt
 *   manifests     repository -> digest -> record, createdAt   kept as first pushed
 *   tags          repository -> tag -> digest       moved by putManifest, dropped with their manifest
 *   uploads       id -> session, with the lease token that claimUpload compares and sets, its
 *                 quota reservation and the digest it is committing (a pin)
 *   blobs         digest -> size, live|deleting     what garbage collection may delete
 *   tenants, tenantBlobs                            usage per tenant, each blob once
 *   leases        name -> holder, until
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
  NotFoundError,
  StoreError,
  UnavailableError,
  type BlobRecord,
  type CommitStart,
  type Lease,
  type LinkRecord,
  type ManifestNode,
  type ManifestRecord,
  type MetadataStore,
  type Page,
  type ReferrerRecord,
  type RepositoryUsage,
  type Reservation,
  type TenantUsage,
  type UnlinkedBlob,
  type UploadRecord,
  type UploadState,
  type UsageCorrection,
  type UsageRecompute,
} from '@berthjs/core';

interface UploadRow extends UploadRecord {
  leaseToken?: string;
  committing?: string;
}

interface LinkRow {
  size: number;
  linkedAt: number;
}

interface ManifestRow {
  record: ManifestRecord;
  createdAt: number;
}

interface BlobRow {
  size: number;
  state: 'live' | 'deleting';
  run?: string;
  touchedAt: number;
}

interface MetadataData {
  repositories: Map<string, RepositoryUsage>;
  links: Map<string, Map<string, LinkRow>>;
  manifests: Map<string, Map<string, ManifestRow>>;
  tags: Map<string, Map<string, string>>;
  uploads: Map<string, UploadRow>;
  blobs: Map<string, BlobRow>;
  tenants: Map<string, TenantUsage>;
  tenantBlobs: Map<string, Map<string, { size: number; links: number }>>;
  leases: Map<string, { holder: string; until: number }>;
  version: number;
}

/** The lease whose holder marks blobs for deletion (see CommitStart.abandoned). */
const GC_LEASE = 'gc';

/** Everything a MemoryMetadataStore holds, as plain sorted data: compare two with deepEqual, or restore one. */
export interface MetadataStoreSnapshot {
  repositories: string[];
  links: { repository: string; digest: string; size: number }[];
  manifests: ManifestRecord[];
  tags: { repository: string; tag: string; digest: string }[];
  /** Sessions with their lease holder (`leaseToken`, absent when free). */
  uploads: (UploadRecord & { leaseToken?: string })[];
  /** Blob rows (what garbage collection may delete) and usage, so a check that nothing changed covers them too. */
  blobs: { digest: string; size: number; state: string }[];
  usage: { repositories: (RepositoryUsage & { repository: string })[]; tenants: (TenantUsage & { tenant: string })[] };
}

function emptyData(): MetadataData {
  return {
    repositories: new Map(),
    links: new Map(),
    manifests: new Map(),
    tags: new Map(),
    uploads: new Map(),
    blobs: new Map(),
    tenants: new Map(),
    tenantBlobs: new Map(),
    leases: new Map(),
    version: 0,
  };
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
    return paginate([...this.#data.repositories.keys()], page);
  }

  // Blobs

  async getBlob(repository: string, digest: string): Promise<{ size: number } | undefined> {
    await this.#io();
    const link = this.#data.links.get(repository)?.get(digest);
    return link === undefined ? undefined : { size: link.size };
  }

  async unlinkBlob(repository: string, digest: string): Promise<boolean> {
    await this.#io();
    const repo = this.#data.repositories.get(repository);
    const link = this.#data.links.get(repository)?.get(digest);
    if (!repo || !link) return false;
    this.#removeLinks(repository, repo.tenant, [{ digest, size: link.size }]);
    this.#endIfEmpty(repository);
    this.#announce();
    return true;
  }

  async listBlobRepositories(digest: string, page?: Page): Promise<string[]> {
    await this.#io();
    const names = [...this.#data.links].filter(([, links]) => links.has(digest)).map(([repository]) => repository);
    return paginate(names, page);
  }

  async mountBlob(from: string, to: string, digest: string, tenant: string): Promise<{ size: number } | undefined> {
    await this.#io();
    const source = this.#data.links.get(from)?.get(digest);
    if (!source || this.#data.blobs.get(digest)?.state !== 'live') return undefined;
    this.#addLink(to, this.#takeRepository(to, tenant), digest, source.size);
    return { size: source.size };
  }

  // Manifests and tags

  async putManifest(manifest: ManifestRecord, tags: string[], tenant: string): Promise<string[]> {
    const record = copyManifest(manifest);
    const names = [...new Set(tags)];
    await this.#io();
    const { repository, digest } = record;
    const links = this.#data.links.get(repository);
    const manifests = this.#data.manifests.get(repository);
    const missing = [
      ...[...new Set(record.blobs)].filter((blob) => !links?.has(blob)),
      ...[...new Set(record.children)].filter((child) => !manifests?.has(child)),
    ];
    if (missing.length > 0) return missing;
    this.#takeRepository(repository, tenant);
    const stored = inner(this.#data.manifests, repository);
    if (!stored.has(digest)) stored.set(digest, { record, createdAt: Date.now() });
    if (names.length === 0) return [];
    const repositoryTags = inner(this.#data.tags, repository);
    for (const name of names) repositoryTags.set(name, digest);
    this.#announce(); // a tag may have moved
    return [];
  }

  async getManifest(repository: string, digest: string): Promise<ManifestRecord | undefined> {
    await this.#io();
    const row = this.#data.manifests.get(repository)?.get(digest);
    return row === undefined ? undefined : copyManifest(row.record);
  }

  async deleteManifest(repository: string, digest: string): Promise<boolean> {
    await this.#io();
    const deleted = this.#dropManifest(repository, digest);
    if (deleted) {
      this.#endIfEmpty(repository);
      this.#announce();
    }
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
    for (const { record } of this.#data.manifests.get(repository)?.values() ?? []) {
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

  async createUpload(upload: Pick<UploadRecord, 'id' | 'repository' | 'tenant' | 'state' | 'algorithm'>): Promise<void> {
    const state = viaJson(upload.state);
    await this.#io();
    if (this.#data.uploads.has(upload.id)) throw new ConflictError(`upload ${upload.id} already exists`, this.name);
    const now = Date.now();
    const row: UploadRow = {
      id: upload.id,
      repository: upload.repository,
      tenant: upload.tenant,
      offset: 0,
      state,
      reserved: 0,
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
    const row = this.#data.uploads.get(id);
    if (!row) return false;
    this.#tenant(row.tenant).reserved -= row.reserved;
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

  async reserveUpload(id: string, total: number, limit: number, digest?: string): Promise<Reservation> {
    await this.#io();
    const row = this.#upload(id);
    if (digest && this.#data.tenantBlobs.get(row.tenant)?.has(digest)) return { granted: true };
    const needed = total - row.reserved;
    if (needed <= 0) return { granted: true };
    const usage = this.#tenant(row.tenant);
    if (usage.bytes + usage.reserved + needed > limit) return { granted: false, usage: { ...usage }, needed };
    usage.reserved += needed;
    row.reserved = total;
    return { granted: true };
  }

  async beginCommit(id: string, digest: string, size: number, limit?: number): Promise<CommitStart> {
    await this.#io();
    const row = this.#upload(id);
    const now = Date.now();
    const blob = this.#data.blobs.get(digest);
    if (blob?.state === 'deleting') {
      const lease = this.#data.leases.get(GC_LEASE);
      return { status: 'deleting', abandoned: !lease || lease.holder !== blob.run || lease.until <= now };
    }
    if (limit !== undefined) {
      const needed = this.#data.tenantBlobs.get(row.tenant)?.has(digest) ? 0 : size;
      const usage = this.#tenant(row.tenant);
      if (usage.bytes + usage.reserved - row.reserved + needed > limit) return { status: 'over-quota', usage: { ...usage }, needed };
      usage.reserved += needed - row.reserved;
      row.reserved = needed;
    }
    this.#data.blobs.set(digest, { size: blob?.size ?? size, state: 'live', touchedAt: now });
    row.committing = digest;
    return { status: 'ready' };
  }

  async finishCommit(id: string, digest: string, size: number): Promise<void> {
    await this.#io();
    const row = this.#upload(id);
    if (this.#data.blobs.get(digest)?.state !== 'live')
      throw new StoreError(`blob ${digest} is not live at the end of its commit`, this.name);
    this.#addLink(row.repository, this.#takeRepository(row.repository, row.tenant), digest, size);
    this.#tenant(row.tenant).reserved -= row.reserved;
    this.#data.uploads.delete(id);
  }

  // Usage

  async tenantUsage(tenant: string): Promise<TenantUsage> {
    await this.#io();
    return { ...(this.#data.tenants.get(tenant) ?? { bytes: 0, blobs: 0, reserved: 0 }) };
  }

  async repositoryUsage(repository: string): Promise<RepositoryUsage | undefined> {
    await this.#io();
    const row = this.#data.repositories.get(repository);
    return row && { ...row };
  }

  async listTenants(page?: Page): Promise<Array<TenantUsage & { tenant: string }>> {
    await this.#io();
    const names = [...this.#data.tenants].filter(([, u]) => u.blobs > 0 || u.reserved > 0).map(([name]) => name);
    return paginate(names, page).map((tenant) => ({ tenant, ...(this.#data.tenants.get(tenant) as TenantUsage) }));
  }

  async recomputeUsage(
    options: { tenantOf?: (repository: string) => string; onProgress?: (done: number, total: number) => void } = {},
  ): Promise<UsageRecompute> {
    await this.#io();
    const data = this.#data;
    if (options.tenantOf) for (const [name, repo] of data.repositories) repo.tenant = options.tenantOf(name);
    const corrections: UsageCorrection[] = [];
    const held = new Map<string, Map<string, { size: number; links: number }>>();
    for (const [name, repo] of data.repositories) {
      const links = [...(data.links.get(name)?.entries() ?? [])];
      const recomputed = { bytes: links.reduce((sum, [, l]) => sum + l.size, 0), blobs: links.length };
      if (recomputed.bytes !== repo.bytes || recomputed.blobs !== repo.blobs) {
        corrections.push({ scope: 'repository', name, running: { bytes: repo.bytes, blobs: repo.blobs }, recomputed });
        Object.assign(repo, recomputed);
      }
      const tenantHeld = inner(held, repo.tenant);
      for (const [digest, link] of links) {
        const entry = tenantHeld.get(digest) ?? { size: link.size, links: 0 };
        entry.links++;
        tenantHeld.set(digest, entry);
      }
    }
    const tenants = sortBytes([...new Set([...data.tenants.keys(), ...held.keys(), ...[...data.uploads.values()].map((u) => u.tenant)])]);
    for (const [i, tenant] of tenants.entries()) {
      const blobs = held.get(tenant) ?? new Map();
      const reserved = [...data.uploads.values()].filter((u) => u.tenant === tenant).reduce((sum, u) => sum + u.reserved, 0);
      const recomputed = { bytes: [...blobs.values()].reduce((sum, b) => sum + b.size, 0), blobs: blobs.size, reserved };
      const running = this.#tenant(tenant);
      if (running.bytes !== recomputed.bytes || running.blobs !== recomputed.blobs || running.reserved !== recomputed.reserved) {
        corrections.push({ scope: 'tenant', name: tenant, running: { ...running }, recomputed });
        Object.assign(running, recomputed);
      }
      data.tenantBlobs.set(tenant, blobs);
      options.onProgress?.(i + 1, tenants.length);
    }
    return { tenants: tenants.length, repositories: data.repositories.size, corrections };
  }

  // Garbage collection

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease> {
    await this.#io();
    const now = Date.now();
    const lease = this.#data.leases.get(name);
    if (lease && lease.holder !== holder && lease.until > now) return { acquired: false, ...lease };
    this.#data.leases.set(name, { holder, until: now + ttlMs });
    return { acquired: true, holder, until: now + ttlMs };
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.#io();
    if (this.#data.leases.get(name)?.holder === holder) this.#data.leases.delete(name);
  }

  async listManifestNodes(repository: string, page?: Page): Promise<ManifestNode[]> {
    await this.#io();
    const manifests = this.#data.manifests.get(repository) ?? new Map<string, ManifestRow>();
    const tagged = new Set(this.#data.tags.get(repository)?.values() ?? []);
    return paginate([...manifests.keys()], page).map((digest) => {
      const { record, createdAt } = manifests.get(digest) as ManifestRow;
      const node: ManifestNode = {
        digest,
        blobs: [...record.blobs],
        children: [...record.children],
        tagged: tagged.has(digest),
        createdAt,
      };
      if (record.subject !== undefined) node.subject = record.subject;
      return node;
    });
  }

  async listLinks(repository: string, page?: Page): Promise<LinkRecord[]> {
    await this.#io();
    const links = this.#data.links.get(repository) ?? new Map<string, LinkRow>();
    return paginate([...links.keys()], page).map((digest) => ({ digest, ...(links.get(digest) as LinkRow) }));
  }

  async deleteUnreachableManifest(repository: string, digest: string, cutoff: number): Promise<boolean> {
    await this.#io();
    const manifests = this.#data.manifests.get(repository);
    const row = manifests?.get(digest);
    if (!manifests || !row || row.createdAt >= cutoff) return false;
    const tagged = [...(this.#data.tags.get(repository)?.values() ?? [])].includes(digest);
    const parent = [...manifests.values()].some((m) => m.record.children.includes(digest));
    const subject = row.record.subject !== undefined && manifests.has(row.record.subject);
    if (tagged || parent || subject) return false;
    this.#dropManifest(repository, digest);
    this.#endIfEmpty(repository);
    this.#announce();
    return true;
  }

  async deleteUnreferencedLinks(repository: string, digests: string[], cutoff: number): Promise<UnlinkedBlob[]> {
    await this.#io();
    const repo = this.#data.repositories.get(repository);
    const links = this.#data.links.get(repository);
    if (!repo || !links) return [];
    const referenced = new Set([...(this.#data.manifests.get(repository)?.values() ?? [])].flatMap((m) => m.record.blobs));
    const doomed = [...new Set(digests)]
      .filter((d) => !referenced.has(d) && (links.get(d)?.linkedAt ?? Infinity) < cutoff)
      .map((digest) => ({ digest, size: (links.get(digest) as LinkRow).size }));
    if (doomed.length === 0) return [];
    const removed = this.#removeLinks(repository, repo.tenant, doomed);
    this.#endIfEmpty(repository);
    this.#announce();
    return removed;
  }

  async listCollectableBlobs(cutoff: number, page?: Page): Promise<BlobRecord[]> {
    await this.#io();
    const collectable = [...this.#data.blobs].filter(([digest, row]) => row.state === 'deleting' || this.#collectable(digest, row, cutoff));
    const sizes = new Map(collectable.map(([digest, row]) => [digest, row.size]));
    return paginate([...sizes.keys()], page).map((digest) => ({ digest, size: sizes.get(digest) as number }));
  }

  async markBlobsDeleting(blobs: Array<{ digest: string; size?: number }>, run: string, cutoff: number): Promise<BlobRecord[]> {
    await this.#io();
    const marked: BlobRecord[] = [];
    for (const { digest, size } of blobs) {
      const row = this.#data.blobs.get(digest);
      if (!row) {
        if (this.#inUse(digest)) continue;
        this.#data.blobs.set(digest, { size: size ?? 0, state: 'deleting', run, touchedAt: Date.now() });
        marked.push({ digest, size: size ?? 0 });
      } else if (row.state === 'deleting' || this.#collectable(digest, row, cutoff)) {
        Object.assign(row, { state: 'deleting', run });
        marked.push({ digest, size: row.size });
      }
    }
    return marked;
  }

  async unknownBlobs(digests: string[]): Promise<string[]> {
    await this.#io();
    return digests.filter((digest) => !this.#data.blobs.has(digest));
  }

  async forgetBlobs(digests: string[]): Promise<void> {
    await this.#io();
    for (const digest of digests) if (this.#data.blobs.get(digest)?.state === 'deleting') this.#data.blobs.delete(digest);
  }

  /** Answers like a usable backend; unavailable once closed. */
  async probe(): Promise<void> {
    await this.#io();
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** Copies of every table, sorted, for comparing states (deepEqual) or restoring one. */
  snapshot(): MetadataStoreSnapshot {
    const { repositories, links, manifests, tags, uploads, blobs, tenants } = this.#data;
    return {
      repositories: sortBytes([...repositories.keys()]),
      links: flatten(links).map(([repository, digest, link]) => ({ repository, digest, size: link.size })),
      manifests: flatten(manifests).map(([, , row]) => copyManifest(row.record)),
      tags: flatten(tags).map(([repository, tag, digest]) => ({ repository, tag, digest })),
      uploads: sortBytes([...uploads.keys()]).map((id) => {
        const row = uploads.get(id) as UploadRow;
        return row.leaseToken === undefined ? toRecord(row) : { ...toRecord(row), leaseToken: row.leaseToken };
      }),
      blobs: sortBytes([...blobs.keys()]).map((digest) => {
        const { size, state } = blobs.get(digest) as BlobRow;
        return { digest, size, state };
      }),
      usage: {
        repositories: sortBytes([...repositories.keys()]).map((repository) => ({
          repository,
          ...(repositories.get(repository) as RepositoryUsage),
        })),
        tenants: sortBytes([...tenants.keys()]).map((tenant) => ({ tenant, ...(tenants.get(tenant) as TenantUsage) })),
      },
    };
  }

  /** Replace everything the store (and its replicas) holds with `snapshot`. */
  restore(snapshot: MetadataStoreSnapshot): void {
    const data = this.#data;
    const version = data.version + 1; // what readers cached may be gone
    const now = Date.now();
    Object.assign(data, emptyData(), { version });
    for (const { repository, ...usage } of snapshot.usage.repositories) data.repositories.set(repository, usage);
    for (const { repository, digest, size } of snapshot.links) {
      inner(data.links, repository).set(digest, { size, linkedAt: now });
      const tenant = data.repositories.get(repository)?.tenant ?? '';
      const held = inner(data.tenantBlobs, tenant).get(digest) ?? { size, links: 0 };
      held.links++;
      inner(data.tenantBlobs, tenant).set(digest, held);
    }
    for (const { tenant, ...usage } of snapshot.usage.tenants) data.tenants.set(tenant, usage);
    for (const record of snapshot.manifests)
      inner(data.manifests, record.repository).set(record.digest, { record: copyManifest(record), createdAt: now });
    for (const { repository, tag, digest } of snapshot.tags) inner(data.tags, repository).set(tag, digest);
    for (const upload of snapshot.uploads) data.uploads.set(upload.id, { ...upload, state: viaJson(upload.state) });
    for (const { digest, size, state } of snapshot.blobs)
      data.blobs.set(digest, { size, state: state as BlobRow['state'], touchedAt: now });
  }

  /** Like a database round trip, answer on a later turn of the event loop; a closed store is unavailable. */
  async #io(): Promise<void> {
    await yieldToLoop();
    if (this.#closed) throw new UnavailableError('store is closed', this.name);
  }

  #announce(): void {
    this.#data.version++;
  }

  #upload(id: string): UploadRow {
    const row = this.#data.uploads.get(id);
    if (!row) throw new NotFoundError(`upload ${id} not found`, this.name);
    return row;
  }

  #tenant(name: string): TenantUsage {
    let usage = this.#data.tenants.get(name);
    if (!usage) this.#data.tenants.set(name, (usage = { bytes: 0, blobs: 0, reserved: 0 }));
    return usage;
  }

  /** The repository's tenant, creating the repository with `tenant` if it does not exist. */
  #takeRepository(name: string, tenant: string): string {
    let repo = this.#data.repositories.get(name);
    if (!repo) this.#data.repositories.set(name, (repo = { tenant, bytes: 0, blobs: 0 }));
    return repo.tenant;
  }

  /** Link or re-link; usage counts a new link (a blob once per tenant). */
  #addLink(repository: string, tenant: string, digest: string, size: number): void {
    const links = inner(this.#data.links, repository);
    const existing = links.get(digest);
    if (existing) {
      existing.linkedAt = Date.now();
      return;
    }
    links.set(digest, { size, linkedAt: Date.now() });
    const repo = this.#data.repositories.get(repository) as RepositoryUsage;
    repo.bytes += size;
    repo.blobs++;
    const tenantBlobs = inner(this.#data.tenantBlobs, tenant);
    const held = tenantBlobs.get(digest) ?? { size, links: 0 };
    held.links++;
    tenantBlobs.set(digest, held);
    if (held.links === 1) {
      const usage = this.#tenant(tenant);
      usage.bytes += size;
      usage.blobs++;
    }
  }

  #removeLinks(repository: string, tenant: string, links: Array<{ digest: string; size: number }>): UnlinkedBlob[] {
    const repo = this.#data.repositories.get(repository) as RepositoryUsage;
    const tenantBlobs = inner(this.#data.tenantBlobs, tenant);
    return links.map(({ digest, size }) => {
      this.#data.links.get(repository)?.delete(digest);
      repo.bytes -= size;
      repo.blobs--;
      const held = tenantBlobs.get(digest);
      if (held) held.links--;
      const released = !held || held.links <= 0;
      if (held && released) {
        tenantBlobs.delete(digest);
        const usage = this.#tenant(tenant);
        usage.bytes -= size;
        usage.blobs--;
      }
      return { digest, size, released };
    });
  }

  /** A repository with no manifest and no link left leaves the catalog. */
  #endIfEmpty(repository: string): void {
    if (this.#data.links.get(repository)?.size || this.#data.manifests.get(repository)?.size) return;
    for (const table of [this.#data.links, this.#data.manifests, this.#data.tags]) table.delete(repository);
    this.#data.repositories.delete(repository);
  }

  #dropManifest(repository: string, digest: string): boolean {
    const tags = this.#data.tags.get(repository);
    for (const [name, target] of tags ?? []) if (target === digest) tags?.delete(name);
    return this.#data.manifests.get(repository)?.delete(digest) ?? false;
  }

  /** Whether a link, a manifest reference or a committing upload names the digest. */
  #inUse(digest: string): boolean {
    for (const links of this.#data.links.values()) if (links.has(digest)) return true;
    for (const manifests of this.#data.manifests.values())
      for (const m of manifests.values()) if (m.record.blobs.includes(digest)) return true;
    for (const upload of this.#data.uploads.values()) if (upload.committing === digest) return true;
    return false;
  }

  #collectable(digest: string, row: BlobRow, cutoff: number): boolean {
    return row.state === 'live' && row.touchedAt < cutoff && !this.#inUse(digest);
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
  const { leaseToken: _token, committing: _committing, ...record } = row;
  return { ...record, state: viaJson(row.state) };
}
