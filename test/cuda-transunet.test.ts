// TransUNet on the cuda backend (a real GPU, or the emulated backend that runs the same CUDA
// sources on the CPU): one training step (dropout on, batch-norm batch statistics) must match the
// CPU backend. The emulator runs every CUDA thread as a fiber, so this uses a narrow, shallow
// setting of the same architecture (every layer type and code path of R50-ViT-B/16: StdConv2d,
// GroupNorm, the padded skip, multi-head attention, dropout, the decoder's bilinear upsampling)
// at 32 px; the full model's numbers are checked on the CPU against PyTorch (models.test.ts).
import { strict as assert } from 'node:assert';
import * as sc from '../src';

const SMALL: Partial<sc.models.TransUNetConfig> = {
  hidden: 64, layers: 2, heads: 4, mlp: 128, resnetUnits: [1, 2, 1], width: 32, headChannels: 64, decoderChannels: [32, 32, 32, 16],
};

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
  const model = new sc.models.TransUNet(3, 1, { imgSize: 32, config: SMALL }).to(device);
  model.train();
  const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const x = sc.randn([2, 3, 32, 32]).to(device);
  const t = sc.rand([2, 1, 32, 32]).gt(0.6).to('float32').to(device);
  // The dropout masks are drawn from this seed; the kernels derive them from it the same way on both backends.
  sc.manualSeed(12);
  const res = sc.tidy(() => {
    const logits = model.forward(x);
    const loss = sc.F.bceWithLogits(logits, t).add(sc.F.diceLoss(logits, t));
    loss.backward();
    const grads = model.parameters().map((p) => Float64Array.from(p.grad!.toArray() as Float32Array));
    opt.step();
    return { logits: Float64Array.from(logits.toArray() as Float32Array), loss: loss.item(), grads };
  });
  const after = model.parameters().map((p) => Float64Array.from(p.toArray() as Float32Array));
  const names = model.namedParameters().map(([n]) => n);
  const running = model.namedBuffers().filter(([n]) => n.endsWith('running_mean') || n.endsWith('running_var')).map(([, b]) => Float64Array.from(b.toArray() as Float32Array));
  model.dispose();
  opt.dispose();
  return { ...res, after, running, names };
}

describe('cuda: TransUNet training step matches the CPU', function () {
  this.timeout(30 * 60 * 1000);
  it('forward (dropout on), backward and one SGD step agree with the cpu backend', function () {
    if (!sc.cuda.isAvailable()) {
      console.log(`      (skipped: cuda is not available here: ${sc.cuda.unavailableReason()}; the emulated flavour runs it)`);
      this.skip();
    }
    const cpu = trainStep('cpu');
    const gpu = trainStep('cuda');
    assert.ok(nmse(gpu.logits, cpu.logits) < 1e-8, `logits NMSE ${nmse(gpu.logits, cpu.logits)}`);
    assert.ok(Math.abs(gpu.loss - cpu.loss) < 1e-4 * Math.abs(cpu.loss), `loss ${gpu.loss} vs ${cpu.loss}`);
    // Relative agreement, or absolute where the values are rounding noise (conv biases before a
    // norm have a zero gradient in exact arithmetic).
    const close = (a: Float64Array, b: Float64Array, rel: number, abs: number, what: string) => {
      let maxDiff = 0;
      for (let j = 0; j < b.length; j++) maxDiff = Math.max(maxDiff, Math.abs(b[j] - a[j]));
      const e = nmse(a, b);
      assert.ok(e < rel || maxDiff < abs, `${what}: NMSE ${e}, max abs diff ${maxDiff}`);
    };
    cpu.grads.forEach((g, i) => close(gpu.grads[i], g, 1e-6, 1e-6, `gradient of ${cpu.names[i]}`));
    cpu.after.forEach((p, i) => close(gpu.after[i], p, 1e-6, 1e-7, `${cpu.names[i]} after the step`));
    cpu.running.forEach((r, i) => assert.ok(nmse(gpu.running[i], r) < 1e-8, `running statistics ${i}`));
  });
});
