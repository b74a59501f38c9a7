// The CPU-only node-gyp build (used where cmake or nvcc is missing) compiles the same sources
// and works. It takes minutes on a small machine, so it runs when SCALPEL_CHECK_GYP=1 (CI).
import { strict as assert } from 'node:assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');

describe('CPU-only build with node-gyp', function () {
  this.timeout(20 * 60 * 1000);
  it('builds from binding.gyp and runs a convolution; cuda reports why it is absent', function () {
    if (process.env.SCALPEL_CHECK_GYP !== '1') {
      console.log('      (skipped: set SCALPEL_CHECK_GYP=1 to run the multi-minute node-gyp build; CI does)');
      this.skip();
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-gyp-'));
    const files = execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const f of files) {
      fs.mkdirSync(path.join(dir, path.dirname(f)), { recursive: true });
      fs.copyFileSync(path.join(root, f), path.join(dir, f));
    }
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
    const prefix = path.resolve(process.execPath, '..', '..');
    execFileSync(path.join(root, 'node_modules', '.bin', 'node-gyp'), ['rebuild', '-j', String(os.cpus().length), `--nodedir=${prefix}`], { cwd: dir, stdio: 'pipe' });
    const script = path.join(dir, 'smoke.ts');
    fs.writeFileSync(script, `import * as sc from './src';
const y = sc.F.conv2d(sc.ones([1, 2, 5, 5]), sc.ones([3, 2, 3, 3]), null, { padding: 1 });
console.log(JSON.stringify({ sum: y.sum().item(), cuda: sc.cuda.isAvailable(), reason: sc.cuda.unavailableReason() }));`);
    const out = execFileSync(path.join(root, 'node_modules', '.bin', 'tsx'), [script], { cwd: dir, encoding: 'utf8' });
    const r = JSON.parse(out.trim().split('\n').pop()!);
    assert.equal(r.sum, 1014);
    assert.equal(r.cuda, false);
    assert.match(r.reason, /no CUDA backend/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
