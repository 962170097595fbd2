import { parseArgs } from 'node:util';
import { resolve } from 'node:path';

/** Every `berth serve` setting: a flag, else an environment variable, else the default. */
export interface ServeConfig {
  port: number;
  host: string;
  dataDir: string;
  /** `postgres://...` switches metadata to Postgres; otherwise SQLite in the data directory. */
  databaseUrl?: string;
  deletes: boolean;
  /** fs blob downloads by sendfile(2) (see FsBlobStoreOptions.sendfile). */
  sendfile: boolean;
  maxManifestBytes: number;
  logLevel: string;
  /** Abort upload sessions idle for this long (ms). */
  uploadTtlMs: number;
  /** Postgres schema for Berth's tables (default `public`). */
  databaseSchema?: string;
  /** How long a request holds an upload session (ms); bounds how long a crashed process blocks it. */
  uploadLeaseMs: number;
  /** A request body that sends nothing for this long (ms) is ended (0: never). */
  bodyIdleTimeoutMs: number;
  /** ...and must average at least this many bytes per second over each such window. */
  bodyMinBytesPerSecond: number;
  /** A client must send its request headers within this long (ms). */
  headerTimeoutMs: number;
  /** Upload requests streamed at once; more get 429. */
  maxConcurrentUploads: number;
  /** Bytes the read cache may use. */
  readCacheBytes: number;
  /** Manifest bytes all requests may hold in memory at once. */
  manifestMemoryBytes?: number;
  /** Set when `--s3-bucket` is: blobs go to S3 instead of the data dir. */
  s3?: S3Config;
  /** An htpasswd file (bcrypt): its users may do everything; auth is off without it. */
  htpasswd?: string;
  /** With auth on, anonymous callers may still pull. */
  anonymousPull: boolean;
  /** Set when `--token-auth` is: Bearer tokens from the built-in `/token` endpoint instead of Basic. */
  token?: TokenConfig;
  /** Garbage collection: on a schedule in `berth serve` (`intervalMs` 0: off), and the defaults of `berth gc`. */
  gc: GcConfig;
  /** Bytes each tenant (a repository's first path segment) may store; undefined: no quota. */
  quota?: number;
}

export interface GcConfig {
  intervalMs: number;
  gracePeriodMs: number;
  untagged: boolean;
  leaseMs: number;
}

export interface TokenConfig {
  /** The token endpoint URL sent to clients; default `<listen url>/token`. */
  realm?: string;
  service: string;
  /** PEM private key that signs tokens; default `<data dir>/token-key.pem`, created on first start. */
  keyFile?: string;
  /** PEM keys of earlier signers whose tokens are still accepted (key rotation). */
  verifyKeyFiles: string[];
  ttlSeconds: number;
}

export interface S3Config {
  bucket: string;
  endpoint?: string;
  region?: string;
  forcePathStyle: boolean;
  prefix?: string;
  partSize?: number;
  /** Answer blob GETs with 307 to presigned URLs. */
  redirect: boolean;
}

export const SERVE_OPTIONS = {
  port: { type: 'string', env: 'BERTH_PORT', default: '5000', help: 'TCP port to listen on' },
  host: { type: 'string', env: 'BERTH_HOST', default: '127.0.0.1', help: 'address to bind' },
  'data-dir': { type: 'string', env: 'BERTH_DATA_DIR', default: './data', help: 'blobs and the embedded database live here' },
  'database-url': {
    type: 'string',
    env: 'BERTH_DATABASE_URL',
    default: '',
    help: 'postgres:// URL for metadata (default: SQLite in the data dir)',
  },
  'no-delete': { type: 'boolean', env: 'BERTH_NO_DELETE', default: 'false', help: 'refuse DELETE of manifests, tags and blobs (405)' },
  'no-sendfile': {
    type: 'boolean',
    env: 'BERTH_NO_SENDFILE',
    default: 'false',
    help: 'stream fs blob downloads through Node instead of sendfile(2)',
  },
  'max-manifest-bytes': {
    type: 'string',
    env: 'BERTH_MAX_MANIFEST_BYTES',
    default: String(4 * 1024 * 1024),
    help: 'largest manifest accepted',
  },
  'log-level': {
    type: 'string',
    env: 'BERTH_LOG_LEVEL',
    default: 'info',
    help: 'pino level: info logs one line per request; silent turns logging off',
  },
  'upload-ttl': {
    type: 'string',
    env: 'BERTH_UPLOAD_TTL_SECONDS',
    default: '86400',
    help: 'abort upload sessions idle for this many seconds',
  },
  'upload-lease': {
    type: 'string',
    env: 'BERTH_UPLOAD_LEASE_SECONDS',
    default: '60',
    help: 'a crashed request blocks its upload session this long',
  },
  'body-idle-timeout': {
    type: 'string',
    env: 'BERTH_BODY_IDLE_TIMEOUT_SECONDS',
    default: '60',
    help: 'end a request whose body sends no byte for this many seconds (408, lease freed; 0: never)',
  },
  'body-min-rate': {
    type: 'string',
    env: 'BERTH_BODY_MIN_BYTES_PER_SECOND',
    default: '256',
    help: 'a request body must average this many bytes/s over each --body-idle-timeout window, or it is ended (0: any byte will do)',
  },
  'header-timeout': {
    type: 'string',
    env: 'BERTH_HEADER_TIMEOUT_SECONDS',
    default: '30',
    help: 'close a connection that has not sent its request headers within this many seconds',
  },
  'max-concurrent-uploads': {
    type: 'string',
    env: 'BERTH_MAX_CONCURRENT_UPLOADS',
    default: '128',
    help: 'upload requests streamed at once; more get 429 with Retry-After',
  },
  'read-cache-size': {
    type: 'string',
    env: 'BERTH_READ_CACHE_SIZE',
    default: '32MiB',
    help: 'memory for cached tags, manifests and blob links (bytes or KiB/MiB/GiB; 0: no cache)',
  },
  'manifest-memory': {
    type: 'string',
    env: 'BERTH_MANIFEST_MEMORY',
    default: '',
    help: 'manifest bytes all requests may hold at once; more get 429 (default 16 x --max-manifest-bytes)',
  },
  'database-schema': {
    type: 'string',
    env: 'BERTH_DATABASE_SCHEMA',
    default: '',
    help: 'Postgres schema for the tables (created if missing; default public)',
  },
  's3-bucket': { type: 'string', env: 'BERTH_S3_BUCKET', default: '', help: 'store blobs in this S3 bucket (credentials: the AWS chain)' },
  's3-endpoint': { type: 'string', env: 'BERTH_S3_ENDPOINT', default: '', help: 'S3 endpoint URL for non-AWS providers' },
  's3-region': { type: 'string', env: 'BERTH_S3_REGION', default: '', help: 'S3 region (default AWS_REGION or us-east-1)' },
  's3-force-path-style': { type: 'boolean', env: 'BERTH_S3_FORCE_PATH_STYLE', default: 'false', help: 'path-style URLs (MinIO, Ceph RGW)' },
  's3-prefix': { type: 'string', env: 'BERTH_S3_PREFIX', default: '', help: 'key prefix for everything in the bucket' },
  's3-part-size': {
    type: 'string',
    env: 'BERTH_S3_PART_SIZE',
    default: '8MiB',
    help: 'multipart part size, bytes or KiB/MiB/GiB (>= 5MiB)',
  },
  's3-redirect': { type: 'boolean', env: 'BERTH_S3_REDIRECT', default: 'false', help: 'redirect blob GETs to presigned S3 URLs (307)' },
  htpasswd: {
    type: 'string',
    env: 'BERTH_HTPASSWD',
    default: '',
    help: 'htpasswd file (bcrypt, htpasswd -B): turns on auth; its users may do everything',
  },
  'anonymous-pull': {
    type: 'boolean',
    env: 'BERTH_ANONYMOUS_PULL',
    default: 'false',
    help: 'with auth on, anonymous callers may still pull',
  },
  'token-auth': {
    type: 'boolean',
    env: 'BERTH_TOKEN_AUTH',
    default: 'false',
    help: 'Bearer tokens from a built-in /token endpoint (docker/skopeo/podman login); needs --htpasswd',
  },
  'token-realm': {
    type: 'string',
    env: 'BERTH_TOKEN_REALM',
    default: '',
    help: 'token endpoint URL clients are sent to (default http://<host>:<port>/token)',
  },
  'token-service': { type: 'string', env: 'BERTH_TOKEN_SERVICE', default: 'berth', help: 'service name: token audience and issuer' },
  'token-key': {
    type: 'string',
    env: 'BERTH_TOKEN_KEY_FILE',
    default: '',
    help: 'PEM private key signing tokens (default <data-dir>/token-key.pem, created if missing)',
  },
  'token-verify-keys': {
    type: 'string',
    env: 'BERTH_TOKEN_VERIFY_KEYS',
    default: '',
    help: 'comma-separated PEM keys of earlier signers still accepted (rotation)',
  },
  'gc-interval': {
    type: 'string',
    env: 'BERTH_GC_INTERVAL',
    default: '24h',
    help: 'collect garbage this often (e.g. 24h, 30m; 0 turns it off)',
  },
  'gc-grace-period': {
    type: 'string',
    env: 'BERTH_GC_GRACE_PERIOD',
    default: '24h',
    help: 'garbage collection spares what was pushed more recently than this',
  },
  'gc-untagged': {
    type: 'boolean',
    env: 'BERTH_GC_UNTAGGED',
    default: 'false',
    help: 'garbage collection also deletes manifests no tag, index or kept subject reaches',
  },
  'gc-lease': {
    type: 'string',
    env: 'BERTH_GC_LEASE',
    default: '60s',
    help: 'a killed collection keeps the next one from starting this long',
  },
  quota: {
    type: 'string',
    env: 'BERTH_QUOTA',
    default: '',
    help: 'bytes (or KiB/MiB/GiB/TiB) each tenant, a first path segment, may store',
  },
  'token-ttl': {
    type: 'string',
    env: 'BERTH_TOKEN_TTL_SECONDS',
    default: '300',
    help: 'token lifetime in seconds; tokens claiming a longer one are refused',
  },
} as const;

export function parseServeConfig(args: string[], env: NodeJS.ProcessEnv = process.env): ServeConfig {
  return parseCommandConfig(args, env, {}).config;
}

/** Flags a command adds to the `berth serve` ones (`berth gc`, `berth usage`). */
export type CommandOptions = Record<string, { type: 'string' | 'boolean'; help: string }>;

/** The serve configuration plus the command's own flags, as given (undefined when absent). */
export function parseCommandConfig(
  args: string[],
  env: NodeJS.ProcessEnv,
  extra: CommandOptions,
): { config: ServeConfig; flags: Record<string, string | boolean | undefined> } {
  const { values } = parseArgs({
    args,
    options: Object.fromEntries([...Object.entries(SERVE_OPTIONS), ...Object.entries(extra)].map(([name, o]) => [name, { type: o.type }])),
    strict: true,
  });
  const flags = Object.fromEntries(Object.keys(extra).map((name) => [name, values[name] as string | boolean | undefined]));
  return { config: serveConfig(values, env), flags };
}

function serveConfig(values: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): ServeConfig {
  const get = (name: keyof typeof SERVE_OPTIONS): string => {
    const flag = values[name];
    if (flag !== undefined) return String(flag);
    return env[SERVE_OPTIONS[name].env] ?? SERVE_OPTIONS[name].default;
  };
  const integer = (name: keyof typeof SERVE_OPTIONS) => {
    const value = Number(get(name));
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} must be a non-negative integer, got ${get(name)}`);
    return value;
  };
  const positive = (name: keyof typeof SERVE_OPTIONS) => {
    const value = integer(name);
    if (value === 0) throw new Error(`--${name} must be at least 1, got 0`);
    return value;
  };
  // Boolean flags take no value; their environment variables accept true/false (or 1/0).
  const enabled = (name: keyof typeof SERVE_OPTIONS) => ['true', '1'].includes(get(name).toLowerCase());
  const bucket = get('s3-bucket');
  const htpasswd = get('htpasswd');
  if (enabled('token-auth') && !htpasswd) throw new Error('--token-auth needs --htpasswd (the users who may log in)');
  return {
    port: integer('port'),
    host: get('host'),
    dataDir: resolve(get('data-dir')),
    databaseUrl: get('database-url') || undefined,
    deletes: !enabled('no-delete'),
    sendfile: !enabled('no-sendfile'),
    maxManifestBytes: integer('max-manifest-bytes'),
    logLevel: get('log-level'),
    uploadTtlMs: integer('upload-ttl') * 1000,
    uploadLeaseMs: integer('upload-lease') * 1000,
    bodyIdleTimeoutMs: integer('body-idle-timeout') * 1000,
    bodyMinBytesPerSecond: integer('body-min-rate'),
    headerTimeoutMs: positive('header-timeout') * 1000,
    maxConcurrentUploads: positive('max-concurrent-uploads'),
    readCacheBytes: byteSize('read-cache-size', get('read-cache-size')),
    manifestMemoryBytes: get('manifest-memory') ? byteSize('manifest-memory', get('manifest-memory')) : undefined,
    databaseSchema: get('database-schema') || undefined,
    s3: bucket
      ? {
          bucket,
          endpoint: get('s3-endpoint') || undefined,
          region: get('s3-region') || undefined,
          forcePathStyle: enabled('s3-force-path-style'),
          prefix: get('s3-prefix') || undefined,
          partSize: byteSize('s3-part-size', get('s3-part-size')),
          redirect: enabled('s3-redirect'),
        }
      : undefined,
    gc: {
      intervalMs: duration('gc-interval', get('gc-interval')),
      gracePeriodMs: duration('gc-grace-period', get('gc-grace-period')),
      untagged: enabled('gc-untagged'),
      leaseMs: Math.max(1000, duration('gc-lease', get('gc-lease'))),
    },
    quota: get('quota') ? byteSize('quota', get('quota')) : undefined,
    htpasswd: htpasswd ? resolve(htpasswd) : undefined,
    anonymousPull: enabled('anonymous-pull'),
    token: enabled('token-auth')
      ? {
          realm: get('token-realm') || undefined,
          service: get('token-service'),
          keyFile: get('token-key') ? resolve(get('token-key')) : undefined,
          verifyKeyFiles: get('token-verify-keys')
            .split(',')
            .filter(Boolean)
            .map((f) => resolve(f)),
          ttlSeconds: integer('token-ttl'),
        }
      : undefined,
  };
}

const UNITS: Record<string, number> = { '': 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 };

/** `8388608`, `8MiB`, `512KiB`, `1GiB` → bytes. */
function byteSize(name: string, text: string): number {
  const m = /^(\d+)\s*(kib|mib|gib|tib)?$/i.exec(text.trim());
  const value = m ? Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()] : NaN;
  if (!Number.isSafeInteger(value)) throw new Error(`--${name} must be a size in bytes (or KiB, MiB, GiB), got ${text}`);
  return value;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `24h`, `30m`, `90s`, `500ms`, `1d`, or plain seconds → milliseconds. */
export function duration(name: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/i.exec(text.trim());
  const value = m ? Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 's').toLowerCase()]) : NaN;
  if (!Number.isSafeInteger(value)) throw new Error(`--${name} must be a duration (e.g. 24h, 30m, 90s, or seconds), got ${text}`);
  return value;
}

export function serveHelp(): string {
  const lines = Object.entries(SERVE_OPTIONS).map(
    ([name, o]) => `  --${name.padEnd(20)} ${o.env.padEnd(26)} ${o.help}${o.default ? ` (default ${o.default})` : ''}`,
  );
  return `Usage: berth serve [options]\n\n  flag                   environment variable\n${lines.join('\n')}\n`;
}

/** `--help` of a command that takes the serve flags plus its own. */
export function commandHelp(usage: string, extra: CommandOptions): string {
  const own = Object.entries(extra).map(([name, o]) => `  --${name.padEnd(20)} ${o.help}`);
  return `Usage: ${usage}\n\n${own.join('\n')}\n\nand every \`berth serve\` flag and variable (the stores to work on): berth serve --help\n`;
}
