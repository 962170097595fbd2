import { randomUUID } from 'node:crypto';
import type { MetadataStore } from '@berthjs/core';

/**
 * Link a blob into a repository the way an upload's commit does (a session, `beginCommit`,
 * `finishCommit`), for tests that need links without pushing bytes. `tenant` is the
 * repository's tenant if the link creates it.
 */
export async function linkBlob(store: MetadataStore, repository: string, digest: string, size: number, tenant = ''): Promise<void> {
  const id = randomUUID();
  await store.createUpload({ id, repository, tenant, state: {} });
  const start = await store.beginCommit(id, digest, size);
  if (start.status !== 'ready') throw new Error(`linkBlob: ${digest} cannot be committed now (${start.status})`);
  await store.finishCommit(id, digest, size);
}
