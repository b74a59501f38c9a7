// Two float32 convolution kernels against the float64 reference path, over shapes that reach each
// of their code paths; each case reports the forward's, input gradient's, weight gradient's and
// bias gradient's largest error relative to the largest value, and which kernel each pass took
// (sc.convAlgorithms).
//
// outerCases, the outer-product weight gradient (native/kernels/conv_wgrad.cc): 1x1 with the
// output channels as the vector side and, with more input channels, the input side transposed
// instead; one and two vectors per register tile and a vector-block tail; tap blocks of both
// widths with a ragged last one; several chunks per image with a short last chunk; runs shorter
// than one tile row; more chunks than chunk groups; KxK with padding, dilation, groups and taps
// wider than the padding; pixel pairs (AVX-512, at most 8 channels on the vector side, even
// pixel runs).
//
// pointwiseCases, the 1x1 forward and input gradient (native/kernels/conv_pointwise.cc): several
// chunks per image with a ragged last tile, output-channel blocks with a tail, groups, more input
// channels than one chunk's rows, a single output channel, fewer pixels than one tile.
//
// Used by test/conv-wgrad.test.ts and test/conv-pointwise.test.ts in process and, run as a script
// (npx tsx test/scripts/conv-kernel-cases.ts outer|pointwise), under another SCALPEL_ISA in a
// child process: prints one JSON line.
import * as sc from '../../src';
import { native } from '../../src/native';
import { maxRelErr } from './rel-err';

export interface ConvCase {
  label: string;
  x: number[];
  w: number[];
  pad: number;
  dil: number;
  groups: number;
}

export const outerCases: ConvCase[] = [
  { label: '1x1 48->16 @ 40x40, batch 2 (input side transposed)', x: [2, 48, 40, 40], w: [16, 48, 1, 1], pad: 0, dil: 1, groups: 1 },
  { label: '1x1 16->40 @ 127x127 (several chunks, short last row, 3 vectors of 16)', x: [1, 16, 127, 127], w: [40, 16, 1, 1], pad: 0, dil: 1, groups: 1 },
  { label: '1x1 32->64 @ 64x64, batch 4 (more chunks than chunk groups)', x: [4, 32, 64, 64], w: [64, 32, 1, 1], pad: 0, dil: 1, groups: 1 },
  { label: '1x1 5->3 @ 3x5, batch 3 (runs shorter than a tile row)', x: [3, 5, 3, 5], w: [3, 5, 1, 1], pad: 0, dil: 1, groups: 1 },
  { label: '1x1 groups 2, 24->20 @ 9x30', x: [2, 24, 9, 30], w: [20, 12, 1, 1], pad: 0, dil: 1, groups: 2 },
  { label: '3x3 8->24 @ 100x100 (two row chunks per image)', x: [1, 8, 100, 100], w: [24, 8, 3, 3], pad: 1, dil: 1, groups: 1 },
  { label: '3x3 groups 4, 32->32 @ 30x33, dilation 2, padding 2, batch 2', x: [2, 32, 30, 33], w: [32, 8, 3, 3], pad: 2, dil: 2, groups: 4 },
  { label: '5x5 6->10 @ 21x19, padding 1 (taps past the padding)', x: [1, 6, 21, 19], w: [10, 6, 5, 5], pad: 1, dil: 1, groups: 1 },
  { label: '3x3 40->130 @ 12x12 (nine vectors of output channels, 360 taps)', x: [1, 40, 12, 12], w: [130, 40, 3, 3], pad: 1, dil: 1, groups: 1 },
  { label: '3x3 groups 2, 16->16 @ 22x26, batch 2 (8 channels per group: pixel pairs, ragged panel)', x: [2, 16, 22, 26], w: [16, 8, 3, 3], pad: 1, dil: 1, groups: 2 },
  { label: '1x1 6->8 @ 10x14, batch 2 (pixel pairs, short last row)', x: [2, 6, 10, 14], w: [8, 6, 1, 1], pad: 0, dil: 1, groups: 1 },
  { label: '3x3 3->7 @ 10x21, no padding, batch 2 (odd rows: no pairs)', x: [2, 3, 10, 21], w: [7, 3, 3, 3], pad: 0, dil: 1, groups: 1 },
];

export const pointwiseCases: ConvCase[] = [
  { label: '1x1 4->6 @ 95x95 (two chunks, a ragged last tile, a short output block)', x: [1, 4, 95, 95], w: [6, 4, 1, 1], pad: 0, dil: 1, groups: 1 },
  { label: '1x1 48->20 @ 33x33, batch 3 (output blocks 8 + 8 + 4)', x: [3, 48, 33, 33], w: [20, 48, 1, 1], pad: 0, dil: 1, groups: 1 },
  { label: '1x1 groups 3, 24->18 @ 40x40', x: [2, 24, 40, 40], w: [18, 8, 1, 1], pad: 0, dil: 1, groups: 3 },
  { label: '1x1 130->70 @ 32x32 (more input rows than a chunk holds)', x: [1, 130, 32, 32], w: [70, 130, 1, 1], pad: 0, dil: 1, groups: 1 },
  { label: '1x1 9->1 @ 50x40 (one output channel)', x: [2, 9, 50, 40], w: [1, 9, 1, 1], pad: 0, dil: 1, groups: 1 },
  { label: '1x1 3->16 @ 7x9, batch 2 (fewer pixels than a tile)', x: [2, 3, 7, 9], w: [16, 3, 1, 1], pad: 0, dil: 1, groups: 1 },
];

export interface ConvResult {
  label: string;
  algorithms: sc.ConvAlgorithms;
  forward: number;
  inputGradient: number;
  weightGradient: number;
  biasGradient: number;
}

export function checkConvCase(c: ConvCase, seed = 11): ConvResult {
  sc.manualSeed(seed);
  return sc.tidy(() => {
    const opts = { padding: c.pad, dilation: c.dil, groups: c.groups };
    const to32 = (t: sc.Tensor) => sc.tensor(t.detach().to('float32').toArray(), t.shape, { requiresGrad: true });
    const x64 = sc.randn(c.x, { dtype: 'float64', requiresGrad: true });
    const w64 = sc.randn(c.w, { dtype: 'float64' }).mul(0.3).detach().requiresGrad_();
    const b64 = sc.randn([c.w[0]], { dtype: 'float64', requiresGrad: true });
    const x32 = to32(x64), w32 = to32(w64), b32 = to32(b64);
    const y64 = sc.F.conv2d(x64, w64, b64, opts);
    const y32 = sc.F.conv2d(x32, w32, b32, opts);
    const g64 = sc.randn(y64.shape, { dtype: 'float64' });
    y64.mul(g64).sum().backward();
    y32.mul(g64.to('float32')).sum().backward();
    return {
      label: c.label,
      algorithms: sc.convAlgorithms(c.x, c.w, opts),
      forward: maxRelErr(y32.toArray() as Float32Array, y64.toArray() as Float64Array),
      inputGradient: maxRelErr(x32.grad!.toArray() as Float32Array, x64.grad!.toArray() as Float64Array),
      weightGradient: maxRelErr(w32.grad!.toArray() as Float32Array, w64.grad!.toArray() as Float64Array),
      biasGradient: maxRelErr(b32.grad!.toArray() as Float32Array, b64.grad!.toArray() as Float64Array),
    };
  });
}

export const caseLists: Record<string, ConvCase[]> = { outer: outerCases, pointwise: pointwiseCases };

if (require.main === module) {
  const list = caseLists[process.argv[2]];
  if (!list) throw new Error(`conv-kernel-cases: expected one of ${Object.keys(caseLists).join(', ')}, got ${process.argv[2]}`);
  const results = list.map((c) => checkConvCase(c));
  console.log(JSON.stringify({ isa: native.gemmIsa(), results }));
}
