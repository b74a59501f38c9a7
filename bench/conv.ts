// npx tsx bench/conv.ts ['[[N, C, OC, size, k, groups], ...]'] [--ops fwd,bwd_in,bwd_w]
// Times the three convolution kernels (forward, input gradient, weight gradient; batch N,
// stride 1, padding k // 2) at the CMUNeXt / UNet training shapes: median of 5 timings of
// enough calls for about 0.3 GFLOP each, with GFLOP/s against the FMA peak the addon measures.
// SCALPEL_CONV_DIRECT=0 selects the im2col + GEMM paths instead of the direct, pointwise and
// outer-product kernels (same-run A/B);
// BENCH_MIN=1 reports the best of the 5 timings instead of the median (a noisy host).
import * as sc from '../src';
import { native } from '../src/native';
import { apply } from '../src/tensor/op';
import { conv2dBackwardInputOp, conv2dBackwardWeightOp, conv2dOp } from '../src/tensor/ops/conv';
import { arg, timeReps } from './common';

const shapes: number[][] = JSON.parse(process.argv[2]?.startsWith('[') ? process.argv[2] :
  '[[8,160,128,32,3,1],[8,256,256,32,3,2],[8,128,32,64,3,1],[8,32,16,128,3,1],[8,16,16,128,3,2],[8,64,32,32,3,1],[8,128,64,16,3,1]]');
const ops = (arg('ops', 'fwd,bwd_in,bwd_w') as string).split(',');
console.log(`${sc.getNumThreads()} threads, FMA peak ${native.fmaPeakGflops().toFixed(0)} GFLOP/s, SCALPEL_CONV_DIRECT=${process.env.SCALPEL_CONV_DIRECT ?? '(default)'}`);
sc.noGrad(() => {
  for (const [N, C, OC, S, K, G] of shapes) {
    const x = sc.randn([N, C, S, S]), w = sc.randn([OC, C / G, K, K]), g = sc.randn([N, OC, S, S]);
    const p = Math.floor(K / 2);
    const conv = { stride: [1, 1], padding: [p, p], dilation: [1, 1], groups: G };
    const runs: Record<string, () => void> = {
      fwd: () => apply(conv2dOp, [x, w], conv).forEach((t) => t.dispose()),
      bwd_in: () => apply(conv2dBackwardInputOp, [g, w], { ...conv, inputShape: x.shape }).forEach((t) => t.dispose()),
      bwd_w: () => apply(conv2dBackwardWeightOp, [x, g], { ...conv, weightShape: w.shape, withBias: false }).forEach((t) => t.dispose()),
    };
    const flop = 2 * N * OC * (C / G) * K * K * S * S;
    const cols: string[] = [];
    for (const op of ops) {
      const run = runs[op];
      if (!run) throw new Error(`--ops: unknown op ${op} (fwd, bwd_in, bwd_w)`);
      const t = timeReps(run, Math.max(3, Math.round(3e8 / flop)));
      const ms = process.env.BENCH_MIN ? t.min : t.median;
      cols.push(`${op} ${ms.toFixed(2)} ms ${(flop / ms / 1e6).toFixed(0)} GF/s`);
    }
    console.log(`N${N} ${C} -> ${OC} k${K} g${G} ${S} px: ${cols.join(' | ')}`);
    x.dispose(); w.dispose(); g.dispose();
  }
});
