// npx tsx bench/profile-ops.ts [--model cmunext-s] [--mode inference|train_step] [--threads 2] [--size 256] [--batch 8]
//                              [--steps 5] [--plain]
// Time per native kernel (wraps native.run), to see where a model's time goes, averaged over
// --steps steps after one warm-up. Inference runs the optimised plan (sc.inference.optimize)
// unless --plain.
import * as sc from '../src';
import { native } from '../src/native';
import { arg, fmt } from './common';

// Each kernel is timed where it is called, so none may wait in the kernel queue; the wall time
// is therefore the unqueued one (the queue's gain is measured by bench:models and the A/B).
sc.setKernelQueue(0);
const name = arg('model', 'cmunext-s') as string;
const mode = arg('mode', 'inference');
sc.setNumThreads(Number(arg('threads', '2')));
const s = Number(arg('size', name.startsWith('nexnet') ? '224' : '256'));
const acc = new Map<string, { ms: number; n: number; faults: number }>();
// PROFILE_FAULTS=1: minor page faults taken inside each kernel (fresh pages it touched).
const faultsByOp = !!process.env.PROFILE_FAULTS;
let total = 0;
const orig = native.run.bind(native);
native.run = (kernel, be, ins, outs, attrs) => {
  const f0 = faultsByOp ? process.resourceUsage().minorPageFault : 0;
  const t0 = performance.now();
  orig(kernel, be, ins, outs, attrs);
  const dt = performance.now() - t0;
  const df = faultsByOp ? process.resourceUsage().minorPageFault - f0 : 0;
  total += dt;
  const a = attrs as any;
  let key = kernel;
  if (kernel.startsWith('conv2d')) {
    const w = kernel === 'conv2d_backward_weight' ? outs[0][3] : ins[1][3];
    key += ` k${w[2]}${a.groups > 1 ? (a.groups === ins[0][3][1] || a.groups === outs[0][3][1] ? ' dw' : ` g${a.groups}`) : ''}`;
  }
  if (process.env.PROFILE_SHAPES && kernel.startsWith('conv2d')) key += ` ${JSON.stringify(ins[0][3])}->${JSON.stringify(outs[0][3])}`;
  else if (process.env.PROFILE_SHAPES && !kernel.startsWith('sgd')) key += `${a.op !== undefined ? ' ' + a.op : ''} ${JSON.stringify(ins[0]?.[3])}`;
  if (process.env.PROFILE_SHAPES && kernel.startsWith('batch_norm')) key += ` ${a.pre ?? ''} ${a.post ?? ''}`;
  if (kernel === "decay_attention" || kernel === "copy") key += " " + JSON.stringify(ins[0][3]) + (kernel === "decay_attention" ? ` h${a.height} w${a.width}` : "");
  const e = acc.get(key) ?? { ms: 0, n: 0, faults: 0 };
  e.ms += dt;
  e.faults += df;
  e.n++;
  acc.set(key, e);
};
const model: any = sc.models.create(name);
const b = Number(arg('batch', mode === 'inference' ? '1' : '8'));
const x = sc.rand([b, 3, s, s]);
const t = sc.tidy(() => sc.rand([b, 1, s, s]).gt(0.8).to('float32'));
const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
const step = () => {
  if (mode === 'inference') return sc.noGrad(() => sc.tidy(() => void model.forward(x)));
  opt.zeroGrad();
  sc.tidy(() => {
    const y = model.forward(x);
    sc.F.add(sc.F.bceWithLogits(y, t), sc.F.diceLoss(y, t)).backward();
  });
  opt.step();
};
if (mode === 'inference') {
  model.eval();
  if (arg('plain') !== 'true') sc.inference.optimize(model, [b, 3, s, s]);
}
step();
acc.clear();
total = 0;
const steps = Number(arg('steps', '5'));
const faults0 = process.resourceUsage().minorPageFault;
const t0 = performance.now();
for (let i = 0; i < steps; i++) step();
const wall = (performance.now() - t0) / steps;
// Page faults per step: a steady loop should reuse cached blocks, not touch fresh pages.
const faults = (process.resourceUsage().minorPageFault - faults0) / steps;
total /= steps;
for (const v of acc.values()) v.ms /= steps, v.n /= steps, v.faults /= steps;
let calls = 0;
for (const v of acc.values()) calls += v.n;
console.log(`${name} ${mode} b${b} ${s}px: wall ${fmt(wall, 1)} ms, in native.run ${fmt(total, 1)} ms (${fmt((100 * total) / wall, 1)}%), ${calls} kernel calls, ${fmt(faults, 0)} minor page faults per step`);
for (const [k, v] of [...acc].sort((a, b) => b[1].ms - a[1].ms).slice(0, Number(process.env.PROFILE_TOP ?? 25))) console.log(`${k.padEnd(34)} ${fmt(v.ms, 2).padStart(9)} ms  ${String(v.n).padStart(5)} calls  ${fmt((100 * v.ms) / total, 1)}%${faultsByOp ? `  ${fmt(v.faults, 0)} faults` : ''}`);
