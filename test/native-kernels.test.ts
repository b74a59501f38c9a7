// Builds and runs the standalone C++ kernel test (GEMM, bmm, conv2d against double-precision
// reference loops on every ISA path the CPU supports) and checks that every line passed.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import * as sc from '../src';

const root = path.resolve(__dirname, '..');

describe('native CPU kernels (C++ standalone test)', function () {
  this.timeout(300_000);

  it('gemm, bmm and conv2d match the reference on every ISA path', function () {
    const buildDir = path.join(root, 'build');
    mkdirSync(buildDir, { recursive: true });
    const exe = path.join(buildDir, 'kernels_test');
    const core = readdirSync(path.join(root, 'native/core'))
      .filter((f) => f.endsWith('.cc'))
      .map((f) => path.join('native/core', f));
    execFileSync(
      'g++',
      [
        '-std=c++17', '-O2', '-pthread', '-Inative',
        ...core,
        'native/kernels/gemm.cc', 'native/kernels/conv.cc', 'native/kernels/conv_direct.cc', 'native/kernels/conv_winograd.cc', 'native/kernels/conv_wgrad.cc', 'native/kernels/conv_pointwise.cc',
        'native/kernels/fast_gelu.cc',
        'native/kernels/test/kernels_test.cc',
        '-o', exe,
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output: string;
    try {
      output = execFileSync(exe, [], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
    } catch (e: any) {
      output = String(e.stdout ?? '') + String(e.stderr ?? '');
      assert.fail(`kernels_test exited with ${e.status}:\n` +
        output.split('\n').filter((l) => !l.startsWith('PASS')).join('\n'));
    }
    const lines = output.split('\n').filter((l) => l.length > 0);
    const failed = lines.filter((l) => l.startsWith('FAIL'));
    const passed = lines.filter((l) => l.startsWith('PASS'));
    assert.deepEqual(failed, [], 'failing kernel checks');
    assert.ok(passed.length > 100, `expected many PASS lines, got ${passed.length}`);
    assert.match(lines[lines.length - 1], /^\d+ passed, 0 failed$/);
  });
});

describe('thread pool', function () {
  this.timeout(120_000);
  it('survives back-to-back small parallel regions (3 x 3000 training steps in child processes)', function () {
    if (sc.getNumThreads() < 2) this.skip();  // one thread: the pool has no workers to race
    // Three runs: the race this guards against (a late worker taking a finished region's job)
    // crashed about one run in five of the first spinning pool.
    for (let run = 0; run < 3; run++) {
      let out = '';
      try {
        out = execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'test/scripts/pool-stress.ts'), '3000'], { cwd: root, encoding: 'utf8' });
      } catch (e: any) {
        assert.fail(`pool-stress run ${run + 1} failed (status ${e.status}, signal ${e.signal}): ${String(e.stderr ?? '').slice(-400)}`);
      }
      assert.match(out, /^ok$/m);
    }
  });
});
