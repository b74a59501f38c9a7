// npm run bench:kernels [-- --threads N --quick --only conv3x3,gemm]
//
// Every kernel family at the shapes the models use, timed with benny (benchmark.js) suites;
// reports median ms, GFLOP/s, GB/s and % of the FMA peak measured in this same run by the
// addon's calibration kernel (sc::measure_fma_peak_gflops). Writes bench/results/kernels.{md,json}.
import * as b from 'benny';
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as sc from '../src';
import { native } from '../src/native';
import { apply } from '../src/tensor/op';
import { conv2dBackwardInputOp, conv2dBackwardWeightOp } from '../src/tensor/ops/conv';
import { arg, fmt, loadavg, machine, mdTable, median, ROOT, writeResults } from './common';

const F: any = sc.F;
const threads = Number(arg('threads', String(sc.getNumThreads())));
sc.setNumThreads(threads);
const quick = arg('quick') === 'true';
const only = arg('only')?.split(',');

interface Case {
  family: string;
  name: string;
  shape: string;
  flops?: number; // floating-point operations per call (2 per multiply-add)
  bytes?: number; // minimum bytes moved per call (inputs read once + outputs written once)
  setup(): { run: () => void; dispose: () => void } | null; // null = op unavailable in this build
  torch?: Record<string, unknown>; // the same case for bench/pytorch/bench_kernels.py
}

const rnd = (shape: number[]) => sc.tidy(() => sc.rand(shape).mul(2).sub(1) as sc.Tensor);
const f32 = (n: number) => 4 * n;
const prod = (s: number[]) => s.reduce((a, x) => a * x, 1);
const disposeAll = (ts: (sc.Tensor | null | undefined)[]) => ts.forEach((t) => t && t.dispose());

// ----------------------------------------------------------------------------------- cases
const cases: Case[] = [];

function gemmCase(family: string, M: number, N: number, K: number, label = '') {
  cases.push({
    family, name: `${label}${M}x${N}x${K}`, shape: `M=${M} N=${N} K=${K}`,
    flops: 2 * M * N * K, bytes: f32(M * K + K * N + M * N),
    setup() {
      const a = rnd([1, M, K]), bb = rnd([1, K, N]);
      return { run: () => F.bmm(a, bb).dispose(), dispose: () => disposeAll([a, bb]) };
    },
  });
}
for (const n of [64, 128, 256, 512, 768, 1024]) gemmCase('gemm', n, n, n, 'square ');
// 1x1-conv GEMMs: M = out channels, N = H*W, K = in channels (CMUNeXt pointwise C->4C->C, UNet/NExNet heads).
for (const [M, N, K] of [[64, 65536, 16], [16, 65536, 64], [128, 16384, 32], [512, 4096, 128], [128, 4096, 512], [640, 1024, 160], [1024, 256, 256], [256, 3136, 768]])
  gemmCase('gemm-1x1', M, N, K, '1x1 ');

type ConvSpec = { n?: number; c: number; oc: number; h: number; k: number; d?: number; g?: number; s?: number; tag: string };
function convCases(family: string, spec: ConvSpec) {
  const { n = 1, c, oc, h, k, d = 1, g = 1, s = 1, tag } = spec;
  const p = Math.floor((d * (k - 1)) / 2);
  const oh = Math.floor((h + 2 * p - d * (k - 1) - 1) / s) + 1;
  const xs = [n, c, h, h], ws = [oc, c / g, k, k], ys = [n, oc, oh, oh];
  const flops = 2 * prod(ys) * (c / g) * k * k;
  const attrs = { stride: [s, s], padding: [p, p], dilation: [d, d], groups: g };
  const shape = `${n}x${c}x${h}x${h} -> ${oc}, k${k}${d > 1 ? ` d${d}` : ''}${g > 1 ? ` g${g}` : ''}${s > 1 ? ` s${s}` : ''}`;
  const bytesF = f32(prod(xs) + prod(ws) + prod(ys) + oc);
  const tspec = { x: xs, w: ws, stride: s, padding: p, dilation: d, groups: g };
  cases.push({
    family, name: `${tag} fwd`, shape, torch: { ...tspec, kind: 'fwd', name: `${tag} fwd` }, flops, bytes: bytesF,
    setup() {
      const x = rnd(xs), w = rnd(ws), bias = rnd([oc]);
      return { run: () => F.conv2d(x, w, bias, { stride: s, padding: p, dilation: d, groups: g }).dispose(), dispose: () => disposeAll([x, w, bias]) };
    },
  });
  cases.push({
    family, name: `${tag} bwd-data`, shape, torch: { ...tspec, kind: 'bwd-data', name: `${tag} bwd-data` }, flops, bytes: f32(prod(ys) + prod(ws) + prod(xs)),
    setup() {
      const gy = rnd(ys), w = rnd(ws);
      return { run: () => apply(conv2dBackwardInputOp, [gy, w], { ...attrs, inputShape: xs }).forEach((t) => t.dispose()), dispose: () => disposeAll([gy, w]) };
    },
  });
  cases.push({
    family, name: `${tag} bwd-weight`, shape, torch: { ...tspec, kind: 'bwd-weight', name: `${tag} bwd-weight` }, flops, bytes: f32(prod(xs) + prod(ys) + prod(ws) + oc),
    setup() {
      const x = rnd(xs), gy = rnd(ys);
      return { run: () => apply(conv2dBackwardWeightOp, [x, gy], { ...attrs, weightShape: ws, withBias: true }).forEach((t) => t.dispose()), dispose: () => disposeAll([x, gy]) };
    },
  });
}
// 3x3 convolutions: CMUNeXt stem/up/fusion, UNet double convs, NExNet (incl. dilation 2).
for (const sp of [
  { c: 3, oc: 16, h: 256, k: 3, tag: 'CMUNeXt stem' },
  { c: 32, oc: 16, h: 256, k: 3, tag: 'CMUNeXt up/fuse 256' },
  { c: 256, oc: 128, h: 64, k: 3, tag: 'CMUNeXt fuse 64' },
  { c: 3, oc: 64, h: 256, k: 3, tag: 'UNet in' },
  { c: 64, oc: 64, h: 256, k: 3, tag: 'UNet 64@256' },
  { c: 128, oc: 128, h: 128, k: 3, tag: 'UNet 128@128' },
  { c: 256, oc: 256, h: 64, k: 3, tag: 'UNet 256@64' },
  { c: 512, oc: 512, h: 32, k: 3, tag: 'UNet 512@32' },
  { c: 1024, oc: 1024, h: 16, k: 3, tag: 'UNet 1024@16' },
  { c: 32, oc: 32, h: 224, k: 3, tag: 'NExNet 32@224' },
  { c: 64, oc: 64, h: 112, k: 3, d: 2, tag: 'NExNet 64@112 d2' },
  { c: 128, oc: 128, h: 56, k: 3, d: 2, tag: 'NExNet 128@56 d2' },
]) convCases('conv3x3', sp);
// 1x1 convolutions (CMUNeXt pointwise expand/project, heads).
for (const sp of [
  { c: 16, oc: 64, h: 256, k: 1, tag: 'CMUNeXt pw 16->64@256' },
  { c: 64, oc: 16, h: 256, k: 1, tag: 'CMUNeXt pw 64->16@256' },
  { c: 128, oc: 512, h: 64, k: 1, tag: 'CMUNeXt pw 128->512@64' },
  { c: 512, oc: 128, h: 64, k: 1, tag: 'CMUNeXt pw 512->128@64' },
  { c: 64, oc: 1, h: 256, k: 1, tag: 'UNet head' },
]) convCases('conv1x1', sp);
// Depthwise k = 3/7/9 (CMUNeXt) and 31 (large-kernel) at 256/128/64 maps.
for (const [c, h] of [[16, 256], [32, 128], [128, 64]])
  for (const k of [3, 7, 9, 31]) {
    if (k === 31 && h === 256) continue;
    convCases('depthwise', { c, oc: c, h, k, g: c, tag: `dw k${k} ${c}@${h}` });
  }
// Grouped (groups = 2).
for (const sp of [
  { c: 32, oc: 32, h: 128, k: 3, g: 2, tag: 'g2 32@128' },
  { c: 128, oc: 128, h: 64, k: 3, g: 2, tag: 'g2 128@64' },
  { c: 256, oc: 256, h: 32, k: 3, g: 2, tag: 'g2 256@32' },
]) convCases('grouped', sp);

// MaSA: decomposed row/column attention, [B = N*H, L = W, D = C].
for (const [B, L, D] of [[224, 224, 32], [112, 112, 64], [56, 56, 128], [28, 28, 256], [14, 14, 512]]) {
  cases.push({
    family: 'bmm-masa', name: `qk^T B${B} L${L} D${D}`, shape: `[${B},${L},${D}]x[${B},${L},${D}]^T`,
    flops: 2 * B * L * L * D, bytes: f32(2 * B * L * D + B * L * L),
    setup() {
      const q = rnd([B, L, D]), k = rnd([B, L, D]);
      return { run: () => F.bmm(q, k, false, true).dispose(), dispose: () => disposeAll([q, k]) };
    },
  });
  cases.push({
    family: 'bmm-masa', name: `attn*v B${B} L${L} D${D}`, shape: `[${B},${L},${L}]x[${B},${L},${D}]`,
    flops: 2 * B * L * L * D, bytes: f32(2 * B * L * D + B * L * L),
    setup() {
      const a = rnd([B, L, L]), v = rnd([B, L, D]);
      return { run: () => F.bmm(a, v).dispose(), dispose: () => disposeAll([a, v]) };
    },
  });
  cases.push({
    family: 'decay_attention', name: `fwd B${B} L${L} D${D}`, shape: `q,k,v [${B},${L},${D}]`,
    flops: 4 * B * L * L * D, bytes: f32(4 * B * L * D),
    setup() {
      const q = rnd([B, L, D]), k = rnd([B, L, D]), v = rnd([B, L, D]);
      return { run: () => F.decayAttention(q, k, v, { gamma: 0.9, height: 1, width: L }).dispose(), dispose: () => disposeAll([q, k, v]) };
    },
  });
  cases.push({
    family: 'decay_attention', name: `fwd+bwd B${B} L${L} D${D}`, shape: `q,k,v [${B},${L},${D}]`,
    flops: 12 * B * L * L * D, bytes: f32(8 * B * L * D),
    setup() {
      const q = rnd([B, L, D]).requiresGrad_(), k = rnd([B, L, D]).requiresGrad_(), v = rnd([B, L, D]).requiresGrad_();
      return {
        run: () => {
          const y = F.decayAttention(q, k, v, { gamma: 0.9, height: 1, width: L });
          const l = y.sum();
          sc.backward(l);
          disposeAll([y, l, q.grad, k.grad, v.grad]);
          q.grad = k.grad = v.grad = null;
        },
        dispose: () => disposeAll([q, k, v]),
      };
    },
  });
}

// Memory-bound ops: T-PEN (order 3), batch norm (inference / training), bilinear x2 interpolate.
for (const [c, h] of [[32, 224], [64, 112], [256, 28]]) {
  const n = c * h * h;
  cases.push({
    family: 'tpen', name: `order3 ${c}@${h}`, shape: `1x${c}x${h}x${h} -> ${3 * c}`, bytes: f32(n + 3 * n),
    setup() {
      const x = rnd([1, c, h, h]), co = rnd([3, c]);
      return { run: () => F.tpen(x, co).dispose(), dispose: () => disposeAll([x, co]) };
    },
  });
}
for (const [nb, c, h] of [[1, 16, 256], [1, 64, 256], [8, 16, 256], [8, 128, 64]]) {
  const n = nb * c * h * h;
  for (const training of [false, true])
    cases.push({
      family: 'batchnorm', name: `${training ? 'train' : 'eval'} ${nb}x${c}@${h}`, shape: `${nb}x${c}x${h}x${h}`, bytes: f32(2 * n) * (training ? 1.5 : 1),
      setup() {
        if (typeof F.batchNorm !== 'function') return null;
        const x = rnd([nb, c, h, h]), rm = sc.zeros([c]), rv = sc.ones([c]), w = sc.ones([c]), bb = sc.zeros([c]);
        return { run: () => F.batchNorm(x, rm, rv, w, bb, { training }).dispose(), dispose: () => disposeAll([x, rm, rv, w, bb]) };
      },
    });
}
for (const [c, h] of [[256, 14], [128, 28], [64, 56], [32, 112], [16, 128]]) {
  const n = c * h * h;
  cases.push({
    family: 'interpolate', name: `bilinear x2 ${c}@${h}`, shape: `1x${c}x${h}x${h} -> ${2 * h}`, bytes: f32(n + 4 * n),
    setup() {
      if (typeof F.interpolate !== 'function') return null;
      const x = rnd([1, c, h, h]);
      return { run: () => F.interpolate(x, { scaleFactor: 2, mode: 'bilinear', alignCorners: true }).dispose(), dispose: () => x.dispose() };
    },
  });
}

// ----------------------------------------------------------------------------------- run
interface Row { family: string; name: string; shape: string; ms: number | null; gflops: number | null; gbs: number | null; pctPeak: number | null; samples: number; rme: number | null; cpuMs?: number | null; pctPeakCpu?: number | null; torchMs?: number | null; ratioTorch?: number | null; skipped?: string }

/** PyTorch timings of the convolution cases (same thread count), or the reason they are missing. */
function torchConv(cs: Case[]): { ms: Map<string, number>; note: string } {
  const ms = new Map<string, number>();
  if (arg('no-torch') === 'true') return { ms, note: 'PyTorch comparison disabled (--no-torch)' };
  const specs = cs.filter((c) => c.torch).map((c) => c.torch);
  if (!specs.length) return { ms, note: '' };
  const r = spawnSync('/usr/bin/python3', [path.join(ROOT, 'bench', 'pytorch', 'bench_kernels.py'), '--threads', String(threads), '--budget-ms', quick ? '150' : '400'],
    { input: JSON.stringify(specs), encoding: 'utf8', timeout: 1800_000, maxBuffer: 1 << 24 });
  let header = '';
  for (const l of (r.stdout ?? '').split('\n')) {
    if (!l.startsWith('{')) continue;
    const o = JSON.parse(l);
    if (o.header) header = `PyTorch ${o.torch} (${o.threads} threads, mkldnn ${o.mkldnn})`;
    else ms.set(o.name, o.median_ms);
  }
  if (!ms.size) return { ms, note: `PyTorch comparison skipped: ${(r.error?.message ?? r.stderr ?? '').trim().split('\n').slice(-1)[0]}` };
  return { ms, note: `${header}: the same convolution cases timed right after scalpel's (F.conv2d / aten::convolution_backward).` };
}

/** Own timing next to benny's: wall and process CPU time per call (CPU time is robust to other jobs taking the cores). */
function cpuTime(run: () => void, budgetMs: number): { wallMs: number; cpuMs: number } {
  const ws: number[] = [], cs: number[] = [];
  const start = performance.now();
  while (ws.length < 2 || (ws.length < 30 && performance.now() - start < budgetMs)) {
    const c0 = process.cpuUsage(), t0 = performance.now();
    run();
    const c = process.cpuUsage(c0);
    ws.push(performance.now() - t0);
    cs.push((c.user + c.system) / 1000);
  }
  return { wallMs: median(ws), cpuMs: median(cs) };
}

async function main() {
  // Each benchmarked call must run inside benny's and cpuTime's clocks: no kernel queue.
  sc.setKernelQueue(0);
  const isa = native.gemmIsa ? native.gemmIsa() : 'unknown (addon without gemmIsa)';
  const peak = native.fmaPeakGflops ? native.fmaPeakGflops(threads) : NaN;
  const peak1 = native.fmaPeakGflops ? native.fmaPeakGflops(1) : NaN;
  const info = { ...machine(), threads, gemmIsa: isa, fmaPeakGflops: peak, fmaPeakGflops1Thread: peak1 };
  console.log(`scalpel kernels: ${threads} thread(s), ISA ${isa}, measured FMA peak ${fmt(peak, 1)} GFLOP/s (${fmt(peak1, 1)} on 1 thread), loadavg ${loadavg().join(' ')}`);

  const rows: Row[] = [];
  const families = [...new Set(cases.map((c) => c.family))].filter((f) => !only || only.includes(f));
  const opts = quick ? { minSamples: 3, maxTime: 0.25, delay: 0 } : { minSamples: 5, maxTime: 1, delay: 0 };
  for (const family of families) {
    const fc = cases.filter((c) => c.family === family);
    const live = new Map<string, { run: () => void; dispose: () => void }>();
    const adds = [];
    for (const c of fc) {
      const s = c.setup();
      if (!s) {
        rows.push({ family, name: c.name, shape: c.shape, ms: null, gflops: null, gbs: null, pctPeak: null, samples: 0, rme: null, skipped: 'op not in this build' });
        continue;
      }
      live.set(c.name, s);
      s.run(); // warm up (allocator cache, pool threads)
      adds.push(b.add(c.name, () => s.run()));
    }
    if (!adds.length) continue;
    const done = new Map<string, b.CaseResult>();
    await b.suite(`${family} (${threads} thr)`, ...adds, b.cycle(), b.configure({ cases: opts }),
      b.complete((summary) => summary.results.forEach((r) => done.set(r.name, r))));
    for (const c of fc) {
      const r = done.get(c.name);
      const l = live.get(c.name);
      const own = l && r ? cpuTime(l.run, quick ? 150 : 400) : null;
      l?.dispose();
      if (!r) continue;
      const sec = r.details.median;
      const gflops = c.flops ? c.flops / sec / 1e9 : null;
      rows.push({
        family, name: c.name, shape: c.shape, ms: sec * 1e3, gflops, gbs: c.bytes ? c.bytes / sec / 1e9 : null,
        pctPeak: gflops != null && peak > 0 ? (100 * gflops) / peak : null, samples: r.samples, rme: r.details.relativeMarginOfError,
        cpuMs: own?.cpuMs ?? null,
        // GFLOP per CPU-second against the 1-thread peak: efficiency per core actually obtained.
        pctPeakCpu: own && c.flops && peak1 > 0 ? (100 * (c.flops / (own.cpuMs / 1e3) / 1e9)) / peak1 : null,
      });
    }
    console.log(`  loadavg after ${family}: ${loadavg().join(' ')}`);
  }

  const tc = torchConv(cases.filter((c) => families.includes(c.family)));
  for (const r of rows) {
    const t = tc.ms.get(r.name);
    if (t != null) {
      r.torchMs = t;
      r.ratioTorch = r.ms != null ? r.ms / t : null;
    }
  }
  const parts = [`# scalpel kernel benchmarks`, '',
    `${info.date}, ${info.cpu} (${info.logicalCpus} logical CPUs), ${info.node}, ${threads} thread(s), GEMM ISA **${isa}**, ` +
    `measured FMA peak **${fmt(peak, 1)} GFLOP/s** (${fmt(peak1, 1)} on 1 thread), loadavg at start ${info.loadavg.join(' ')}, at end ${loadavg().join(' ')}.`, '',
    'Median time per call (benny / benchmark.js samples); GFLOP/s counts 2 flops per multiply-add; GB/s is the minimum traffic (inputs read once, outputs written once); % FMA peak = GFLOP/s / measured FMA peak on all threads (wall clock: drops when other jobs share the cores). CPU ms = process CPU time per call (own timing); % peak per CPU-s = flops / CPU seconds / 1-thread FMA peak (the efficiency on the cores actually obtained; pool threads that spin count against it).', tc.note, ''];
  for (const family of families) {
    parts.push(`## ${family}`, '');
    const fr = rows.filter((r) => r.family === family);
    const withTorch = fr.some((r) => r.torchMs != null);
    parts.push(mdTable(['case', 'shape', 'ms', 'GFLOP/s', 'GB/s', '% FMA peak', '±%', 'CPU ms', '% peak per CPU-s', ...(withTorch ? ['PyTorch ms', 'scalpel/PyTorch'] : [])],
      fr.map((r) => [r.name, r.shape, r.skipped ?? fmt(r.ms, 3), fmt(r.gflops, 1), fmt(r.gbs, 1), fmt(r.pctPeak, 1), fmt(r.rme, 1), fmt(r.cpuMs, 3), fmt(r.pctPeakCpu, 1),
        ...(withTorch ? [fmt(r.torchMs, 3), fmt(r.ratioTorch)] : [])])));
    parts.push('');
  }
  const md = parts.join('\n');
  console.log('\n' + md);
  writeResults('kernels', { info: { ...info, loadavgEnd: loadavg() }, rows }, md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
