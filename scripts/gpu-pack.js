// `npm run gpu:pack`: prepares .gpu-carry/, what scripts/gpu-check.sh needs on the lent GPU
// machine besides the work tree. That machine has nvcc, cmake, g++ and python3 with CUDA PyTorch
// but no Node.js and no network, and only 64 MiB travel with a call (work tree included). So this
// packs, into one xz-compressed tar (python3's tarfile unpacks it there; no xz binary needed):
//   bin/node                 this machine's Node.js binary (x86-64 Linux, glibc)
//   node_modules/...         the packages the check runs: mocha, tsx (+ esbuild and its Linux
//                            x64 binary), ndarray, node-addon-api, node-api-headers, with every
//                            package they depend on (the dependency closure, read from package.json)
//   prebuilt/scalpel.node    the addon built here, used there only if the nvcc build fails (the
//                            results then say so), so the tests still run
// and writes .gpu-carry/manifest.json (sizes, versions, the closure). It refuses to finish when
// the work tree plus .gpu-carry would exceed the 64 MiB limit.
//   node scripts/gpu-pack.js [--list] [--no-prebuilt]
//     --list         print the package closure and exit (used by test/gpu-check.test.ts)
'use strict';
const { spawnSync, execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const nm = path.join(root, 'node_modules');
const CARRY = path.join(root, '.gpu-carry');
const LIMIT_BYTES = 64 * 1024 * 1024;

/** Packages gpu-check.sh runs directly (its mocha runs, tsx scripts and the cmake-js build that scripts/build-native.js runs). */
const ROOTS = ['mocha', 'tsx', 'cmake-js', 'esbuild', '@esbuild/linux-x64', 'ndarray', 'node-addon-api', 'node-api-headers'];

function readPkg(dir) {
  return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
}

/**
 * Node's resolution of `dep` required from the package in `fromDir`: the nearest node_modules
 * folder upwards that holds it. Returns the package folder or null.
 */
function resolveDep(fromDir, dep) {
  let dir = fromDir;
  for (;;) {
    const cand = path.join(dir, 'node_modules', dep);
    if (fs.existsSync(path.join(cand, 'package.json'))) return cand;
    if (path.resolve(dir) === root) return null;
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/**
 * The dependency closure of ROOTS as package folders relative to the repository root. A missing
 * required dependency is an error; a missing optional one (another platform's binary) is not.
 */
function closure(roots = ROOTS) {
  const seen = new Map();  // relative folder -> { name, version }
  const missing = [];
  const stack = roots.map((r) => {
    const dir = resolveDep(root, r);
    if (!dir) throw new Error(`gpu-pack: package '${r}' is not installed under ${nm} (run npm install)`);
    return dir;
  });
  while (stack.length) {
    const dir = stack.pop();
    const rel = path.relative(root, dir);
    if (seen.has(rel)) continue;
    const pkg = readPkg(dir);
    seen.set(rel, { name: pkg.name, version: pkg.version });
    const deps = Object.keys(pkg.dependencies || {});
    const optional = new Set(Object.keys(pkg.optionalDependencies || {}));
    for (const d of [...deps, ...optional]) {
      const found = resolveDep(dir, d);
      if (found) stack.push(found);
      else if (!optional.has(d)) missing.push(`${d} (needed by ${pkg.name})`);
    }
  }
  if (missing.length) throw new Error(`gpu-pack: dependencies not installed: ${missing.join(', ')}`);
  return [...seen.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([dir, v]) => ({ dir, ...v }));
}

/** Bytes that travel without carry: tracked files plus untracked files git does not ignore. */
function workTreeBytes() {
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'buffer', maxBuffer: 1 << 28 });
  let total = 0;
  for (const f of out.toString('utf8').split('\0')) {
    if (!f) continue;
    try {
      const st = fs.lstatSync(path.join(root, f));
      if (st.isFile()) total += st.size;
    } catch { /* deleted but still in the index */ }
  }
  return total;
}

function main() {
  const args = process.argv.slice(2);
  const pkgs = closure();
  if (args.includes('--list')) {
    process.stdout.write(JSON.stringify(pkgs, null, 1) + '\n');
    return;
  }
  const node = process.execPath;
  const stage = path.join(CARRY, 'stage');
  fs.rmSync(CARRY, { recursive: true, force: true });
  fs.mkdirSync(path.join(stage, 'bin'), { recursive: true });
  // Hard links (the same inode in the archive is stored once); copies across file systems.
  const link = (src, dst) => {
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    try { fs.linkSync(src, dst); } catch { fs.copyFileSync(src, dst); }
  };
  link(node, path.join(stage, 'bin', 'node'));
  fs.chmodSync(path.join(stage, 'bin', 'node'), 0o755);
  const prebuilt = path.join(root, 'build', 'Release', 'scalpel.node');
  const withPrebuilt = !args.includes('--no-prebuilt') && fs.existsSync(prebuilt);
  if (withPrebuilt) link(prebuilt, path.join(stage, 'prebuilt', 'scalpel.node'));
  // The package folders themselves are archived from node_modules by tar (symlinks in .bin kept).
  const tarList = path.join(CARRY, 'files.txt');
  const members = ['bin/node', ...(withPrebuilt ? ['prebuilt/scalpel.node'] : [])];
  // Nested node_modules come with their parent's folder: list only outermost folders.
  const dirs = pkgs.map((p) => p.dir).filter((d, _i, all) => !all.some((o) => o !== d && d.startsWith(o + path.sep)));
  fs.writeFileSync(tarList, dirs.join('\n') + '\n');
  const bins = ['mocha', 'tsx', '_mocha', 'cmake-js'].filter((b) => fs.existsSync(path.join(nm, '.bin', b)));
  const out = path.join(CARRY, 'runtime.tar.xz');
  console.log(`[gpu-pack] ${pkgs.length} packages, node ${process.version} (${(fs.statSync(node).size / 2 ** 20).toFixed(1)} MiB), prebuilt addon: ${withPrebuilt ? 'yes' : 'no'}; compressing (xz -9, about a minute)...`);
  const tar = `tar -cf - -C ${JSON.stringify(stage)} ${members.map((m) => JSON.stringify(m)).join(' ')} ` +
    `-C ${JSON.stringify(root)} -T ${JSON.stringify(tarList)} ${bins.map((b) => JSON.stringify(`node_modules/.bin/${b}`)).join(' ')} ` +
    `| xz -9 -T0 > ${JSON.stringify(out)}`;
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', tar], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`gpu-pack: tar | xz failed (status ${r.status})`);
  fs.rmSync(stage, { recursive: true, force: true });
  fs.rmSync(tarList, { force: true });
  const carryBytes = fs.statSync(out).size;
  const tree = workTreeBytes();
  const manifest = {
    created: new Date().toISOString(),
    node: process.version,
    nodeBytes: fs.statSync(node).size,
    prebuilt: withPrebuilt,
    archiveBytes: carryBytes,
    workTreeBytes: tree,
    totalBytes: tree + carryBytes,
    limitBytes: LIMIT_BYTES,
    packages: pkgs,
  };
  fs.writeFileSync(path.join(CARRY, 'manifest.json'), JSON.stringify(manifest, null, 1) + '\n');
  const mib = (b) => (b / 2 ** 20).toFixed(1);
  console.log(`[gpu-pack] .gpu-carry/runtime.tar.xz ${mib(carryBytes)} MiB + work tree ${mib(tree)} MiB = ${mib(tree + carryBytes)} MiB of the 64 MiB that travel`);
  if (tree + carryBytes > LIMIT_BYTES * 0.97) {
    throw new Error(`gpu-pack: ${mib(tree + carryBytes)} MiB would travel, over (or too near) the 64 MiB limit; leave out the prebuilt addon (--no-prebuilt) or untracked files`);
  }
  console.log('[gpu-pack] ready: run tool command "bash scripts/gpu-check.sh", carry [".gpu-carry"]');
}

if (require.main === module) {
  try {
    main();
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
module.exports = { closure, ROOTS };
