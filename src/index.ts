// scalpel: a tensor engine for TypeScript with a native CPU/CUDA addon.
import { native } from './native';
import { Tensor } from './tensor';
import * as F from './nn/functional';
import * as nn from './nn';
import * as optim from './nn/optim-index';
import * as models from './models';

export * from './tensor';
export { noGrad, enableGrad, isGradEnabled, detach, backward } from './autograd/engine';
export { checkpoint } from './autograd/checkpoint';
export type { BackwardOptions } from './autograd/engine';
export { gradcheck } from './autograd/gradcheck';
export { F, nn, optim, models };
/** sc.inference.optimize(model, example): fused conv -> BN -> activation chains and a recorded, replayed forward for eval-mode inference. */
export * as inference from './nn/inference';
/** sc.onnx.export(model, [N, C, H, W], file): the eval-mode forward as an ONNX model. */
export * as onnx from './onnx';
export { summary, formatSummary } from './nn/summary';
export type { SummaryResult, SummaryRow, SummaryOptions } from './nn/summary';
export { saveSafetensors, loadSafetensors, encodeSafetensors, decodeSafetensors } from './nn/safetensors';
export { loadPth, decodePth, PTH_ALLOWED_GLOBALS, PTH_WRAPPER_KEYS } from './nn/pth';
export type { LoadPthOptions } from './nn/pth';
export { writeFileAtomic } from './io/atomic';

/** Disposes tensors (or arrays / objects of tensors). */
export function dispose(x: Tensor | Tensor[] | Record<string, Tensor>): void {
  if (x instanceof Tensor) x.dispose();
  else if (Array.isArray(x)) x.forEach((t) => t.dispose());
  else Object.values(x).forEach((t) => t.dispose());
}

export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new Error(`setNumThreads: expected a non-negative integer, got ${n}`);
  native.setNumThreads(n);
}
export function getNumThreads(): number {
  return native.numThreads();
}

/**
 * Lets 3x3 convolutions (stride 1; 16+ channels, or 8+ on large maps) take the Winograd
 * F(4x4, 3x3) CPU kernel (the default; SCALPEL_WINOGRAD=0 in the environment turns it off):
 * 1.2-1.4x the direct kernel's speed at 8 channels, 1.5-2.8x at 16-512 channels, with about
 * ten times its rounding error (a few 1e-6 of the output's magnitude against a float64 sum).
 * Off: the direct kernel everywhere, as precise as a GEMM.
 */
export function setWinograd(enabled: boolean): void {
  if (typeof enabled !== 'boolean') throw new Error(`setWinograd: expected true or false, got ${String(enabled)}`);
  native.setWinograd(enabled);
}
export function getWinograd(): boolean {
  return native.winograd();
}

export type { ConvAlgorithms } from './native';
/**
 * Which float32 CPU kernel a 2-D convolution of these shapes runs for each pass (forward, the
 * inference path's fused forward, input and weight gradients): "winograd", "direct", "gemm" or
 * "depthwise". For profiling and for checking that a shape takes the fast path.
 */
export function convAlgorithms(
  xShape: number[], wShape: number[],
  opts: { stride?: number | [number, number]; padding?: number | [number, number]; dilation?: number | [number, number]; groups?: number } = {},
): import('./native').ConvAlgorithms {
  const pair = (v: number | [number, number] | undefined, def: number, name: string): number[] => {
    const p = v === undefined ? [def, def] : typeof v === 'number' ? [v, v] : v;
    if (p.length !== 2 || !p.every((e) => Number.isInteger(e))) throw new Error(`convAlgorithms: ${name} must be an integer or a pair of integers`);
    return p;
  };
  if (xShape.length !== 4 || wShape.length !== 4) throw new Error(`convAlgorithms: expected 4-D input and weight shapes, got [${xShape}] and [${wShape}]`);
  return native.convAlgorithms(xShape, wShape, pair(opts.stride, 1, 'stride'), pair(opts.padding, 0, 'padding'), pair(opts.dilation, 1, 'dilation'), opts.groups ?? 1);
}

type TrainModule = typeof import('./train');
type DataModule = typeof import('./data');
let trainModule: TrainModule | null = null;
let dataModule: DataModule | null = null;
/**
 * sc.train: fit / evaluate / predict (what the CLI runs). Loaded on first use, because it
 * brings in the image decoder and worker threads that tensor-only users do not need.
 */
export const train: TrainModule = new Proxy({} as TrainModule, {
  get: (_t, key) => (trainModule ??= require('./train') as TrainModule)[key as keyof TrainModule],
});
/** sc.data: dataset layouts, loaders, augmentation, metrics, synthetic data (loaded on first use). */
export const data: DataModule = new Proxy({} as DataModule, {
  get: (_t, key) => (dataModule ??= require('./data') as DataModule)[key as keyof DataModule],
});
