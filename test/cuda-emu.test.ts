// The CUDA emulator (native/cuda/emu): builds its self-test with g++ -DCUDA_EMU, runs it under
// the forward, reverse and random schedules, and requires every check to pass. Also builds a
// sample kernel file with real nvcc under the CI gate's strict flags, when nvcc is installed.
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '..');
const build = path.join(root, 'build');
const emuDir = path.join(root, 'native', 'cuda', 'emu');

// One `it` per check; each must pass under every schedule.
const CHECKS = [
  'sgemm_odd', 'sgemm_128', 'block_sum', 'softmax', 'dwconv_k7', 'dwconv_k31', 'histogram',
  'ballot', 'warp_scan', 'shfl_poison',
  // broken kernels the emulator must catch
  'missing_sync', 'divergent_barrier', 'shfl_mask_mismatch', 'shfl_lane_at_barrier',
  'exit_at_barrier', 'kernel_exception', 'launch_config', 'recovers_after_error', 'workers',
];
const SCHEDULES = ['forward', 'reverse', 'random'];

function haveTool(tool: string): boolean {
  return spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;
}

describe('CUDA emulator self-test (g++ -DCUDA_EMU)', function () {
  this.timeout(180000);
  // check name -> schedule -> result line
  const results = new Map<string, Map<string, { ok: boolean; line: string }>>();
  let output = '';

  before(function () {
    mkdirSync(build, { recursive: true });
    const exe = path.join(build, 'emu-selftest');
    execFileSync('g++', [
      '-std=c++17', '-O1', '-g', '-Wall', '-Wextra', '-Werror', '-DCUDA_EMU',
      '-I', path.join(root, 'native'), '-x', 'c++',
      path.join(emuDir, 'emu.cc'), path.join(emuDir, 'selftest.cc'),
      '-o', exe, '-lpthread',
    ], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], timeout: 170000 });
    // The self-test exits non-zero when a check fails; parse its output either way.
    const run = spawnSync(exe, [], {
      cwd: root, encoding: 'utf8', timeout: 120000,
      env: { ...process.env, SCALPEL_EMU_SCHEDULE: '', SCALPEL_EMU_WORKERS: '' },
    });
    assert.equal(run.error, undefined, `self-test did not run: ${run.error}`);
    assert.equal(run.signal, null, `self-test died with ${run.signal}:\n${run.stdout}\n${run.stderr}`);
    output = run.stdout;
    for (const line of output.split('\n')) {
      const m = /^(PASS|FAIL) ([\w]+)\.(\w+)/.exec(line);
      if (!m) continue;
      if (!results.has(m[2])) results.set(m[2], new Map());
      results.get(m[2])!.set(m[3], { ok: m[1] === 'PASS', line });
    }
    for (const info of output.split('\n').filter((l) => l.startsWith('INFO'))) console.log(`      ${info}`);
  });

  for (const name of CHECKS) {
    it(name, function () {
      const bySchedule = results.get(name);
      assert.ok(bySchedule, `no result line for ${name} in:\n${output}`);
      for (const s of SCHEDULES) {
        const r = bySchedule.get(s);
        assert.ok(r, `no result for ${name} under the ${s} schedule`);
        assert.ok(r.ok, r.line);
      }
    });
  }

  it('reports no failures and no unknown checks', function () {
    assert.match(output, /^OK: 0 failure\(s\)$/m, output);
    for (const name of results.keys()) assert.ok(CHECKS.includes(name), `check ${name} is not listed in this test`);
  });
});

describe('compat.cuh under real nvcc', function () {
  this.timeout(180000);
  const probe = path.join(emuDir, 'nvcc_probe.cu');

  it('the sample kernels also build unchanged with g++ -DCUDA_EMU', function () {
    mkdirSync(build, { recursive: true });
    execFileSync('g++', [
      '-std=c++17', '-Wall', '-Wextra', '-Werror', '-DCUDA_EMU', '-I', path.join(root, 'native'),
      '-x', 'c++', '-c', probe, '-o', path.join(build, 'nvcc_probe.emu.o'),
    ], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], timeout: 170000 });
  });

  it('nvcc -arch=sm_80 builds the sample kernels without spills or warnings', function () {
    if (!haveTool('nvcc')) {
      console.log('      nvcc not found: skipping the real-compiler build of compat.cuh');
      this.skip();
    }
    mkdirSync(build, { recursive: true });
    const r = spawnSync('nvcc', [
      '-c', '-std=c++17', '-arch=sm_80',
      '-Xptxas', '-v,-warn-spills,-warn-lmem-usage,-Werror', '--Werror', 'all-warnings',
      '-I', path.join(root, 'native'), probe, '-o', path.join(build, 'nvcc_probe.o'),
    ], { cwd: root, encoding: 'utf8', timeout: 170000 });
    const log = `${r.stdout}${r.stderr}`;
    assert.equal(r.status, 0, log);
    // ptxas -v reports each kernel's registers; keep it visible in the test log.
    const regs = log.split('\n').filter((l) => /Used \d+ registers/.test(l));
    assert.equal(regs.length, 3, log);
    for (const l of regs) console.log(`      ${l.trim()}`);
  });
});
