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
  maxManifestBytes: number;
  logLevel: string;
  /** Abort upload sessions idle for this long (ms). */
  uploadTtlMs: number;
}

export const SERVE_OPTIONS = {
  port: { type: 'string', env: 'BERTH_PORT', default: '5000', help: 'TCP port to listen on' },
  host: { type: 'string', env: 'BERTH_HOST', default: '127.0.0.1', help: 'address to bind' },
  'data-dir': { type: 'string', env: 'BERTH_DATA_DIR', default: './data', help: 'blobs and the embedded database live here' },
  'database-url': { type: 'string', env: 'BERTH_DATABASE_URL', default: '', help: 'postgres:// URL for metadata (default: SQLite in the data dir)' },
  'no-delete': { type: 'boolean', env: 'BERTH_NO_DELETE', default: 'false', help: 'refuse DELETE of manifests, tags and blobs (405)' },
  'max-manifest-bytes': { type: 'string', env: 'BERTH_MAX_MANIFEST_BYTES', default: String(4 * 1024 * 1024), help: 'largest manifest accepted' },
  'log-level': { type: 'string', env: 'BERTH_LOG_LEVEL', default: 'info', help: 'pino level: info logs one line per request; silent turns logging off' },
  'upload-ttl': { type: 'string', env: 'BERTH_UPLOAD_TTL_SECONDS', default: '86400', help: 'abort upload sessions idle for this many seconds' },
} as const;

export function parseServeConfig(args: string[], env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const { values } = parseArgs({
    args,
    options: Object.fromEntries(Object.entries(SERVE_OPTIONS).map(([name, o]) => [name, { type: o.type }])),
    strict: true,
  });
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
  return {
    port: integer('port'),
    host: get('host'),
    dataDir: resolve(get('data-dir')),
    databaseUrl: get('database-url') || undefined,
    deletes: get('no-delete') !== 'true',
    maxManifestBytes: integer('max-manifest-bytes'),
    logLevel: get('log-level'),
    uploadTtlMs: integer('upload-ttl') * 1000,
  };
}

export function serveHelp(): string {
  const lines = Object.entries(SERVE_OPTIONS).map(
    ([name, o]) => `  --${name.padEnd(20)} ${o.env.padEnd(26)} ${o.help}${o.default ? ` (default ${o.default})` : ''}`,
  );
  return `Usage: berth serve [options]\n\n  flag                   environment variable\n${lines.join('\n')}\n`;
}
