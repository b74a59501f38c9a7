// Builds the native addon from source at install time; downloads nothing.
// cmake-js (CMakeLists.txt) when cmake is available: CPU addon, the CUDA backend when nvcc is
// found, and the emulated-CUDA flavour used by the tests. Otherwise node-gyp builds the
// CPU-only addon from binding.gyp, using the same source list.
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const root = path.resolve(__dirname, '..');
const has = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const run = (cmd, args) => {
  console.log(`[scalpel] ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  return r.status === 0;
};
const bin = (name) => path.join(root, 'node_modules', '.bin', name);

if (process.env.SCALPEL_SKIP_NATIVE_BUILD === '1') process.exit(0);

const jobs = String(process.env.SCALPEL_BUILD_JOBS || require('os').cpus().length);
let ok = false;
if (has('cmake')) {
  const args = ['build', '--out', 'build', '--parallel', jobs];
  if (process.env.SCALPEL_CUDA === '0') args.push('--CDSCALPEL_CUDA=OFF');
  if (process.env.SCALPEL_EMU === '0') args.push('--CDSCALPEL_EMU=OFF');
  ok = run(bin('cmake-js'), args);
  if (!ok) console.error('[scalpel] cmake-js build failed; trying node-gyp (CPU only)');
}
if (!ok) {
  // Use the headers that ship with this Node.js when present, so node-gyp downloads nothing.
  const fs = require('fs');
  const prefix = path.resolve(process.execPath, '..', '..');
  const gypArgs = ['rebuild', '-j', jobs];
  if (fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) gypArgs.push(`--nodedir=${prefix}`);
  ok = run(bin('node-gyp'), gypArgs);
}
if (!ok) {
  console.error('[scalpel] native build failed (the compiler output above says why); it needs a C++17 compiler (g++ or clang) and cmake, or Python 3 for node-gyp');
  process.exit(1);
}
