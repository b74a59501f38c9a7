// npx tsx bench/conv-wgrad.ts ['[[N, C, OC, size, k, groups], ...]']
// Times the convolution weight gradient (the conv2d_backward_weight kernel, batch N, stride 1,
// padding k // 2) at CMUNeXt- and UNet-like shapes: median of 5 timings of enough calls for
// about 0.3 GFLOP each. Run it once as is and once with SCALPEL_CONV_DIRECT=0 (the im2col + GEMM
// path) to compare the two paths; the direct kernel is taken for <= 32 output channels per group.
import * as sc from '../src';
import { apply } from '../src/tensor/op';
import { conv2dBackwardWeightOp } from '../src/tensor/ops/conv';

const shapes: number[][] = JSON.parse(process.argv[2] ?? '[[8,16,16,128,3,2],[8,16,8,128,3,1],[8,32,8,128,1,1],[8,64,32,32,3,1],[8,128,64,16,3,1],[8,128,128,16,3,2],[8,512,512,32,3,1]]');
console.log(`weight gradient, ${sc.getNumThreads()} threads, SCALPEL_CONV_DIRECT=${process.env.SCALPEL_CONV_DIRECT ?? '(default)'}`);
sc.noGrad(() => {
  for (const [N, C, OC, S, K, G] of shapes) {
    const x = sc.randn([N, C, S, S]), g = sc.randn([N, OC, S, S]);
    const p = Math.floor(K / 2);
    const attrs = { stride: [1, 1], padding: [p, p], dilation: [1, 1], groups: G, weightShape: [OC, C / G, K, K], withBias: false };
    const run = () => apply(conv2dBackwardWeightOp, [x, g], attrs).forEach((t) => t.dispose());
    const flop = 2 * N * OC * (C / G) * K * K * S * S;
    const reps = Math.max(3, Math.round(3e8 / flop));
    run(); run();
    const ts: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      for (let q = 0; q < reps; q++) run();
      ts.push((performance.now() - t0) / reps);
    }
    const ms = ts.sort((a, b) => a - b)[2];
    console.log(`N${N} ${C} -> ${OC} k${K} groups ${G} at ${S} px: ${ms.toFixed(2)} ms, ${(flop / ms / 1e6).toFixed(0)} GFLOP/s`);
    x.dispose(); g.dispose();
  }
});
