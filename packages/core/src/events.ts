import { EventEmitter } from 'node:events';
import type { CollectReport } from './gc.js';
import type { RequestFacts } from './observe.js';

/** What the registry tells its host, e.g. to meter usage, enforce quotas, send webhooks or audit. */
export interface RegistryEvents {
  'manifest.pushed': [{ repository: string; digest: string; mediaType: string; size: number; tags: string[]; subject?: string }];
  'manifest.deleted': [{ repository: string; digest: string }];
  'tag.updated': [{ repository: string; tag: string; digest: string }];
  'tag.deleted': [{ repository: string; tag: string }];
  'blob.pushed': [{ repository: string; digest: string; size: number }];
  'blob.mounted': [{ repository: string; from: string; digest: string; size: number }];
  'blob.deleted': [{ repository: string; digest: string }];
  'upload.aborted': [{ repository: string; id: string; reason: 'cancelled' | 'expired' | 'digest-mismatch' | 'quota' }];
  /** A garbage collection finished (not emitted when it was skipped because another one runs). */
  'gc.completed': [CollectReport];
  /** A garbage collection that held the lease failed; `report` counts what it did before. */
  'gc.failed': [{ error: unknown; report: CollectReport }];
  /** A failure that became a 500 or 503: the host logs it; the client saw no internals. */
  'request.failed': [{ error: unknown; method: string; url: string; requestId?: string }];
  /** Every `/v2` request (and every request of a handler passed to `observe`), once its response is over. */
  'request.completed': [RequestFacts];
}

export class RegistryEventEmitter extends EventEmitter<RegistryEvents> {}
