// A CMUNeXt-S network at 64x64, batch 2, on the cuda backend (a real GPU, or the emulated
// backend that runs the same CUDA sources on the CPU): forward, backward and one SGD step must
// match the CPU backend.
import { strict as assert } from 'node:assert';
import * as sc from '../src';

function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (Number(a[i]) - Number(b[i])) ** 2;
    den += Number(b[i]) ** 2;
  }
  return num / Math.max(den, 1e-30);
}

function trainStep(device: sc.Device) {
  sc.manualSeed(11);
  const model = sc.models.create('cmunext-s', { inChannels: 3, numClasses: 1 }).to(device);
  const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const x = sc.randn([2, 3, 64, 64]).to(device);
  const t = sc.rand([2, 1, 64, 64]).gt(0.6).to('float32').to(device);
  const res = sc.tidy(() => {
    const logits = model.forward(x) as sc.Tensor;
    const loss = sc.F.bceWithLogits(logits, t).add(sc.F.diceLoss(logits, t));
    loss.backward();
    const grads = model.parameters().map((p) => Float64Array.from(p.grad!.toArray() as Float32Array));
    opt.step();
    return { logits: Float64Array.from(logits.toArray() as Float32Array), loss: loss.item(), grads };
  });
  const after = model.parameters().map((p) => Float64Array.from(p.toArray() as Float32Array));
  const running = model.namedBuffers().filter(([n]) => n.endsWith('running_mean')).map(([, b]) => Float64Array.from(b.toArray() as Float32Array));
  model.dispose();
  opt.dispose();
  return { ...res, after, running };
}

describe('cuda: CMUNeXt-S training step matches the CPU', function () {
  this.timeout(30 * 60 * 1000);
  it('forward, backward and one SGD step agree with the cpu backend', function () {
    if (!sc.cuda.isAvailable()) {
      console.log(`      (skipped: cuda is not available here: ${sc.cuda.unavailableReason()}; the emulated flavour runs it)`);
      this.skip();
    }
    const cpu = trainStep('cpu');
    const gpu = trainStep('cuda');
    assert.ok(nmse(gpu.logits, cpu.logits) < 1e-8, `logits NMSE ${nmse(gpu.logits, cpu.logits)}`);
    assert.ok(Math.abs(gpu.loss - cpu.loss) < 1e-4 * Math.abs(cpu.loss), `loss ${gpu.loss} vs ${cpu.loss}`);
    cpu.grads.forEach((g, i) => {
      // Conv biases right before a BatchNorm have a zero gradient in exact arithmetic; both
      // backends return rounding noise there, so those compare absolutely.
      const maxDiff = Math.max(0, ...Array.from(g, (v, j) => Math.abs(v - gpu.grads[i][j])));
      const e = nmse(gpu.grads[i], g);
      assert.ok(e < 1e-6 || maxDiff < 1e-6, `gradient ${i}: NMSE ${e}, max abs diff ${maxDiff}`);
    });
    cpu.after.forEach((p, i) => assert.ok(nmse(gpu.after[i], p) < 1e-8, `parameter ${i} after the step`));
    cpu.running.forEach((r, i) => assert.ok(nmse(gpu.running[i], r) < 1e-8, `running mean ${i}`));
  });
});
