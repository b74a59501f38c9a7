// A CMUNeXt-S network at 64x64 and a SegFormer-B0 at 32x32 (attention, LayerNorm, drop path and
// dropout in training mode), batch 2, on the cuda backend (a real GPU, or the emulated backend
// that runs the same CUDA sources on the CPU): forward, backward and one SGD step must match the
// CPU backend.
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

function trainStep(device: sc.Device, name = 'cmunext-s', size = 64) {
  // The same seed on both backends: the same weights, and the same dropout / drop-path seeds
  // (their masks are a counter-based hash of the seed, identical on every backend).
  sc.manualSeed(11);
  const model = sc.models.create(name, { inChannels: 3, numClasses: 1 }).to(device);
  const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const x = sc.randn([2, 3, size, size]).to(device);
  const t = sc.rand([2, 1, size, size]).gt(0.6).to('float32').to(device);
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

for (const [name, size] of [['cmunext-s', 64], ['segformer-b0', 32]] as [string, number][]) {
  describe(`cuda: ${name} training step matches the CPU`, function () {
    this.timeout(30 * 60 * 1000);
    it('forward, backward and one SGD step agree with the cpu backend', function () {
      if (!sc.cuda.isAvailable()) {
        console.log(`      (skipped: cuda is not available here: ${sc.cuda.unavailableReason()}; the emulated flavour runs it)`);
        this.skip();
      }
      const cpu = trainStep('cpu', name, size);
      const gpu = trainStep('cuda', name, size);
      assert.ok(nmse(gpu.logits, cpu.logits) < 1e-8, `logits NMSE ${nmse(gpu.logits, cpu.logits)}`);
      assert.ok(Math.abs(gpu.loss - cpu.loss) < 1e-4 * Math.abs(cpu.loss), `loss ${gpu.loss} vs ${cpu.loss}`);
      // Gradients and updated parameters: relative agreement, or absolute agreement where the
      // values are rounding noise (conv biases right before a BatchNorm have a zero gradient in
      // exact arithmetic, so after one step they differ from their start only by that noise).
      const close = (a: Float64Array, b: Float64Array, rel: number, abs: number, what: string) => {
        let maxDiff = 0;  // a loop: spreading a 262,144-element array overflows the call stack
        for (let j = 0; j < b.length; j++) maxDiff = Math.max(maxDiff, Math.abs(b[j] - a[j]));
        const e = nmse(a, b);
        assert.ok(e < rel || maxDiff < abs, `${what}: NMSE ${e}, max abs diff ${maxDiff}`);
      };
      cpu.grads.forEach((g, i) => close(gpu.grads[i], g, 1e-6, 1e-6, `gradient ${i}`));
      // A parameter starting at 0 (a BatchNorm bias) is -lr * gradient after the step: it can only
      // agree as well as the gradients do.
      cpu.after.forEach((p, i) => close(gpu.after[i], p, 1e-6, 1e-7, `parameter ${i} after the step`));
      cpu.running.forEach((r, i) => assert.ok(nmse(gpu.running[i], r) < 1e-8, `running mean ${i}`));
    });
  });
}
