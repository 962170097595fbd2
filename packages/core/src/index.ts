export * from './ports/index.js';
export { createRegistry, renderError, type Registry, type RegistryStats } from './registry.js';
export { clientAddress, defaultPrincipalName, type DrainReport, type Logger, type RequestFacts } from './observe.js';
export type { HealthReport, StoreHealth } from './health.js';
export { tokenBucket, type RateLimit, type RateLimitRequest, type TokenBucketOptions } from './rate-limit.js';
export type { Route, RouteName } from './routes.js';
export type { RegistryOptions } from './options.js';
export type { CollectOptions, CollectProgress, CollectReport, TenantCollectReport } from './gc.js';
export { header, type BerthHandler, type BerthRequest, type BerthResponse } from './http.js';
export { writeBody, writeResponse, type NodeWriteOptions } from './node-response.js';
export { OciError, OciErrors, ERROR_CODES, type OciErrorCode } from './errors.js';
export { RegistryEventEmitter, type RegistryEvents } from './events.js';
export {
  formatScope,
  UnauthorizedError,
  type Action,
  type AnonymousAccess,
  type AuthHooks,
  type AuthorizeRequest,
  type ChallengeError,
  type Principal,
  type Scope,
} from './auth.js';
export { parseDigest, isDigest, digestOf, type DigestAlgorithm } from './digest.js';
export { isRepositoryName, isTag } from './names.js';
export { MEDIA_TYPES, parseManifest } from './manifest.js';
export { inventory, type InventoryOptions, type RepositorySummary, type TagSummary } from './inventory.js';
export { formatBytes } from './uploads.js';
export { watchSend } from './send-idle.js';
