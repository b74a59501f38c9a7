// Back-to-back small parallel regions (a small net's training steps): the caller often runs
// every chunk before the worker joins, the case where a late worker must not take a finished
// region's job (with the pool's first spinning version a late worker could call the destroyed
// job function of the previous region: this loop crashed in about one run of three). Run by
// test/native-kernels.test.ts in a child process, so a crash is a failed test, not a dead run.
//   node --import tsx test/scripts/pool-stress.ts [steps]
import * as sc from '../../src';

const steps = Number(process.argv[2] ?? 3000);
sc.setNumThreads(2);
sc.manualSeed(1);
const c1 = new sc.nn.Conv2d(3, 8, 3, { padding: 1 });
const bn = new sc.nn.BatchNorm2d(8);
const c2 = new sc.nn.Conv2d(8, 1, 1);
const params = [...c1.parameters(), ...bn.parameters(), ...c2.parameters()];
const opt = new sc.optim.SGD(params, { lr: 0.01, momentum: 0.9 });
const x = sc.randn([2, 3, 16, 16]);
const t = sc.tidy(() => sc.rand([2, 1, 16, 16]).gt(0.5).to('float32'));
for (let i = 0; i < steps; i++) {
  opt.zeroGrad();
  sc.tidy(() => {
    const y = c2.forward(bn.forward(c1.forward(x)).relu().gelu());
    sc.F.bceWithLogits(y, t).backward();
  });
  opt.step();
}
console.log('ok');
