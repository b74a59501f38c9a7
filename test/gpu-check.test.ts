// scripts/gpu-check.sh --dry-run: the prepared device check run here on the emulated flavour at
// small sizes, so the script cannot rot before a session with a GPU runs it for real.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..');
const emu = path.join(root, 'build', 'Release', 'scalpel_emu.node');

describe('gpu-check dry run', function () {
  this.timeout(120000);
  it('runs every step and reports each as ok, failed or skipped with its reason', function () {
    if (!fs.existsSync(emu)) {
      console.log(`      (skipped: ${emu} is not built; the dry run needs the emulated flavour)`);
      this.skip();
    }
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'gpu-check-test-'));
    const r = spawnSync('bash', [path.join(root, 'scripts', 'gpu-check.sh'), '--dry-run'], {
      cwd: root, env: { ...process.env, OUT: out, SCALPEL_FLAVOUR: 'emu', GPU_CHECK_DEADLINE_MS: '' }, encoding: 'utf8',
    });
    const res = JSON.parse(fs.readFileSync(path.join(out, 'gpu-check.json'), 'utf8'));
    assert.ok(fs.readFileSync(path.join(out, 'gpu-check.md'), 'utf8').includes('| step | status |'));
    const names = res.steps.map((s: { name: string }) => s.name);
    for (const want of ['node runtime', 'nvcc build (sm_80, sm_90)', 'fat-binary architectures', 'harness + CUDA tests',
      'models: training step cuda vs cpu', 'models: timing (scalpel cuda)', 'models: timing (PyTorch cuda)']) {
      assert.ok(names.includes(want), `step '${want}' missing from ${names.join(', ')}`);
    }
    for (const s of res.steps) {
      assert.ok(['ok', 'failed', 'skipped'].includes(s.status), `${s.name}: status ${s.status}`);
      if (s.status !== 'ok') assert.ok(s.reason.length > 10, `${s.name} is ${s.status} without a reason`);
    }
    const step = (n: string) => res.steps.find((s: { name: string }) => s.name === n);
    assert.equal(step('models: training step cuda vs cpu').status, 'ok', r.stdout + r.stderr);
    assert.ok(step('models: training step cuda vs cpu').detail.compare.every((c: { ok: boolean }) => c.ok));
    assert.equal(step('harness + CUDA tests').detail.failed, 0);
    assert.ok(step('harness + CUDA tests').detail.passed > 0);
    assert.equal(step('models: timing (PyTorch cuda)').status, 'skipped');
    assert.ok(res.timingRows.length > 0 && res.timingRows.every((t: { scalpel_train_step_ms: number | null }) => t.scalpel_train_step_ms! > 0));
    assert.equal(r.status, 0, `gpu-check.sh exited ${r.status}: ${r.stdout.slice(-2000)}`);
    fs.rmSync(out, { recursive: true, force: true });
  });
});
