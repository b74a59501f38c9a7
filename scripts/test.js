// `npm test`: the whole suite. Runs mocha on every test file with the default addon, then, when
// the emulated-CUDA flavour was built, the op-by-backend harness and the CUDA tests on it under
// the forward, reverse and seeded-random thread schedules. Ends with one summary line:
//   tests: N passed, N failed
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const mocha = path.join(root, 'node_modules', '.bin', 'mocha');
const extra = process.argv.slice(2);
const totals = { passed: 0, failed: 0, pending: 0 };
let crashed = false;

function run(label, files, env) {
  console.log(`\n=== ${label} ===`);
  const r = spawnSync(mocha, [...files, ...extra], { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 1 << 30 });
  process.stdout.write(r.stdout || '');
  process.stderr.write(r.stderr || '');
  const num = (re) => Number(((r.stdout || '').match(re) || [0, 0])[1]);
  const passed = num(/(\d+) passing/), failed = num(/(\d+) failing/), pending = num(/(\d+) pending/);
  totals.passed += passed;
  totals.failed += failed;
  totals.pending += pending;
  if (r.status !== 0 && failed === 0) {
    // mocha died before reporting (a crash, a load error): count it as a failure.
    console.error(`[scalpel] ${label}: mocha exited with status ${r.status} (signal ${r.signal}) without reporting failures`);
    totals.failed += 1;
    crashed = true;
  }
}

run('all tests (default addon)', ['test/**/*.test.ts'], {});
const emu = path.join(root, 'build', 'Release', 'scalpel_emu.node');
if (fs.existsSync(emu) && process.env.SCALPEL_SKIP_EMU_TESTS !== '1') {
  const emuFiles = ['test/backend-ops.test.ts', ...fs.readdirSync(path.join(root, 'test')).filter((f) => /^cuda.*\.test\.ts$/.test(f)).map((f) => `test/${f}`)];
  for (const schedule of ['forward', 'reverse', 'random']) {
    run(`emulated CUDA backend, ${schedule} schedule`, emuFiles, { SCALPEL_FLAVOUR: 'emu', SCALPEL_EMU_SCHEDULE: schedule, SCALPEL_EMU_SEED: '12345' });
  }
} else {
  console.log('\n[scalpel] emulated-CUDA addon not built (needs cmake): its suite was not run');
}
if (totals.pending) console.log(`(${totals.pending} pending/skipped, each with its reason above)`);
console.log(`tests: ${totals.passed} passed, ${totals.failed} failed`);
process.exit(totals.failed > 0 || crashed ? 1 : 0);
