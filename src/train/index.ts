/** Training, evaluation and prediction on top of the engine and the data pipeline. */
export { fit, predictMask, ensureSyntheticData } from './fit';
export type { FitOptions, FitResult, EpochRecord, Task } from './fit';
export { evaluate, predict, formatMetricsTable } from './evaluate';
export type { EvaluateOptions, EvaluateResult, PredictOptions } from './evaluate';
export { RECIPES, LIMITS, defaultConfig, resolveConfig } from './config';
export type { TrainConfig } from './config';
export { createModel, modelNames, defaultModelName, tinySegNet, tinyAutoencoder } from './models';
export { loadModelCheckpoint, loadTrainState, checkpointPaths } from './checkpoint';
export type { ModelMeta, TrainState } from './checkpoint';
export { Canvas, plotCurves, overlay } from './plot';
export { UserError } from './errors';
export { ttaProbabilities, ttaTransforms, transformPlanes, untransformPlanes, parseTtaMode, TTA_MODES } from './tta';
export type { TtaMode, Dihedral, TtaOptions } from './tta';
export { loadEnsemble, ensembleProbabilities, resolveCheckpoints, normalizeFor } from './ensemble';
export type { Ensemble, EnsembleMember } from './ensemble';
export { crossValidate, generateFolds, meanStd, CV_TABLE_METRICS } from './cv';
export type { CrossValidateOptions, CrossValidateResult, FoldResult, MeanStd } from './cv';
