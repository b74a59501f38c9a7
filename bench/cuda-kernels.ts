// Times each CUDA kernel family at the models' shapes with CUDA events (native timeKernel):
// ms per call, GFLOP/s or GB/s, and percent of the GPU's peak. Runs only where a real GPU is
// available (the emulated backend measures the emulator, not a GPU, and is refused).
//   npx tsx bench/cuda-kernels.ts [--iters 20] [--json out.json]
// Peaks: a table of known devices, or SCALPEL_GPU_PEAK_GFLOPS / SCALPEL_GPU_PEAK_GBPS.
import * as fs from 'fs';
import * as sc from '../src';
import { conv2dOp, conv2dBackwardInputOp, conv2dBackwardWeightOp } from '../src/tensor/ops/conv';
import { bmmOp } from '../src/tensor/ops/linalg';
import { decayAttentionOp, decayAttentionBackwardOp, sdpaOp, sdpaBackwardOp } from '../src/tensor/ops/attention';
import { tpenOp } from '../src/tensor/ops/tpen';
import { softmaxOp, reduceOp } from '../src/tensor/ops/reduce';
import { binaryOp, unaryOp } from '../src/tensor/ops/elementwise';
import { interpolateOp } from '../src/tensor/ops/pool';

// FP32 (non-tensor-core) peak GFLOP/s and memory GB/s of common data-centre GPUs.
const PEAKS: [RegExp, number, number][] = [
  [/H200/i, 67000, 4800],
  [/H100.*PCIe/i, 51000, 2000],
  [/H100/i, 67000, 3350],
  [/A100/i, 19500, 2039],
  [/L40S/i, 91600, 864],
  [/A10G?\b/i, 31200, 600],
  [/T4/i, 8100, 320],
];

const args = process.argv.slice(2);
const iters = Number(args[args.indexOf('--iters') + 1]) || 20;
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;

if (!sc.cuda.isAvailable() || sc.cuda.isEmulated()) {
  console.log(`cuda-kernels: needs a real GPU (${sc.cuda.isEmulated() ? 'this is the emulated backend' : sc.cuda.unavailableReason()}); nothing timed`);
  process.exit(0);
}
const name = sc.cuda.deviceName();
const known = PEAKS.find(([re]) => re.test(name));
const peakGflops = Number(process.env.SCALPEL_GPU_PEAK_GFLOPS) || known?.[1] || NaN;
const peakGbps = Number(process.env.SCALPEL_GPU_PEAK_GBPS) || known?.[2] || NaN;

const r = (shape: number[]) => sc.randn(shape).to('cuda');
const conv = (stride = 1, padding = 1, dilation = 1, groups = 1) => ({ stride: [stride, stride], padding: [padding, padding], dilation: [dilation, dilation], groups });
const bytesOf = (ts: sc.Tensor[]) => ts.reduce((a, t) => a + t.size * 4, 0);

interface Row { kernel: string; shape: string; ms: number; gflops?: number; gbps?: number; pctPeak: number }
const rows: Row[] = [];
function time(kernel: string, shape: string, op: sc.OpDef<never>, inputs: sc.Tensor[], attrs: Record<string, unknown>, flops: number | null, extraBytes = 0) {
  const ms = sc.timeOp(op, inputs, attrs as never, iters);
  const row: Row = { kernel, shape, ms, pctPeak: NaN };
  if (flops !== null) {
    row.gflops = flops / ms / 1e6;
    row.pctPeak = (100 * row.gflops) / peakGflops;
  } else {
    row.gbps = (bytesOf(inputs) * 2 + extraBytes) / ms / 1e6;
    row.pctPeak = (100 * row.gbps) / peakGbps;
  }
  rows.push(row);
  console.log(`${kernel.padEnd(28)} ${shape.padEnd(34)} ${ms.toFixed(3).padStart(9)} ms  ${row.gflops !== undefined ? `${row.gflops.toFixed(0)} GFLOP/s` : `${row.gbps!.toFixed(0)} GB/s`}  ${row.pctPeak.toFixed(1)}% of peak`);
}

console.log(`# ${name}: peak ${peakGflops} GFLOP/s fp32, ${peakGbps} GB/s; ${iters} iterations per kernel`);
sc.tidy(() => {
  for (const n of [512, 1024, 2048]) time('bmm', `${n}^3`, bmmOp as never, [r([1, n, n]), r([1, n, n])], { transA: false, transB: false }, 2 * n ** 3);
  // Convolutions at CMUNeXt / UNet / NExNet layer shapes (batch 8).
  const convs: [string, number[], number[], ReturnType<typeof conv>][] = [
    ['conv3x3 64->64 @256', [8, 64, 256, 256], [64, 64, 3, 3], conv()],
    ['conv3x3 d2 128->128 @56', [8, 128, 56, 56], [128, 128, 3, 3], conv(1, 2, 2)],
    ['conv1x1 32->128 @128', [8, 32, 128, 128], [128, 32, 1, 1], conv(1, 0)],
    ['dw7x7 128 @64', [8, 128, 64, 64], [128, 1, 7, 7], conv(1, 3, 1, 128)],
    ['dw9x9 128 @16', [8, 128, 16, 16], [128, 1, 9, 9], conv(1, 4, 1, 128)],
    ['dw31x31 32 @64', [8, 32, 64, 64], [32, 1, 31, 31], conv(1, 15, 1, 32)],
    ['grouped3x3 g2 64 @128', [8, 64, 128, 128], [64, 32, 3, 3], conv(1, 1, 1, 2)],
  ];
  for (const [label, xs, ws, a] of convs) {
    const x = r(xs), w = r(ws);
    const y = sc.noGrad(() => sc.F.conv2d(x, w, null, a));
    const macs = y.size * ws[1] * ws[2] * ws[3];
    time('conv2d', label, conv2dOp as never, [x, w], a, 2 * macs);
    time('conv2d_backward_input', label, conv2dBackwardInputOp as never, [y, w], { ...a, inputShape: xs }, 2 * macs);
    time('conv2d_backward_weight', label, conv2dBackwardWeightOp as never, [x, y], { ...a, weightShape: ws, withBias: false }, 2 * macs);
  }
  // MaSA row pass of NExNet's first block (224x224 map, d=32): B = N*H sequences of W.
  const [B, L, D] = [8 * 224, 224, 32];
  const q = r([B, L, D]), k = r([B, L, D]), v = r([B, L, D]);
  const attAttrs = { gamma: 0.8, height: 1, width: L };
  time('decay_attention', `[${B}, ${L}, ${D}]`, decayAttentionOp as never, [q, k, v], attAttrs, 4 * B * L * L * D);
  time('decay_attention_backward', `[${B}, ${L}, ${D}]`, decayAttentionBackwardOp as never, [q, k, v, r([B, L, D])], attAttrs, 8 * B * L * L * D);
  // Scaled dot-product attention (the backward gets a log-sum-exp near its true size, log Lk,
  // so no exponential overflows): SegFormer-B0 stage 1 at 256 px, batch 8 (4096 queries, 64
  // reduced keys, d 32) and a ViT-B/16-like block at 224 px (196 tokens, 12 heads, d 64).
  for (const [B2, Hh, Lq, Lk, Dh] of [[8, 1, 4096, 64, 32], [8, 12, 196, 196, 64]]) {
    const sq = r([B2, Hh, Lq, Dh]), sk = r([B2, Hh, Lk, Dh]), sv = r([B2, Hh, Lk, Dh]);
    const flops = 4 * B2 * Hh * Lq * Lk * Dh;
    const label = `q [${B2}, ${Hh}, ${Lq}, ${Dh}], k/v L ${Lk}`;
    time('scaled_dot_product_attention', label, sdpaOp as never, [sq, sk, sv], { scale: 1 / Math.sqrt(Dh) }, flops);
    time('scaled_dot_product_attention_backward', label, sdpaBackwardOp as never, [sq, sk, sv, r([B2, Hh, Lq, Dh]), r([B2, Hh, Lq]).add(Math.log(Lk)), r([B2, Hh, Lq, Dh])], { scale: 1 / Math.sqrt(Dh) }, 2.5 * flops);
  }
  time('tpen', '[8, 32, 224, 224] order 3', tpenOp as never, [r([8, 32, 224, 224]), r([3, 32])], {}, null, 3 * 8 * 32 * 224 * 224 * 4);
  const big = r([8, 64, 256, 256]);
  time('unary gelu', '[8, 64, 256, 256]', unaryOp as never, [big], { op: 'gelu' }, null);
  time('binary add', '[8, 64, 256, 256]', binaryOp as never, [big, big], { op: 'add' }, null);
  time('reduce sum (N,H,W)', '[8, 64, 256, 256]', reduceOp as never, [big], { op: 'sum', axes: [0, 2, 3], keepdim: false }, null);
  time('softmax', '[4096, 1024]', softmaxOp as never, [r([4096, 1024])], { dim: 1, log: false }, null);
  time('interpolate bilinear x2', '[8, 64, 128, 128]', interpolateOp as never, [r([8, 64, 128, 128])], { size: [256, 256], mode: 'bilinear', alignCorners: false, scales: [0.5, 0.5] }, null, 8 * 64 * 256 * 256 * 4);
});
if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify({ device: name, peakGflops, peakGbps, iters, rows }, null, 2));
