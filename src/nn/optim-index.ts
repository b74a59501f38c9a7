// sc.optim: optimisers, schedules and gradient clipping.
export { Optimizer, SGD, Adam, AdamW, clipGradNorm } from './optim';
export type { SGDOptions, AdamOptions, ParamGroup } from './optim';
export { LRScheduler, PolyLR, CosineLR, WarmupLR, ReduceLROnPlateau } from './schedulers';
