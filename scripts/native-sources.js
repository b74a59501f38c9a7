// The one list of native sources, read by CMakeLists.txt and binding.gyp alike.
//   node scripts/native-sources.js cpu     -> addon + core + CPU kernels
//   node scripts/native-sources.js cuda    -> CUDA kernel sources (.cu)
//   node scripts/native-sources.js emu     -> the CUDA emulator runtime
// Paths are relative to the repository root, separated by newlines (CMake) or spaces (gyp).
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const list = (dir, ext) => {
  const abs = path.join(root, dir);
  if (!fs.existsSync(abs)) return [];
  return fs.readdirSync(abs).filter((f) => f.endsWith(ext)).sort().map((f) => `${dir}/${f}`);
};

const groups = {
  cpu: () => ['native/addon.cc', ...list('native/core', '.cc'), ...list('native/kernels', '.cc')],
  cuda: () => list('native/cuda', '.cu'),
  emu: () => list('native/cuda/emu', '.cc').filter((f) => !f.endsWith('selftest.cc')),
};

if (require.main === module) {
  const which = process.argv[2] || 'cpu';
  if (!groups[which]) {
    console.error(`unknown source group '${which}' (cpu, cuda, emu)`);
    process.exit(2);
  }
  const sep = process.argv[3] === '--gyp' ? ' ' : ';';
  process.stdout.write(groups[which]().join(sep));
}
module.exports = groups;
