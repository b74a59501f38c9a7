// npx tsx bench/norm.ts ['[[N, C, H, W], ...]'] [--reps 20]
// Times the normalisation kernels at the models' training shapes: batch norm forward (training
// statistics) plain and with GELU first (CMUNeXt's conv -> GELU -> BN), their backward, and group
// norm (MedNeXt / UNeXt rows of whole planes). Median and best of 5 timings of --reps calls,
// with the effective bandwidth of the tensor-sized reads and writes each kernel must do at least
// (forward: read x, write y; backward: read g and x, write dx).
// Batch norm's backward is timed as the kernel alone (saved statistics given).
import * as sc from '../src';
import { apply } from '../src/tensor/op';
import { batchNormBackwardOp } from '../src/tensor/ops/norm';
import { arg, timeReps } from './common';

const shapes: number[][] = JSON.parse(process.argv[2]?.startsWith('[') ? process.argv[2] : '[[8,32,128,128],[8,8,128,128],[8,64,64,64],[8,256,32,32],[1,32,256,256]]');
const reps = Number(arg('reps', '20'));
console.log(`${sc.getNumThreads()} threads`);
for (const shape of shapes) {
  const C = shape[1];
  const x = sc.randn(shape), g = sc.randn(shape);
  const rm = sc.zeros([C]), rv = sc.ones([C]), w = sc.ones([C]).requiresGrad_(), b = sc.zeros([C]).requiresGrad_();
  const mb = (x.size * 4) / 1e6;
  const cols: string[] = [];
  const report = (name: string, passes: number, fn: () => void) => {
    const t = timeReps(fn, reps);
    cols.push(`${name} ${t.median.toFixed(2)} (${t.min.toFixed(2)}) ms ${(passes * mb / t.median).toFixed(0)} GB/s`);
  };
  sc.noGrad(() => {
    report('bn', 2, () => sc.tidy(() => void sc.F.batchNorm(x, rm, rv, w, b, { training: true })));
    report('gelu-bn', 2, () => sc.tidy(() => void sc.F.batchNorm(x, rm, rv, w, b, { training: true, preActivation: 'gelu' })));
    report('groupnorm', 2, () => sc.tidy(() => void sc.F.groupNorm(x, C, w, b)));
  });
  const mean = sc.zeros([C]), invstd = sc.ones([C]);
  for (const pre of ['none', 'gelu'] as const)
    report(`${pre === 'gelu' ? 'gelu-' : ''}bn backward`, 3, () => apply(batchNormBackwardOp, [g, x, w, mean, invstd], { hasWeight: true, training: true, pre }).forEach((t) => t.dispose()));
  console.log(`[${shape.join(',')}]: ${cols.join(' | ')}`);
  [x, g, rm, rv, w, b, mean, invstd].forEach((t) => t.dispose());
}
