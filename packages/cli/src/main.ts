import { parseServeConfig, serveHelp } from './config.js';
import { runGc, runUsage } from './gc.js';
import { serve } from './serve.js';
import { VERSION } from './version.js';

/** `berth <command> [args]`, as started by bin.cts. */
export async function main([command, ...args]: string[]): Promise<void> {
  try {
    if (command === '--version' || command === '-v') {
      process.stdout.write(`${VERSION}\n`);
      return;
    }
    if (command === 'serve') {
      if (args.includes('--help') || args.includes('-h')) {
        process.stdout.write(serveHelp());
        return;
      }
      const running = await serve(parseServeConfig(args));
      const stop = () => {
        running.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return;
    }
    if (command === 'gc' || command === 'usage') {
      process.exitCode = await (command === 'gc' ? runGc(args) : runUsage(args));
      return;
    }
    process.stdout.write(
      'Usage: berth <command>\n\nCommands:\n  serve    run a standalone registry (berth serve --help)\n  gc       collect garbage now, online (berth gc --help)\n  usage    stored bytes per tenant or repository (berth usage --help)\n',
    );
    if (command !== undefined && command !== 'help' && command !== '--help') process.exitCode = 2;
  } catch (error: unknown) {
    process.stderr.write(`berth: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
