import { ConfigError, parseServeConfig, serveHelp, unknownVariables } from './config.js';
import { VERSION } from './version.js';

const USAGE = `Usage: berth <command>

Commands:
  serve    run a standalone registry (berth serve --help)
  gc       collect garbage now, online (berth gc --help)
  usage    stored bytes per tenant or repository (berth usage --help)

  berth --version prints the version.
`;

/** `berth <command> [args]`, as started by bin.cts. Mistakes in the settings exit with code 2. */
export async function main([command, ...args]: string[]): Promise<void> {
  try {
    if (command === '--version' || command === '-v' || (command === 'serve' && args.includes('--version'))) {
      process.stdout.write(`${VERSION}\n`);
      return;
    }
    if (command === 'serve') {
      if (args.includes('--help') || args.includes('-h')) {
        process.stdout.write(serveHelp());
        return;
      }
      await runServe(args);
      return;
    }
    if (command === 'gc' || command === 'usage') {
      const { runGc, runUsage } = await import('./gc.js');
      process.exitCode = await (command === 'gc' ? runGc(args) : runUsage(args));
      return;
    }
    process.stdout.write(USAGE);
    if (command !== undefined && command !== 'help' && command !== '--help') process.exitCode = 2;
  } catch (error: unknown) {
    // One line, no stack: configuration mistakes say which setting and why.
    process.stderr.write(`berth: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof ConfigError ? 2 : 1);
  }
}

/** Serve until SIGTERM or SIGINT, then drain (a second signal exits at once). */
async function runServe(args: string[]): Promise<void> {
  const config = parseServeConfig(args);
  // Loaded only now: a mistake in the settings (or --version) is answered without loading stores.
  const { createLogger, serve } = await import('./serve.js');
  const log = createLogger(config.logLevel);
  // Node's warnings (e.g. the AWS SDK's about Node versions) go to the log, not as text to stderr.
  process.removeAllListeners('warning');
  process.on('warning', (warning) => log.warn({ err: warning }, 'process warning'));
  for (const name of unknownVariables()) log.warn({ variable: name }, 'unknown BERTH_ variable ignored (berth serve --help lists them)');
  const running = await serve(config, log);
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    const started = performance.now();
    const { inFlight } = running.registry.stats();
    log.info({ signal, inFlight, timeoutSeconds: config.shutdownTimeoutMs / 1000 }, 'shutting down');
    running.close().then(
      ({ cut }) => {
        log.info({ cut, durationMs: Math.round(performance.now() - started) }, 'shutdown complete');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
