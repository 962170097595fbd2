// prepack: ship the addon built by prepare (build/Release) as prebuilds/<platform>-<arch>, so
// installs on this platform need no compiler and no install script. It is an N-API addon, so one
// binary serves every Node version. Packing without one would publish a package that silently
// never uses sendfile, so that fails.
const { copyFileSync, existsSync, mkdirSync } = require('node:fs');
const { join } = require('node:path');

const built = join(__dirname, '..', 'build', 'Release', 'sendfile.node');
if (!existsSync(built)) {
  console.error(
    '@berthjs/sendfile: build/Release/sendfile.node is missing; run pnpm install (its prepare script builds it) before packing',
  );
  process.exit(1);
}
const dir = join(__dirname, '..', 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
copyFileSync(built, join(dir, 'sendfile.node'));
