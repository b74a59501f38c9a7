/**
 * Ensembles of checkpoints (folds, seeds): each model sees the images normalised with its own
 * training statistics (fold models are trained on different images, so their mean/std differ),
 * its probabilities (sigmoid / channel softmax, averaged over the TTA transforms inside each
 * model) are averaged across the models, and only the average is thresholded and post-processed.
 */
import * as fs from 'node:fs';
import { Module } from '../nn';
import { optimize as optimizeForInference } from '../nn/inference';
import { normalize as normalizePlanes } from '../data';
import { loadModelCheckpoint, ModelMeta } from './checkpoint';
import { UserError } from './errors';
import { ttaProbabilities, TtaMode } from './tta';
import { Tensor } from '../tensor';

export interface EnsembleMember {
  /** The checkpoint as given (file or run folder). */
  file: string;
  model: Module;
  meta: ModelMeta;
}

export interface Ensemble {
  members: EnsembleMember[];
  /** The first checkpoint's metadata (size, channels and task are the same for all). */
  meta: ModelMeta;
  dispose(): void;
}

/**
 * The checkpoints of a `checkpoint` option: one path, a list, or comma-separated lists (as the CLI
 * passes `--checkpoint a,b --checkpoint c`). A name that exists as given is never split, so a
 * path holding a comma still works.
 */
export function resolveCheckpoints(arg: string | readonly string[] | undefined): string[] {
  const items = arg === undefined ? [] : typeof arg === 'string' ? [arg] : Array.isArray(arg) ? arg : null;
  if (items === null) throw new UserError(`--checkpoint: expected a path or a list of paths, got ${typeof arg}`);
  const out: string[] = [];
  for (const item of items) {
    if (typeof item !== 'string') throw new UserError(`--checkpoint: expected a path, got ${typeof item}`);
    const parts = fs.existsSync(item) ? [item] : item.split(',').map((s) => s.trim());
    for (const p of parts) {
      if (p === '') throw new UserError(`--checkpoint: empty path in '${item}'`);
      out.push(p);
    }
  }
  if (out.length === 0) throw new UserError('--checkpoint: no checkpoint given');
  return out;
}

const outputChannels = (m: ModelMeta): number => Number((m.modelOptions as { numClasses?: number }).numClasses ?? 1);

/**
 * Loads every checkpoint and checks that they agree on what the ensemble needs: input size,
 * channels, task and output channels (the error names the first two that differ). Each model is
 * prepared for inference at the common size.
 */
export function loadEnsemble(checkpoints: string | readonly string[]): Ensemble {
  const files = resolveCheckpoints(checkpoints);
  const members: EnsembleMember[] = [];
  const dispose = () => members.forEach((m) => m.model.dispose());
  try {
    for (const file of files) {
      const { model, meta } = loadModelCheckpoint(file);
      members.push({ file, model, meta });
      const first = members[0];
      const checks: [string, unknown, unknown][] = [
        ['task', first.meta.task, meta.task],
        ['input size', first.meta.size, meta.size],
        ['input channels', first.meta.channels, meta.channels],
        ['output channels', outputChannels(first.meta), outputChannels(meta)],
      ];
      for (const [what, a, b] of checks) {
        if (a !== b) throw new UserError(`${first.file} and ${file} differ in ${what} (${a} vs ${b}): the checkpoints of an ensemble must agree on task, size and channels`);
      }
    }
    for (const m of members) optimizeForInference(m.model, [1, m.meta.channels, m.meta.size, m.meta.size]);
  } catch (e) {
    dispose();
    throw e;
  }
  return { members, meta: members[0].meta, dispose };
}

/** A copy of an NCHW batch normalised with a model's statistics (the batch itself is not touched). */
export function normalizeFor(meta: ModelMeta, images: Float32Array, shape: readonly number[]): Float32Array {
  const x = new Float32Array(images);
  if (!meta.normalize) return x;
  const [n, c, h, w] = shape;
  for (let k = 0; k < n; k++) normalizePlanes(x.subarray(k * c * h * w, (k + 1) * c * h * w), c, h, w, meta.normalize.mean, meta.normalize.std);
  return x;
}

/**
 * Mean probabilities [n, K, h, w] of the ensemble on an un-normalised NCHW batch: each model
 * normalises its copy, runs with `tta`, and the per-model probabilities are averaged.
 */
export function ensembleProbabilities(ens: Ensemble, images: Float32Array, shape: [number, number, number, number], tta: TtaMode): { data: Float32Array; channels: number } {
  let sum: Float32Array | null = null;
  let channels = 0;
  for (const m of ens.members) {
    const device = m.model.parameters()[0]?.device ?? 'cpu';
    const p = ttaProbabilities((t) => m.model.forward(t) as Tensor, normalizeFor(m.meta, images, shape), shape, tta, { device });
    if (sum === null) {
      sum = p.data;
      channels = p.channels;
    } else {
      if (p.channels !== channels || p.data.length !== sum.length) {
        throw new UserError(`${ens.members[0].file} and ${m.file} give outputs of different shapes (${channels} vs ${p.channels} channels): they cannot be averaged`);
      }
      for (let i = 0; i < sum.length; i++) sum[i] += p.data[i];
    }
  }
  if (ens.members.length > 1) {
    const inv = 1 / ens.members.length;
    for (let i = 0; i < sum!.length; i++) sum![i] *= inv;
  }
  return { data: sum!, channels };
}
