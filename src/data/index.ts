/** Data pipeline: decoding, dataset layouts, synthetic data, augmentation, loading and metrics. */
export * from './decode';
export * from './dataset';
export * from './synthetic';
export * from './augment';
export * from './loader';
export * from './metrics';
export * from './postprocess';
export type { DecodedSample } from './loader-worker';
export * from './multiclass';
