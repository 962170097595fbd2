// `berth serve` refuses settings that cannot work: one line naming the setting and the problem,
// exit code 2, and nothing created. Run against the built command (pnpm test builds first).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError, parseServeConfig, VERSION } from '@berthjs/cli';
import { createBucket, deleteBucket, requireS3, s3Client } from '@berthjs/storage-s3/testing';
import { runBerth, spawnBerth } from './support/cli.js';
import { tcpProxy } from './support/tcp-proxy.js';

describe('settings checked before anything starts', () => {
  const refused: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [['--port', '70000'], {}, /^--port: must be an integer from 0 to 65535, got "70000"$/],
    [['--port=-1'], {}, /^--port: must be an integer from 0 to 65535, got "-1"$/],
    [['--port'], {}, /^--port: needs a value$/],
    [[], { BERTH_PORT: '5o00' }, /^BERTH_PORT: must be an integer from 0 to 65535, got "5o00"$/],
    [['--metrics-port', '99999'], {}, /^--metrics-port: must be an integer from 0 to 65535/],
    [['--port', '5000', '--metrics-port', '5000'], {}, /^--metrics-port: must differ from --port/],
    [['--metrics-host', '0.0.0.0'], {}, /^--metrics-host: needs --metrics-port$/],
    [
      ['--database-url', 'mysql://root:hunter2@db/berth'],
      {},
      /^--database-url: must be a postgres:\/\/ or postgresql:\/\/ URL, got "mysql:\/\/root:\*\*\*@db\/berth"$/,
    ],
    [['--database-url', 'postgress://db/berth'], {}, /^--database-url: must be a postgres:\/\/ or postgresql:\/\//],
    [[], { BERTH_DATABASE_URL: './berth.sqlite' }, /^BERTH_DATABASE_URL: must be a postgres:\/\//],
    [['--database-schema', 'x'], {}, /^--database-schema: needs --database-url/],
    [['--log-level', 'verbose'], {}, /^--log-level: must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"$/],
    [[], { BERTH_NO_DELETE: 'yes' }, /^BERTH_NO_DELETE: must be true, false, 1 or 0, got "yes"$/],
    [[], { BERTH_TRUST_PROXY: 'on' }, /^BERTH_TRUST_PROXY: must be true, false, 1 or 0/],
    [['--token-auth'], {}, /^--token-auth: needs --htpasswd/],
    [['--anonymous-pull'], {}, /^--anonymous-pull: needs --htpasswd/],
    [['--token-ttl', '60'], {}, /^--token-ttl: needs --token-auth$/],
    [['--s3-prefix', 'x/'], {}, /^--s3-prefix: needs --s3-bucket$/],
    [['--s3-bucket', 'bkt', '--s3-part-size', '1MiB'], {}, /^--s3-part-size: must be a size from 5MiB to 5GiB/],
    [['--s3-bucket', 'Bad_Bucket'], {}, /^--s3-bucket: is not a valid bucket name/],
    [['--s3-bucket', 'bkt', '--s3-endpoint', 'minio:9000'], {}, /^--s3-endpoint: must be a http:\/\/ or https:\/\/ URL/],
    [['--tls-cert', 'cert.pem'], {}, /^--tls-cert: needs --tls-key$/],
    [['--upload-ttl', '0'], {}, /^--upload-ttl: must be an integer of at least 1, got "0"$/],
    [['--shutdown-timeout', '1.5'], {}, /^--shutdown-timeout: must be an integer/],
    [['--rate-limit', 'fast'], {}, /^--rate-limit: must be requests per second such as 50\/s, got "fast"$/],
    [['--bogus'], {}, /^--bogus: unknown option/],
    [['extra'], {}, /^extra: unexpected argument/],
  ];

  it('refuses each mistake with a ConfigError naming the setting', () => {
    for (const [args, env, message] of refused) {
      assert.throws(
        () => parseServeConfig(args, env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
        `${args.join(' ')} ${JSON.stringify(env)}`,
      );
    }
  });

  it('accepts what the README documents', () => {
    const config = parseServeConfig(['--rate-limit', '2.5/s', '--metrics-port', '9100', '--trust-proxy'], {
      BERTH_NO_DELETE: 'FALSE',
      BERTH_SHUTDOWN_TIMEOUT_SECONDS: '5',
      BERTH_DATABASE_URL: 'postgresql://db/berth',
    });
    assert.deepEqual(
      [config.rateLimit, config.metrics, config.trustProxy, config.deletes, config.shutdownTimeoutMs, config.databaseUrl],
      [2.5, { port: 9100, host: '127.0.0.1' }, true, true, 5000, 'postgresql://db/berth'],
    );
    assert.equal(parseServeConfig([], {}).shutdownTimeoutMs, 30_000);
  });
});

describe('berth serve refusing to start', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-refuse-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Each case gets its own (not yet existing) data dir, which must still not exist afterwards. */
  async function refuses(args: string[], env: NodeJS.ProcessEnv, message: RegExp, name: string) {
    const dataDir = join(dir, name);
    const run = await runBerth(['serve', '--port', '0', '--data-dir', dataDir, ...args], env);
    assert.equal(run.code, 2, `${name}: exit code (stderr: ${run.stderr})`);
    const lines = run.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `${name}: one line, no stack trace: ${run.stderr}`);
    assert.match(lines[0], message, name);
    assert.doesNotMatch(run.stdout, /berth is serving/);
    return { dataDir, run };
  }

  it('prints the version', async () => {
    for (const args of [['--version'], ['serve', '--version']]) {
      const run = await runBerth(args);
      assert.equal(run.code, 0);
      assert.equal(run.stdout, `${VERSION}\n`);
    }
    assert.match(VERSION, /^\d+\.\d+\.\d+/);
  });

  it('refuses settings, unreadable files, a taken port and an unwritable data dir, creating nothing', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'not a directory');
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as { port: number }).port;
    try {
      const cases: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
        ['port', ['--port', '70000'], {}, /^berth: --port: must be an integer from 0 to 65535, got "70000"$/],
        ['bool', [], { BERTH_NO_DELETE: 'yes' }, /^berth: BERTH_NO_DELETE: must be true, false, 1 or 0, got "yes"$/],
        [
          'mysql',
          ['--database-url', 'mysql://u:secret@db/x'],
          {},
          /^berth: --database-url: must be a postgres:\/\/ .*"mysql:\/\/u:\*\*\*@db\/x"$/,
        ],
        ['level', ['--log-level', 'loud'], {}, /^berth: --log-level: must be one of/],
        ['token', ['--token-auth'], {}, /^berth: --token-auth: needs --htpasswd/],
        ['htpasswd', ['--htpasswd', join(dir, 'missing.htpasswd')], {}, /^berth: --htpasswd .*missing\.htpasswd: cannot read: ENOENT$/],
        [
          'tls',
          ['--tls-cert', join(dir, 'no.crt'), '--tls-key', join(dir, 'no.key')],
          {},
          /^berth: --tls-cert .*no\.crt: cannot read: ENOENT$/,
        ],
        ['tls-bad', ['--tls-cert', file, '--tls-key', file], {}, /^berth: --tls-cert\/--tls-key: not a usable PEM certificate and key/],
        ['in-use', ['--port', String(takenPort)], {}, new RegExp(`^berth: --port ${takenPort} on 127.0.0.1: cannot listen: EADDRINUSE$`)],
      ];
      // A Postgres server that does not answer is retried for a few seconds, then refused.
      const postgres = refuses(
        ['--database-url', 'postgres://berth:secret@127.0.0.1:1/berth'],
        {},
        /^berth: --database-url postgres:\/\/berth:\*\*\*@127\.0\.0\.1:1\/berth: cannot open the database: .*ECONNREFUSED/,
        'postgres-down',
      );
      const results = await Promise.all(cases.map(([name, args, env, message]) => refuses(args, env, message, name)));
      for (const { dataDir } of results) assert.equal(existsSync(dataDir), false, `${dataDir} was created`);
      const down = await postgres;
      assert.match(down.run.stdout, /Postgres does not answer yet; retrying/);
      assert.deepEqual(existsSync(down.dataDir) ? await readdir(down.dataDir) : [], [], 'no SQLite file either');

      // The data dir itself: the path and the OS reason.
      const run = await runBerth(['serve', '--port', '0', '--data-dir', join(file, 'data')]);
      assert.equal(run.code, 2);
      assert.equal(run.stderr, `berth: --data-dir ${join(file, 'data')}: cannot create it: ENOTDIR\n`);
    } finally {
      taken.close();
    }
  });
});

const s3 = requireS3();
if (s3)
  describe('berth serve checking S3 before it starts', () => {
    const admin = s3Client(s3);
    let bucket: string;
    let dir: string;
    before(async () => {
      bucket = await createBucket(admin, 'refuse');
      dir = await mkdtemp(join(tmpdir(), 'berth-refuse-s3-'));
    });
    after(async () => {
      await deleteBucket(admin, bucket).catch(() => undefined);
      admin.destroy();
      await rm(dir, { recursive: true, force: true });
    });
    const base = () => ['serve', '--port', '0', '--data-dir', join(dir, 'data'), '--s3-force-path-style', '--s3-region', s3.region];
    const keys = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
    // No credentials anywhere: no variables, no profile files, no instance metadata service.
    const noCredentials = () => ({
      AWS_ACCESS_KEY_ID: '',
      AWS_SECRET_ACCESS_KEY: '',
      AWS_PROFILE: '',
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'),
      AWS_CONFIG_FILE: join(dir, 'none'),
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONTAINER_CREDENTIALS_FULL_URI: '',
      AWS_WEB_IDENTITY_TOKEN_FILE: '',
    });

    it('refuses missing credentials, a missing bucket and a wrong secret, each in one line', async () => {
      const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
        [
          ['--s3-bucket', bucket, '--s3-endpoint', s3.endpoint],
          noCredentials(),
          /^berth: --s3-bucket: bucket .*: loading credentials failed: no credentials found/,
        ],
        [
          ['--s3-bucket', `${bucket}-missing`, '--s3-endpoint', s3.endpoint],
          keys,
          /^berth: --s3-bucket: bucket .*-missing: HeadBucket failed: the bucket does not exist$/,
        ],
        [
          ['--s3-bucket', bucket, '--s3-endpoint', s3.endpoint],
          { ...keys, AWS_SECRET_ACCESS_KEY: 'wrong' },
          /^berth: --s3-bucket: bucket .*: HeadBucket failed: access denied/,
        ],
      ];
      await Promise.all(
        cases.map(async ([args, env, message]) => {
          const run = await runBerth([...base(), ...args], env);
          assert.equal(run.code, 2, run.stderr);
          assert.equal(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
          assert.match(run.stderr.trimEnd(), message);
        }),
      );
      assert.equal(existsSync(join(dir, 'data')), false, 'nothing was created');
    });

    it('waits for a gateway that comes up a little later', async () => {
      const proxy = await tcpProxy(new URL(s3.endpoint));
      proxy.cut();
      const starting = spawnBerth([...base().slice(3), '--s3-bucket', bucket, '--s3-endpoint', proxy.url], keys, { built: true });
      // More connections than the SDK's own attempts at one request: berth itself retried.
      for (let i = 0; i < 600 && proxy.refused < 4; i++) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.ok(proxy.refused >= 4, `${proxy.refused} connections while the gateway was down`);
      proxy.restore();
      const server = await starting;
      try {
        assert.ok(server.logs.some((l) => l.msg === 'S3 does not answer yet; retrying'));
        assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
      } finally {
        await server.stop();
        await proxy.close();
      }
    });
  });
