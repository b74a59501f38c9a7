// npx tsx bench/ab-winograd.ts [--models unet,cmunext] [--mode inference|train] [--size 256] [--batch 1] [--runs 8]
// Same-process A/B of the Winograd 3x3 kernel (sc.setWinograd(true / false) toggled between
// runs, A, B, A, B, ...) on whole models: inference through sc.inference.optimize at batch 1
// (the deployed path, recorded and replayed), or a training step (forward, BCE + Dice, backward,
// SGD). Both modes run on the same model and inputs, so load on the shared machine hits both
// alike; prints the median of each and their ratio.
import * as sc from '../src';
import { withImageSize } from '../src/train/models';
import { arg, loadavg, median } from './common';

const models = String(arg('models', 'cmunext-s,cmunext,cmunext-l,nexnet,unet')).split(',');
const mode = String(arg('mode', 'inference'));
const runs = Number(arg('runs', '8'));

function input(shape: number[]): sc.Tensor {
  const n = shape.reduce((a, x) => a * x, 1), d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = Math.sin(0.37 * i) * 0.5 + 0.5;
  return sc.tensor(d, shape);
}

console.log(`Winograd A/B, ${mode}, ${sc.getNumThreads()} threads, loadavg ${loadavg().join(' ')}`);
for (const name of models) {
  const size = Number(arg('size', String(name.startsWith('nexnet') ? 224 : mode === 'train' ? 128 : 256)));
  const batch = Number(arg('batch', mode === 'train' ? '8' : '1'));
  const model = sc.models.create(name, withImageSize(name, {}, size));
  const x = input([batch, 3, size, size]);
  let run: () => void;
  if (mode === 'train') {
    model.train();
    const td = new Float32Array(batch * size * size).map((_, i) => (Math.sin(0.37 * i) * 0.5 + 0.5 > 0.8 ? 1 : 0));
    const target = sc.tensor(td, [batch, 1, size, size]);
    const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
    run = () => {
      opt.zeroGrad();
      sc.tidy(() => {
        const logits = model.forward(x) as sc.Tensor;
        const l = sc.F.add(sc.F.bceWithLogits(logits, target), sc.F.diceLoss(logits, target));
        l.backward(null, { freeActivations: true });
        l.item();
      });
      opt.step();
    };
  } else {
    model.eval();
    sc.inference.optimize(model, [batch, 3, size, size]);
    run = () => sc.noGrad(() => sc.tidy(() => { model.forward(x); }));
  }
  const times: Record<string, number[]> = { on: [], off: [] };
  for (const on of [true, false]) sc.setWinograd(on), run(), run();
  for (let i = 0; i < runs; i++) {
    for (const on of i % 2 ? [false, true] : [true, false]) {
      sc.setWinograd(on);
      run(); // untimed: the other mode's run just evicted the caches
      sc.synchronize();
      const t0 = performance.now();
      run();
      sc.synchronize();
      times[on ? 'on' : 'off'].push(performance.now() - t0);
    }
  }
  sc.setWinograd(true);
  const a = median(times.on), b = median(times.off);
  console.log(`${name.padEnd(12)} ${size}px b${batch}: winograd ${a.toFixed(1)} ms, direct ${b.toFixed(1)} ms, ${(b / a).toFixed(2)}x`);
  sc.inference.release(model);
}
