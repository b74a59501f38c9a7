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
