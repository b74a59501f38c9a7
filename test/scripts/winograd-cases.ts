// The Winograd F(4x4, 3x3) convolution (native/kernels/conv_winograd.cc) against the float64
// reference path, over shapes that reach each of its code paths: row mode (tile rows in whole
// vectors, or two or four tile rows per vector) and tile-by-tile mode, ragged output edges, the narrow and wide register tiles,
// the few-blocks and many-blocks schedules, groups, padding 0 and 2, channel counts that are
// not multiples of the vector or channel blocks. Each case checks the forward with bias, the
// input and weight gradients and the fused inference forward (activation, scale and shift), and reports
// which kernel each pass took (sc.convAlgorithms), so a shape that left the Winograd path shows.
//
// Used by test/conv-winograd.test.ts in process and, run as a script (npx tsx), under another
// SCALPEL_ISA in a child process: prints one JSON line.
import * as sc from '../../src';
import { native } from '../../src/native';
import { maxRelErr } from './rel-err';

export interface WinogradCase {
  label: string;
  x: number[];
  w: number[];
  pad: number;
  groups: number;
}

// The weight gradient takes Winograd where both sides have more than 64 channels per group or there
// are more than 128 outputs (else the outer-product kernel, test/conv-wgrad.test.ts): the last
// cases reach its paths.
export const winogradCases: WinogradCase[] = [
  { label: '32->64 @ 40x128, batch 2 (row mode, many blocks)', x: [2, 32, 40, 128], w: [64, 32, 3, 3], pad: 1, groups: 1 },
  { label: '40->72 @ 30x125 (row mode, ragged last tile row and column)', x: [1, 40, 30, 125], w: [72, 40, 3, 3], pad: 1, groups: 1 },
  { label: '32->80 @ 13x11, batch 3 (tile by tile, tiles across images, few blocks)', x: [3, 32, 13, 11], w: [80, 32, 3, 3], pad: 1, groups: 1 },
  { label: 'groups 2, 64->160 @ 20x24, batch 2', x: [2, 64, 20, 24], w: [160, 32, 3, 3], pad: 1, groups: 2 },
  { label: '16->72 @ 18x22, batch 2, no padding', x: [2, 16, 18, 22], w: [72, 16, 3, 3], pad: 0, groups: 1 },
  { label: '16->65 @ 20x36, padding 2', x: [1, 16, 20, 36], w: [65, 16, 3, 3], pad: 2, groups: 1 },
  { label: '17->67 @ 33x40 (odd channel counts)', x: [1, 17, 33, 40], w: [67, 17, 3, 3], pad: 1, groups: 1 },
  { label: '128->128 @ 16x16, batch 2 (wide channels)', x: [2, 128, 16, 16], w: [128, 128, 3, 3], pad: 1, groups: 1 },
  { label: '8->8 @ 64x64 (8 channels: from 256 tiles)', x: [1, 8, 64, 64], w: [8, 8, 3, 3], pad: 1, groups: 1 },
  { label: 'groups 2, 16->24 @ 40x72, batch 2 (8 -> 12 channels per group)', x: [2, 16, 40, 72], w: [24, 8, 3, 3], pad: 1, groups: 2 },
  { label: '32->64 @ 64x64, batch 3 (wide register tile)', x: [3, 32, 64, 64], w: [64, 32, 3, 3], pad: 1, groups: 1 },
  { label: '72->80 @ 30x125 (row mode, ragged edges; Winograd weight gradient)', x: [1, 72, 30, 125], w: [80, 72, 3, 3], pad: 1, groups: 1 },
  { label: '80->96 @ 13x11, batch 3 (tile by tile; Winograd weight gradient)', x: [3, 80, 13, 11], w: [96, 80, 3, 3], pad: 1, groups: 1 },
  { label: 'groups 2, 160->144 @ 26x30, batch 2, no padding (Winograd weight gradient)', x: [2, 160, 26, 30], w: [144, 80, 3, 3], pad: 0, groups: 2 },
  { label: '67->69 @ 20x36, padding 2 (odd channel counts; Winograd weight gradient)', x: [1, 67, 20, 36], w: [69, 67, 3, 3], pad: 2, groups: 1 },
  { label: '64->48 @ 20x32, batch 3 (two tile rows per vector on AVX-512: across images, last vector half full)', x: [3, 64, 20, 32], w: [48, 64, 3, 3], pad: 1, groups: 1 },
  { label: '48->40 @ 15x30 (two tile rows per vector, ragged last tile row and column)', x: [1, 48, 15, 30], w: [40, 48, 3, 3], pad: 1, groups: 1 },
  { label: '32->64 @ 14x16, batch 4, no padding (four tile rows per vector on AVX-512, two on AVX2)', x: [4, 32, 14, 16], w: [64, 32, 3, 3], pad: 0, groups: 1 },
  { label: '24->40 @ 8x8, batch 8 (four tile rows per vector on AVX2)', x: [8, 24, 8, 8], w: [40, 24, 3, 3], pad: 1, groups: 1 },
  { label: 'groups 2, 192->160 @ 20x32, batch 3 (two tile rows per vector; Winograd weight gradient)', x: [3, 192, 20, 32], w: [160, 96, 3, 3], pad: 1, groups: 2 },
  { label: '72->72 @ 12x12, batch 4, padding 2 (four tile rows per vector; Winograd weight gradient)', x: [4, 72, 12, 12], w: [72, 72, 3, 3], pad: 2, groups: 1 },
  { label: '560->560 @ 4x4, batch 32 (weight-gradient sums past 40 MB: by output-channel blocks)', x: [32, 560, 4, 4], w: [560, 560, 3, 3], pad: 1, groups: 1 },
];

// The kernel the weight gradient takes (conv.cc's backward_weight_algo).
export function expectedWeightGradient(c: WinogradCase): string {
  const outs = c.w[0] / c.groups;
  const few = Math.min(outs, c.w[1]), many = Math.max(outs, c.w[1]);
  return few > 64 || outs > 128 || (few === 64 && many >= 128) ? 'winograd' : 'outer';
}

export interface WinogradResult {
  label: string;
  expectedWeightGradient: string;
  algorithms: sc.ConvAlgorithms;
  forward: number;
  inputGradient: number;
  weightGradient: number;
  fused: number;
}

export function checkWinogradCase(c: WinogradCase, seed = 7): WinogradResult {
  sc.manualSeed(seed);
  return sc.tidy(() => {
    const opts = { padding: c.pad, groups: c.groups };
    const x64 = sc.randn(c.x, { dtype: 'float64', requiresGrad: true });
    const w64 = sc.randn(c.w, { dtype: 'float64' }).mul(1 / Math.sqrt(9 * c.w[1])).detach().requiresGrad_();
    const w32 = sc.tensor(w64.detach().to('float32').toArray(), c.w, { requiresGrad: true });
    const b64 = sc.randn([c.w[0]], { dtype: 'float64' }).mul(0.1);
    const to32 = (t: sc.Tensor, grad = false) => sc.tensor(t.detach().to('float32').toArray(), t.shape, { requiresGrad: grad });
    const x32 = to32(x64, true), b32 = to32(b64);
    const y64 = sc.F.conv2d(x64, w64, b64, opts);
    const y32 = sc.F.conv2d(x32, w32, b32, opts);
    const forward = maxRelErr(y32.toArray() as Float32Array, y64.toArray() as Float64Array);
    const g64 = sc.randn(y64.shape, { dtype: 'float64' });
    y64.mul(g64).sum().backward();
    y32.mul(g64.to('float32')).sum().backward();
    const inputGradient = maxRelErr(x32.grad!.toArray() as Float32Array, x64.grad!.toArray() as Float64Array);
    const weightGradient = maxRelErr(w32.grad!.toArray() as Float32Array, w64.grad!.toArray() as Float64Array);
    // The fused epilogue: GELU, then a per-channel affine (BN after the activation).
    const scale64 = sc.rand([c.w[0]], { dtype: 'float64' }).add(0.5), shift64 = sc.randn([c.w[0]], { dtype: 'float64' });
    const ref = sc.F.gelu(y64.detach()).mul(scale64.reshape([1, -1, 1, 1])).add(shift64.reshape([1, -1, 1, 1]));
    const fusedOut = sc.noGrad(() => sc.F.conv2dFused(x32.detach(), w32.detach(), b32, { ...opts, act: 'gelu', scale: to32(scale64), shift: to32(shift64) }));
    const fused = maxRelErr(fusedOut.toArray() as Float32Array, ref.toArray() as Float64Array);
    const algorithms = sc.convAlgorithms(c.x, c.w, opts);
    return { label: c.label, expectedWeightGradient: expectedWeightGradient(c), algorithms, forward, inputGradient, weightGradient, fused };
  });
}

if (require.main === module) {
  const results = winogradCases.map((c) => checkWinogradCase(c));
  console.log(JSON.stringify({ isa: native.gemmIsa(), results }));
}
