// The package's install step: nothing to do where a prebuilt addon (prebuilds/, shipped in the
// tarball) loads, or off Linux (sendfile(2) is Linux-only); otherwise build it with node-gyp.
// It never fails the install: without the addon, blob downloads stream through Node instead.
// Package managers that skip install scripts (pnpm 10 and later) still get the prebuilt addon.
const { spawnSync } = require('node:child_process');
const { join } = require('node:path');

const prebuilt = join(__dirname, '..', 'prebuilds', `${process.platform}-${process.arch}`, 'sendfile.node');
try {
  require(prebuilt);
  process.exit(0);
} catch {
  // none for this platform, or it does not load here (another libc): build one
}
if (process.platform !== 'linux') process.exit(0);

// npm and pnpm point npm_config_node_gyp at the node-gyp they bundle; else one on PATH.
const gyp = process.env.npm_config_node_gyp;
const build = gyp
  ? spawnSync(process.execPath, [gyp, 'rebuild'], { stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit', shell: true });
if (build.status !== 0) {
  console.warn('@berthjs/sendfile: native build failed; blob downloads will stream through Node instead of sendfile(2)');
}
