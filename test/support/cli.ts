import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { S3TestEnv } from '@berthjs/storage-s3/testing';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface BerthProcess {
  url: string;
  /** The `/metrics` URL, with `--metrics-port`. */
  metricsUrl?: string;
  /** Resolves when the process is gone, with its exit code (null when a signal ended it). */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  child: ChildProcess;
  /** Log lines printed so far (JSON objects from pino). */
  logs: Record<string, unknown>[];
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Start `berth serve` in a child process, from the TypeScript sources (or, with `built`, the
 * compiled `dist/bin.cjs` exactly as installed); resolves once it listens.
 */
export function spawnBerth(args: string[], env: NodeJS.ProcessEnv = {}, { built = false } = {}): Promise<BerthProcess> {
  const entry = built ? ['packages/cli/dist/bin.cjs'] : ['--conditions=source', '--import', 'tsx', 'packages/cli/src/bin.cts'];
  const child = spawn(process.execPath, [...entry, 'serve', '--port', '0', ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      // Never leave a server behind: it would keep the test process alive forever.
      child.kill();
      reject(new Error(`berth did not start in 30 s: ${stderr}`));
    }, 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`berth exited with ${code}: ${stderr}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === 'berth is serving') {
        clearTimeout(timer);
        resolve({
          url: entry.url as string,
          metricsUrl: entry.metricsUrl as string | undefined,
          exit: exited,
          child,
          logs,
          async stop(signal = 'SIGTERM') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            await exited;
          },
        });
      }
    });
  });
}

export interface BerthRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built `berth` command to its end (or kill it after `timeoutMs`), collecting its output. */
export function runBerth(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<BerthRun> {
  const child = spawn(process.execPath, ['packages/cli/dist/bin.cjs', ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => {
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The environment of a `berth serve` on `bucket` of the test S3 and Postgres `schema` (credentials through the AWS chain). */
export function s3ServeEnv(env: S3TestEnv, bucket: string, schema: string): NodeJS.ProcessEnv {
  return {
    BERTH_DATABASE_SCHEMA: schema,
    BERTH_S3_BUCKET: bucket,
    BERTH_S3_ENDPOINT: env.endpoint,
    BERTH_S3_REGION: env.region,
    BERTH_S3_FORCE_PATH_STYLE: 'true',
    AWS_ACCESS_KEY_ID: env.accessKeyId,
    AWS_SECRET_ACCESS_KEY: env.secretAccessKey,
  };
}
