// The float32 direct convolution (native/kernels/conv_direct.cc: stride 1, kernels > 1x1)
// against the float64 im2col + GEMM path, forward, input gradient and weight / bias gradient
// (these shapes' weight gradients take conv_wgrad.cc's kernel, which has its own cases in
// test/conv-wgrad.test.ts), over the shapes that hit each
// register-tile variant and its edges (output rows not a multiple of the vector width, output
// channels not a multiple of the channel block, taps not a multiple of the tap block, groups,
// dilation, no padding, several row bands).
import { strict as assert } from 'node:assert';
import * as sc from '../src';
import { maxRelErr } from './scripts/rel-err';

type Case = [label: string, x: number[], w: number[], pad: number, dil: number, groups: number];
const cases: Case[] = [
  ['3x3 8->8 @ 17x19 (one block, row edges)', [1, 8, 17, 19], [8, 8, 3, 3], 1, 1, 1],
  ['3x3 16->16 @ 33x40', [2, 16, 33, 40], [16, 16, 3, 3], 1, 1, 1],
  ['3x3 5->3 @ 9x9 (narrow block)', [1, 5, 9, 9], [3, 5, 3, 3], 1, 1, 1],
  ['3x3 6->20 @ 12x35 (14-row block + remainder)', [1, 6, 12, 35], [20, 6, 3, 3], 1, 1, 1],
  ['3x3 groups 2, 16->16 @ 24x24', [1, 16, 24, 24], [16, 8, 3, 3], 1, 1, 2],
  ['3x3 dilation 2 pad 2', [1, 4, 14, 13], [8, 4, 3, 3], 2, 2, 1],
  ['3x3 no padding', [2, 3, 10, 21], [7, 3, 3, 3], 0, 1, 1],
  ['5x5 pad 2, 4->9', [1, 4, 11, 16], [9, 4, 5, 5], 2, 1, 1],
  ['2x2 (even kernel) pad 0', [1, 6, 9, 8], [8, 6, 2, 2], 0, 1, 1],
  ['1x1 16->24 @ 8x32 (read in place)', [2, 16, 8, 32], [24, 16, 1, 1], 0, 1, 1],
  ['1x1 12->5 @ 7x9 (padded copy)', [1, 12, 7, 9], [5, 12, 1, 1], 0, 1, 1],
  ['1x1 groups 2 @ 4x16', [1, 8, 4, 16], [6, 4, 1, 1], 0, 1, 2],
  ['3x3 32->12 @ 70x72, batch 3 (several row bands)', [3, 32, 70, 72], [12, 32, 3, 3], 1, 1, 1],
  ['1x1 7->3 @ 5x13, batch 2 (ragged tap and channel blocks)', [2, 7, 5, 13], [3, 7, 1, 1], 0, 1, 1],
  ['3x3 16->8 @ 16x16, batch 4, groups 2 (several images per block)', [4, 16, 16, 16], [8, 8, 3, 3], 1, 1, 2],
  ['3x3 40->20 @ 6x7, batch 5, groups 2 (images per forward block, ragged tiles)', [5, 40, 6, 7], [20, 20, 3, 3], 1, 1, 2],
  ['3x3 24->64 @ 9x21, batch 2 (64 output channels)', [2, 24, 9, 21], [64, 24, 3, 3], 1, 1, 1],
  ['3x3 groups 2, 96->112 @ 10x12 (56 output channels per group)', [1, 96, 10, 12], [112, 48, 3, 3], 1, 1, 2],
  ['1x1 16->48 @ 64x64 (a 1x1 over 33-64 output channels)', [1, 16, 64, 64], [48, 16, 1, 1], 0, 1, 1],
];

describe('conv2d direct float32 kernel vs float64 reference path', () => {
  // Winograd takes 3x3s from 8 channels on enough tiles (test/conv-winograd.test.ts): off here,
  // so that every case runs the direct kernel.
  let winograd = true;
  before(() => {
    winograd = sc.getWinograd();
    sc.setWinograd(false);
  });
  after(() => sc.setWinograd(winograd));
  for (const [label, xs, ws, pad, dil, groups] of cases) {
    it(label, () => {
      sc.tidy(() => {
        const x64 = sc.randn(xs, { dtype: 'float64', requiresGrad: true });
        const w64 = sc.randn(ws, { dtype: 'float64' }).mul(0.3).detach().requiresGrad_();
        const b64 = sc.randn([ws[0]], { dtype: 'float64', requiresGrad: true });
        const opts = { padding: pad, dilation: dil, groups };
        const leaf32 = (t: sc.Tensor) => sc.tensor(t.detach().to('float32').toArray(), t.shape, { requiresGrad: true });
        const x32 = leaf32(x64), w32 = leaf32(w64), b32 = leaf32(b64);
        const y64 = sc.F.conv2d(x64, w64, b64, opts);
        const y32 = sc.F.conv2d(x32, w32, b32, opts);
        assert.deepEqual(y32.shape, y64.shape);
        const ey = maxRelErr(y32.toArray() as Float32Array, y64.toArray() as Float64Array);
        assert.ok(ey < 1e-5, `forward max error ${ey}`);
        const g64 = sc.randn(y64.shape, { dtype: 'float64' });
        y64.mul(g64).sum().backward();
        y32.mul(g64.to('float32')).sum().backward();
        const eg = maxRelErr(x32.grad!.toArray() as Float32Array, x64.grad!.toArray() as Float64Array);
        assert.ok(eg < 1e-5, `input-gradient max error ${eg}`);
        const ew = maxRelErr(w32.grad!.toArray() as Float32Array, w64.grad!.toArray() as Float64Array);
        assert.ok(ew < 1e-5, `weight-gradient max error ${ew}`);
        const eb = maxRelErr(b32.grad!.toArray() as Float32Array, b64.grad!.toArray() as Float64Array);
        assert.ok(eb < 1e-5, `bias-gradient max error ${eb}`);
      });
    });
  }
});
