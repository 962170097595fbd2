// Builds the addon in a checkout of Berth: the package's `prepare` script, which package managers
// run in a workspace and never for a user installing the published tarball. That tarball carries
// the addon prebuilt instead and has no install script (nothing for pnpm 10+ to block) and no
// binding.gyp (so no implicit `node-gyp rebuild`; `gypfile: false` says so too). Linux only:
// sendfile(2) is Linux's. It never fails the install: without a compiler, downloads stream.
const { spawnSync } = require('node:child_process');
const { statSync } = require('node:fs');
const { join } = require('node:path');

if (process.platform !== 'linux') process.exit(0);
// Up to date: nothing to do (pack runs prepare too, and a rebuild would first delete the addon).
const dir = join(__dirname, '..');
const mtime = (path) => statSync(join(dir, path), { throwIfNoEntry: false })?.mtimeMs ?? -1;
if (mtime('build/Release/sendfile.node') > Math.max(mtime('native/sendfile.c'), mtime('binding.gyp'))) process.exit(0);
// npm and pnpm put the node-gyp they bundle on PATH for scripts (npm also names it here).
const gyp = process.env.npm_config_node_gyp;
const args = ['rebuild', '--directory', dir];
const build = gyp
  ? spawnSync(process.execPath, [gyp, ...args], { stdio: 'inherit' })
  : spawnSync('node-gyp', args, { stdio: 'inherit', shell: true });
if (build.status !== 0) {
  console.warn('@berthjs/sendfile: native build failed; blob downloads will stream through Node instead of sendfile(2)');
}
