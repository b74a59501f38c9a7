// The recorded forward of an optimized model on the CUDA backend (the emulated flavour in CI):
// replaying on the device gives the values of the un-recorded optimised forward there.
import { strict as assert } from 'node:assert';
import * as sc from '../src';

describe('cuda: recorded forward of an optimized model', function () {
  this.timeout(10 * 60 * 1000);
  it('CMUNeXt-S at 32x32: the replay equals the optimised forward to the bit, and matches the cpu', function () {
    if (!sc.cuda.isAvailable()) {
      console.log(`      (skipped: cuda is not available here: ${sc.cuda.unavailableReason()}; the emulated flavour runs it)`);
      this.skip();
    }
    const cpu = sc.models.create('cmunext-s');
    const gpu = sc.models.create('cmunext-s');
    gpu.loadStateDict(cpu.stateDict());
    gpu.to('cuda');
    const x = sc.randn([1, 3, 32, 32], { generator: new sc.Generator(3) });
    const xg = x.to('cuda');
    sc.inference.optimize(cpu, [1, 3, 32, 32]);
    sc.inference.optimize(gpu, [1, 3, 32, 32]);
    const run = (m: sc.nn.Module, t: sc.Tensor) => sc.noGrad(() => m.forward(t) as sc.Tensor);
    const ref = run(cpu, x);
    const plain = run(gpu, xg), recorded = run(gpu, xg), replayed = run(gpu, xg);
    assert.equal(sc.inference.replayInfo(gpu).replays, 1);
    assert.equal(sc.inference.replayInfo(gpu).concatsElided, 4, 'batch-1 concatenations written in place on the device too');
    assert.equal(replayed.device, 'cuda');
    assert.deepEqual(Array.from(replayed.toArray()), Array.from(plain.toArray()));
    assert.deepEqual(Array.from(recorded.toArray()), Array.from(plain.toArray()));
    const a = replayed.toArray(), b = ref.toArray();
    let d = 0, m = 0;
    for (let i = 0; i < a.length; i++) (d = Math.max(d, Math.abs(a[i] - b[i]))), (m = Math.max(m, Math.abs(b[i])));
    assert.ok(d <= 1e-4 * Math.max(m, 1), `cuda replay vs cpu: max difference ${d}`);
    sc.dispose([x, xg, ref, plain, recorded, replayed]);
    cpu.dispose();
    gpu.dispose();
  });
});
