/**
 * Checkpoints. A checkpoint `<name>` in a run folder is three files, saved as one transaction
 * (src/io/atomic.ts: all staged and fsynced, one journal rename commits them, a crash after it is
 * rolled forward by the next run):
 *   <name>.optim.safetensors  optimiser state tensors (momentum / Adam moments)
 *   <name>.safetensors        model weights; its metadata alone rebuilds the model for
 *                             evaluate/predict (model name + options, input size, channels,
 *                             normalisation, epoch, metrics)
 *   <name>.json               training state: epoch, config, optimiser scalars and groups,
 *                             scheduler state, RNG states, best metric, history
 * Every file carries the same `tag` (epoch + a random nonce), so a resume can tell when the three
 * do not belong together (a crash between two renames) instead of silently mixing them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Module } from '../nn';
import { Tensor } from '../tensor';
import { encodeSafetensors, loadSafetensors } from '../nn/safetensors';
import { commitTransaction, discardStaged, recoverTransactions, stageFile, writeFileAtomic } from '../io/atomic';
import { createModel, ModelOptions } from './models';
import { UserError } from './errors';

export interface ModelMeta {
  model: string;
  modelOptions: ModelOptions;
  size: number;
  channels: 1 | 3;
  normalize: { mean: number[]; std: number[] } | null;
  epoch: number;
  metrics?: Record<string, number>;
  /** 'segmentation' or 'autoencoder'. */
  task: 'segmentation' | 'autoencoder';
  tag: string;
  /**
   * Segmentation classes when >= 2 (mutually exclusive, background 0; softmax over that many output
   * channels). Absent: binary (one sigmoid channel), as in checkpoints from before multi-class.
   */
  classes?: number;
}

/** The classes a checkpoint segments: its `classes`, else its model's numClasses, else 1 (binary). */
export function metaClasses(meta: ModelMeta): number {
  return Number(meta.classes ?? (meta.modelOptions as { numClasses?: number } | undefined)?.numClasses ?? 1);
}

export interface OptimState {
  groups: Record<string, unknown>[];
  scalars: Record<string, number>;
}

export interface TrainState {
  format: 'scalpel-train-state';
  version: 1;
  tag: string;
  /** Epochs completed. */
  epoch: number;
  config: Record<string, unknown>;
  model: ModelMeta;
  optimizer: OptimState;
  scheduler: Record<string, unknown> | null;
  plateau: Record<string, unknown> | null;
  generator: (number | null)[];
  rng: number[];
  best: { metric: number; epoch: number; metrics: Record<string, number> | null };
  badEpochs: number;
  history: Record<string, number>[];
  posWeight: number | null;
  elapsedMs: number;
}

export interface CheckpointPaths {
  model: string;
  optim: string;
  state: string;
}

export function checkpointPaths(dir: string, name: string): CheckpointPaths {
  return { model: path.join(dir, `${name}.safetensors`), optim: path.join(dir, `${name}.optim.safetensors`), state: path.join(dir, `${name}.json`) };
}

/**
 * Writes the three files of a checkpoint as one transaction: all three are first written in full
 * to temporary files (a failure there -- disk full, a crash -- leaves the previous checkpoint
 * untouched and removes the temporaries), then committed by one journal rename and renamed over
 * the old ones; recoverTransactions() finishes a save a crash interrupted after its commit.
 */
export function saveCheckpoint(dir: string, name: string, model: Module, optimTensors: Record<string, Tensor>, state: TrainState): CheckpointPaths {
  const p = checkpointPaths(dir, name);
  const staged: [string, string][] = [];
  try {
    staged.push([stageFile(p.optim, encodeSafetensors(optimTensors, { format: 'scalpel-optim', tag: state.tag })), p.optim]);
    staged.push([stageFile(p.model, encodeSafetensors(model.stateDict(), { format: 'scalpel-model', tag: state.tag, scalpel: JSON.stringify(state.model) })), p.model]);
    staged.push([stageFile(p.state, JSON.stringify(state, null, 1) + '\n'), p.state]);
  } catch (e) {
    discardStaged(staged);
    throw e;
  }
  commitTransaction(dir, name, staged);
  return p;
}

/** Model weights only (no optimiser state), e.g. for the encoder of a pretrained autoencoder. */
export function saveModelOnly(file: string, model: Module, meta: ModelMeta): void {
  writeFileAtomic(file, encodeSafetensors(model.stateDict(), { format: 'scalpel-model', tag: meta.tag, scalpel: JSON.stringify(meta) }));
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: corrupt checkpoint state (not JSON: ${(e as Error).message})`);
  }
}

/** Resolves a --resume argument (a run folder, a state .json, or a model .safetensors) to a state file. */
export function resolveStateFile(arg: string): string {
  let p = path.resolve(arg);
  if (!fs.existsSync(p)) throw new UserError(`${arg}: no such file or folder`);
  // A save interrupted after its commit point is finished before anything is read.
  recoverTransactions(fs.statSync(p).isDirectory() ? p : path.dirname(p));
  if (fs.statSync(p).isDirectory()) p = path.join(p, 'last.json');
  else if (p.endsWith('.optim.safetensors')) p = p.slice(0, -'.optim.safetensors'.length) + '.json';
  else if (p.endsWith('.safetensors')) p = p.slice(0, -'.safetensors'.length) + '.json';
  if (!fs.existsSync(p)) throw new UserError(`${p}: no training state to resume from`);
  return p;
}

export interface LoadedTrainState {
  state: TrainState;
  weights: Record<string, Tensor>;
  optim: Record<string, Tensor>;
}

export function loadTrainState(stateFile: string): LoadedTrainState {
  const state = readJson(stateFile) as TrainState;
  if (!state || state.format !== 'scalpel-train-state') throw new UserError(`${stateFile}: not a scalpel training state`);
  const base = stateFile.slice(0, -'.json'.length);
  const m = loadModelFile(`${base}.safetensors`);
  const o = wrap(() => loadSafetensors(`${base}.optim.safetensors`));
  const bad = [m.tag, o.metadata.tag].some((t) => t !== state.tag);
  if (bad) {
    Object.values(m.weights).forEach((t) => t.dispose());
    Object.values(o.tensors).forEach((t) => t.dispose());
    throw new UserError(`${stateFile}: the checkpoint files do not belong together (tags differ; an interrupted save?)`);
  }
  return { state, weights: m.weights, optim: o.tensors };
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError((e as Error).message);
  }
}

export function loadModelFile(file: string): { weights: Record<string, Tensor>; meta: ModelMeta; tag: string } {
  const resolved = file.endsWith('.json') ? file.slice(0, -5) + '.safetensors' : fs.existsSync(file) && fs.statSync(file).isDirectory() ? path.join(file, 'best.safetensors') : file;
  const { tensors, metadata } = wrap(() => loadSafetensors(resolved));
  if (!metadata.scalpel) {
    Object.values(tensors).forEach((t) => t.dispose());
    throw new UserError(`${resolved}: not a scalpel model checkpoint (no model metadata)`);
  }
  let meta: ModelMeta;
  try {
    meta = JSON.parse(metadata.scalpel);
  } catch {
    Object.values(tensors).forEach((t) => t.dispose());
    throw new UserError(`${resolved}: corrupt model metadata`);
  }
  return { weights: tensors, meta, tag: metadata.tag };
}

/** Rebuilds the model a checkpoint was trained with and loads its weights. */
export function loadModelCheckpoint(file: string): { model: Module; meta: ModelMeta } {
  const { weights, meta } = loadModelFile(file);
  try {
    const model = createModel(meta.model, meta.modelOptions);
    model.loadStateDict(weights);
    return { model, meta };
  } finally {
    Object.values(weights).forEach((t) => t.dispose());
  }
}
