// Row shapes of the tables and their conversion to the port's records. NULL columns become absent
// fields (the port's optional fields are `undefined`, never `null`).
import type { ManifestRecord, ReferrerRecord, UploadRecord, UploadState } from '@berthjs/core';

export interface ManifestRow {
  repository: string;
  digest: string;
  media_type: string;
  content: Buffer;
  size: number;
  subject: string | null;
  artifact_type: string | null;
  annotations: string | null;
  blobs: string;
  children: string;
  created_at: number;
}

export type ReferrerRow = Pick<ManifestRow, 'digest' | 'media_type' | 'size' | 'artifact_type' | 'annotations'>;

export interface UploadRow {
  id: string;
  repository: string;
  tenant: string;
  byte_offset: number;
  state: string;
  algorithm: string | null;
  reserved: number;
  committing: string | null;
  created_at: number;
  updated_at: number;
  lease_token: string | null;
  lease_until: number;
}

export function manifestRow(manifest: ManifestRecord, now: number): ManifestRow {
  return {
    repository: manifest.repository,
    digest: manifest.digest,
    media_type: manifest.mediaType,
    content: manifest.content,
    size: manifest.content.length,
    subject: manifest.subject ?? null,
    artifact_type: manifest.artifactType ?? null,
    annotations: manifest.annotations === undefined ? null : JSON.stringify(manifest.annotations),
    blobs: JSON.stringify(manifest.blobs),
    children: JSON.stringify(manifest.children),
    created_at: now,
  };
}

export function toManifest(row: ManifestRow): ManifestRecord {
  const record: ManifestRecord = {
    repository: row.repository,
    digest: row.digest,
    mediaType: row.media_type,
    content: Buffer.isBuffer(row.content) ? row.content : Buffer.from(row.content),
    blobs: JSON.parse(row.blobs) as string[],
    children: JSON.parse(row.children) as string[],
  };
  if (row.subject !== null) record.subject = row.subject;
  if (row.artifact_type !== null) record.artifactType = row.artifact_type;
  if (row.annotations !== null) record.annotations = JSON.parse(row.annotations) as Record<string, string>;
  return record;
}

export function toReferrer(row: ReferrerRow): ReferrerRecord {
  const record: ReferrerRecord = { digest: row.digest, mediaType: row.media_type, size: Number(row.size) };
  if (row.artifact_type !== null) record.artifactType = row.artifact_type;
  if (row.annotations !== null) record.annotations = JSON.parse(row.annotations) as Record<string, string>;
  return record;
}

export function toUpload(row: UploadRow): UploadRecord {
  const record: UploadRecord = {
    id: row.id,
    repository: row.repository,
    tenant: row.tenant,
    offset: Number(row.byte_offset),
    state: JSON.parse(row.state) as UploadState,
    reserved: Number(row.reserved),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    leaseUntil: Number(row.lease_until),
  };
  if (row.algorithm !== null) record.algorithm = row.algorithm;
  return record;
}
