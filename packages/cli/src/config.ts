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
  /** fs blob downloads by sendfile(2) (see NodeWriteOptions.sendfile in @berthjs/core). */
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
  /** A response the client reads nothing of for this long (ms) is ended (0: never). */
  sendIdleTimeoutMs: number;
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
  /** `/metrics` on a listener of its own; off when unset. */
  metrics?: { port: number; host: string };
  /** The client address comes from `X-Forwarded-For` (one proxy in front). */
  trustProxy: boolean;
  /** How long a shutdown lets requests in flight finish before cutting them (ms). */
  shutdownTimeoutMs: number;
  /** PEM files: serve HTTPS instead of HTTP. */
  tls?: { certFile: string; keyFile: string };
  /** Requests per second each caller (principal, else address) may make; unlimited when unset. */
  rateLimit?: number;
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
  'send-idle-timeout': {
    type: 'string',
    env: 'BERTH_SEND_IDLE_TIMEOUT_SECONDS',
    default: '60',
    help: 'end a response whose client reads nothing of it for this many seconds (0: never)',
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
  'token-ttl': {
    type: 'string',
    env: 'BERTH_TOKEN_TTL_SECONDS',
    default: '300',
    help: 'token lifetime in seconds; tokens claiming a longer one are refused',
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
  'metrics-port': {
    type: 'string',
    env: 'BERTH_METRICS_PORT',
    default: '',
    help: 'serve Prometheus metrics at /metrics on this port (a listener of its own; off by default)',
  },
  'metrics-host': { type: 'string', env: 'BERTH_METRICS_HOST', default: '', help: 'address the metrics listener binds (default: --host)' },
  'trust-proxy': {
    type: 'boolean',
    env: 'BERTH_TRUST_PROXY',
    default: 'false',
    help: 'behind a reverse proxy: take the client address from X-Forwarded-For (the address the proxy saw)',
  },
  'shutdown-timeout': {
    type: 'string',
    env: 'BERTH_SHUTDOWN_TIMEOUT_SECONDS',
    default: '30',
    help: 'on SIGTERM/SIGINT, seconds requests in flight get to finish before they are cut',
  },
  'tls-cert': { type: 'string', env: 'BERTH_TLS_CERT', default: '', help: 'PEM certificate (chain): serve HTTPS; needs --tls-key' },
  'tls-key': { type: 'string', env: 'BERTH_TLS_KEY', default: '', help: 'PEM private key of --tls-cert' },
  'rate-limit': {
    type: 'string',
    env: 'BERTH_RATE_LIMIT',
    default: '',
    help: 'requests per second per caller (user, else address), e.g. 50/s; more get 429 with Retry-After',
  },
} as const;

/** A setting that cannot work: `berth serve` prints the message (one line) and exits with code 2. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type OptionName = keyof typeof SERVE_OPTIONS;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const MiB = 1024 * 1024;

/**
 * Read and check every setting. Anything malformed or contradictory throws a ConfigError naming
 * the flag (or the variable it came from) and the problem, before anything is created.
 */
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
  const values = parseFlags(args, extra);
  const flags = Object.fromEntries(Object.keys(extra).map((name) => [name, values[name]]));
  return { config: serveConfig(values, env), flags };
}

function serveConfig(values: Partial<Record<string, string | boolean>>, env: NodeJS.ProcessEnv): ServeConfig {
  const given = (name: OptionName) => values[name] !== undefined || (env[SERVE_OPTIONS[name].env] ?? '') !== '';
  /** How the setting was given, for messages: the flag, or the variable it came from. */
  const source = (name: OptionName) => (values[name] === undefined && env[SERVE_OPTIONS[name].env] ? SERVE_OPTIONS[name].env : `--${name}`);
  const get = (name: OptionName): string => {
    const flag = values[name];
    if (flag !== undefined) return String(flag);
    return env[SERVE_OPTIONS[name].env] || SERVE_OPTIONS[name].default;
  };
  const fail = (name: OptionName, problem: string): never => {
    throw new ConfigError(`${source(name)}: ${problem}`);
  };
  const integer = (name: OptionName, min: number, max = Number.MAX_SAFE_INTEGER) => {
    const text = get(name).trim();
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      fail(
        name,
        `must be an integer ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(text)}`,
      );
    }
    return value;
  };
  // Boolean flags take no value; their variables accept exactly true/false/1/0.
  const enabled = (name: OptionName) => {
    if (values[name] !== undefined) return values[name] === true;
    const text = (env[SERVE_OPTIONS[name].env] ?? '').trim().toLowerCase();
    if (text === '') return false;
    if (text === 'true' || text === '1') return true;
    if (text === 'false' || text === '0') return false;
    return fail(name, `must be true, false, 1 or 0, got ${JSON.stringify(env[SERVE_OPTIONS[name].env])}`);
  };
  const url = (name: OptionName, protocols: string[]) => {
    const text = get(name);
    let parsed: URL | undefined;
    try {
      parsed = new URL(text);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !protocols.includes(parsed.protocol)) {
      fail(name, `must be a ${protocols.map((p) => `${p}//`).join(' or ')} URL, got ${JSON.stringify(redactUrl(text))}`);
    }
    return text;
  };
  /** `a` only makes sense together with `b`. */
  const requires = (a: OptionName, b: OptionName, why = '') => {
    if (given(a) && !given(b)) fail(a, `needs --${b}${why}`);
  };

  const logLevel = get('log-level').toLowerCase();
  if (!LOG_LEVELS.includes(logLevel)) fail('log-level', `must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(get('log-level'))}`);
  const port = integer('port', 0, 65535);
  const metricsPort = given('metrics-port') ? integer('metrics-port', 0, 65535) : undefined;
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === port)
    fail('metrics-port', `must differ from --port (${port}): metrics get a listener of their own`);
  requires('metrics-host', 'metrics-port');
  const databaseUrl = given('database-url') ? url('database-url', ['postgres:', 'postgresql:']) : undefined;
  requires('database-schema', 'database-url', ' (SQLite has no schemas)');
  if (given('database-schema') && !/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(get('database-schema'))) {
    fail('database-schema', `must be a plain Postgres identifier (letters, digits, _), got ${JSON.stringify(get('database-schema'))}`);
  }

  const bucket = get('s3-bucket');
  for (const name of ['s3-endpoint', 's3-region', 's3-force-path-style', 's3-prefix', 's3-part-size', 's3-redirect'] as const) {
    requires(name, 's3-bucket');
  }
  if (bucket && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    fail('s3-bucket', `is not a valid bucket name: ${JSON.stringify(bucket)}`);
  const partSize = byteSize(get('s3-part-size'));
  if (partSize === undefined || partSize < 5 * MiB || partSize > 5 * 1024 * MiB) {
    fail('s3-part-size', `must be a size from 5MiB to 5GiB (bytes, or with KiB, MiB, GiB), got ${JSON.stringify(get('s3-part-size'))}`);
  }

  const htpasswd = get('htpasswd');
  requires('token-auth', 'htpasswd', ' (the users who may log in)');
  requires('anonymous-pull', 'htpasswd', ' (without auth everyone may pull already)');
  for (const name of ['token-realm', 'token-service', 'token-key', 'token-verify-keys', 'token-ttl'] as const) requires(name, 'token-auth');
  requires('tls-cert', 'tls-key');
  requires('tls-key', 'tls-cert');

  const size = (name: OptionName) => {
    const value = byteSize(get(name));
    if (value === undefined) fail(name, `must be a size in bytes (or with KiB, MiB, GiB), got ${JSON.stringify(get(name))}`);
    return value as number;
  };
  const time = (name: OptionName) => {
    try {
      return duration(name, get(name));
    } catch {
      return fail(name, `must be a duration (e.g. 24h, 30m, 90s, or seconds), got ${JSON.stringify(get(name))}`);
    }
  };
  const rateLimit = given('rate-limit') ? perSecond(get('rate-limit')) : undefined;
  if (rateLimit === null) fail('rate-limit', `must be requests per second such as 50/s, got ${JSON.stringify(get('rate-limit'))}`);

  const config: ServeConfig = {
    port,
    host: get('host'),
    dataDir: resolve(get('data-dir')),
    databaseUrl,
    deletes: !enabled('no-delete'),
    sendfile: !enabled('no-sendfile'),
    maxManifestBytes: integer('max-manifest-bytes', 1),
    logLevel,
    uploadTtlMs: integer('upload-ttl', 1) * 1000,
    uploadLeaseMs: integer('upload-lease', 1) * 1000,
    bodyIdleTimeoutMs: integer('body-idle-timeout', 0) * 1000,
    bodyMinBytesPerSecond: integer('body-min-rate', 0),
    sendIdleTimeoutMs: integer('send-idle-timeout', 0) * 1000,
    headerTimeoutMs: integer('header-timeout', 1) * 1000,
    maxConcurrentUploads: integer('max-concurrent-uploads', 1),
    readCacheBytes: size('read-cache-size'),
    manifestMemoryBytes: given('manifest-memory') ? size('manifest-memory') : undefined,
    databaseSchema: get('database-schema') || undefined,
    s3: bucket
      ? {
          bucket,
          endpoint: given('s3-endpoint') ? url('s3-endpoint', ['http:', 'https:']) : undefined,
          region: get('s3-region') || undefined,
          forcePathStyle: enabled('s3-force-path-style'),
          prefix: get('s3-prefix') || undefined,
          partSize,
          redirect: enabled('s3-redirect'),
        }
      : undefined,
    htpasswd: htpasswd ? resolve(htpasswd) : undefined,
    anonymousPull: enabled('anonymous-pull'),
    token: enabled('token-auth')
      ? {
          realm: given('token-realm') ? url('token-realm', ['http:', 'https:']) : undefined,
          service: get('token-service'),
          keyFile: get('token-key') ? resolve(get('token-key')) : undefined,
          verifyKeyFiles: get('token-verify-keys')
            .split(',')
            .filter(Boolean)
            .map((f) => resolve(f)),
          ttlSeconds: integer('token-ttl', 1),
        }
      : undefined,
    metrics: metricsPort === undefined ? undefined : { port: metricsPort, host: get('metrics-host') || get('host') },
    trustProxy: enabled('trust-proxy'),
    shutdownTimeoutMs: integer('shutdown-timeout', 0) * 1000,
    tls: given('tls-cert') ? { certFile: resolve(get('tls-cert')), keyFile: resolve(get('tls-key')) } : undefined,
    rateLimit: rateLimit ?? undefined,
    gc: {
      intervalMs: time('gc-interval'),
      gracePeriodMs: time('gc-grace-period'),
      untagged: enabled('gc-untagged'),
      leaseMs: Math.max(1000, time('gc-lease')),
    },
    quota: given('quota') ? size('quota') : undefined,
  };
  // Booleans are checked even when nothing else reads them (a typo'd value must not pass).
  for (const [name, option] of Object.entries(SERVE_OPTIONS)) if (option.type === 'boolean') enabled(name as OptionName);
  return config;
}

/** The flags, with parseArgs' errors turned into one-line ConfigErrors. */
function parseFlags(args: string[], extra: CommandOptions): Partial<Record<string, string | boolean>> {
  try {
    const { values } = parseArgs({
      args,
      options: Object.fromEntries(
        [...Object.entries(SERVE_OPTIONS), ...Object.entries(extra)].map(([name, o]) => [name, { type: o.type }]),
      ),
      strict: true,
      allowPositionals: false,
    });
    return values as Partial<Record<string, string | boolean>>;
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    const flag = /'([^']*)'/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new ConfigError(`${flag}: unknown option (berth serve --help lists them)`);
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
      throw new ConfigError(`${flag}: unexpected argument (berth serve takes options only)`);
    const option = /'(--[a-z0-9-]+)/.exec(message)?.[1];
    if (option && message.includes('argument missing')) throw new ConfigError(`${option}: needs a value`);
    if (option && message.includes('ambiguous'))
      throw new ConfigError(`${option}: a value starting with - must be written ${option}=<value>`);
    throw new ConfigError(message.split('\n')[0]);
  }
}

/** `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages. */
export function redactUrl(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, '$1:***@');
}

/** `50/s` or `2.5/s` → 2.5; null when malformed. */
function perSecond(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*\/\s*s\s*$/i.exec(text);
  const value = match ? Number(match[1]) : NaN;
  return value > 0 && Number.isFinite(value) ? value : null;
}

const UNITS: Record<string, number> = { '': 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 };

/** `8388608`, `8MiB`, `512KiB`, `1GiB` → bytes; undefined when malformed. */
function byteSize(text: string): number | undefined {
  const m = /^(\d+)\s*(kib|mib|gib|tib)?$/i.exec(text.trim());
  const value = m ? Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()] : NaN;
  return Number.isSafeInteger(value) ? value : undefined;
}

/** `BERTH_*` variables that name no setting (typos such as BERTH_PROT), for a warning. */
export function unknownVariables(env: NodeJS.ProcessEnv = process.env): string[] {
  const known = new Set<string>(Object.values(SERVE_OPTIONS).map((o) => o.env));
  return Object.keys(env).filter((name) => name.startsWith('BERTH_') && !name.startsWith('BERTH_TEST_') && !known.has(name));
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `24h`, `30m`, `90s`, `500ms`, `1d`, or plain seconds → milliseconds; a ConfigError naming `--name` otherwise. */
export function duration(name: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/i.exec(text.trim());
  const value = m ? Math.round(Number(m[1]) * DURATION_UNITS[(m[2] ?? 's').toLowerCase()]) : NaN;
  if (!Number.isSafeInteger(value))
    throw new ConfigError(`--${name}: must be a duration (e.g. 24h, 30m, 90s, or seconds), got ${JSON.stringify(text)}`);
  return value;
}

/** `--help` of a command that takes the serve flags plus its own. */
export function commandHelp(usage: string, extra: CommandOptions): string {
  const own = Object.entries(extra).map(([name, o]) => `  --${name.padEnd(20)} ${o.help}`);
  return `Usage: ${usage}\n\n${own.join('\n')}\n\nand every \`berth serve\` flag and variable (the stores to work on): berth serve --help\n`;
}

export function serveHelp(): string {
  const lines = Object.entries(SERVE_OPTIONS).map(
    ([name, o]) => `  --${name.padEnd(20)} ${o.env.padEnd(26)} ${o.help}${o.default ? ` (default ${o.default})` : ''}`,
  );
  const extra = ['  --help                 print this', '  --version              print the version'];
  return `Usage: berth serve [options]\n\n  flag                   environment variable\n${[...lines, ...extra].join('\n')}\n`;
}
