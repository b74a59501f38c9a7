// A plain synchronous training loop (no awaits, so the event loop never turns) that reports its
// memory as JSON: after warm-up and at the end, the resident set size, the V8 heap (committed
// and used, after a full GC when run with --expose-gc) and the native malloc heap (what native
// code and N-API bookkeeping hold; tensor storage is counted by sc.memory().cpu). Each step is
// the README's training step on a small net plus `extraOps` small elementwise ops, so that
// anything kept per tensor shows. Run by test/memory.test.ts in a child process.
//   node [--expose-gc] --import tsx test/scripts/rss-loop.ts [steps] [warmup] [extraOps] [model]
// model: 'small' (default) or a sc.models name (then input 2x3x32x32, no forced GC needed).
import * as sc from '../../src';

const steps = Number(process.argv[2] ?? 1000);
const warmup = Number(process.argv[3] ?? 200);
const extraOps = Number(process.argv[4] ?? 100);
const modelName = process.argv[5] ?? 'small';

class SmallNet extends sc.nn.Module {
  c1 = this.add('c1', new sc.nn.Conv2d(3, 8, 3, { padding: 1 }));
  bn = this.add('bn', new sc.nn.BatchNorm2d(8));
  c2 = this.add('c2', new sc.nn.Conv2d(8, 8, 3, { padding: 1, groups: 8 }));
  head = this.add('head', new sc.nn.Conv2d(8, 1, 1));
  forward(x: sc.Tensor): sc.Tensor {
    const y = this.bn.forward(this.c1.forward(x)).relu();
    return this.head.forward(this.c2.forward(y).gelu().add(y));
  }
}

sc.manualSeed(1);
const model = modelName === 'small' ? new SmallNet() : sc.models.create(modelName);
const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
const s = modelName === 'small' ? 16 : 32;
const x = sc.randn([2, 3, s, s]);
const t = sc.tidy(() => sc.rand([2, 1, s, s]).gt(0.5).to('float32'));
const small = sc.randn([4, 4]);
const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
const sample = (step: number) => {
  (globalThis as { gc?: () => void }).gc?.();
  const u = process.memoryUsage();
  return { step, rssMb: mb(u.rss), heapTotalMb: mb(u.heapTotal), heapUsedMb: mb(u.heapUsed), nativeHeapMb: mb(sc.memory().process.nativeHeapBytes) };
};
const samples = [];
for (let i = 1; i <= steps; i++) {
  sc.tidy(() => {
    opt.zeroGrad();
    const logits = model.forward(x) as sc.Tensor;
    const loss = sc.F.add(sc.F.bceWithLogits(logits, t), sc.F.diceLoss(logits, t));
    loss.backward();
    opt.step();
    for (let k = 0; k < extraOps; k++) small.add(k);
    return loss.item();
  });
  if (i === warmup || i === steps) samples.push(sample(i));
}
console.log(JSON.stringify({ warm: samples[0], end: samples[1], liveTensors: sc.memory().liveTensors }));
