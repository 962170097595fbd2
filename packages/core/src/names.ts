import { OciError } from './errors.js';

/** Repository name grammar of distribution-spec v1.1 (allows `__` and runs of `-`). */
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** Clients cap `host[:port]/name` at 255 characters; keep names well inside that. */
export const MAX_NAME_LENGTH = 255;

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

export function assertRepositoryName(name: string): void {
  if (!isRepositoryName(name)) {
    throw new OciError('NAME_INVALID', { detail: { name } });
  }
}

export function isTag(value: string): boolean {
  return TAG.test(value);
}
