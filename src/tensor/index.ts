// The tensor layer's public surface.
import './methods';
export { Tensor, isTensor, tidy } from './tensor';
export type { DType } from './dtype';
export type { Device } from './device';
export { cuda, availableDevices, synchronize, setKernelQueue, getKernelQueue } from './device';
export * from './create';
export { manualSeed, Generator, defaultGenerator } from './random';
export { memory, emptyCache, resetPeakMemory, setCacheLimit } from './storage';
export type { MemoryInfo } from './storage';
export { keep } from './scope';
export { opTable, defineOp, apply, apply1, applyInto, timeOp, observeOps } from './op';
export type { OpDef } from './op';
