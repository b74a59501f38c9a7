/**
 * Training losses as a weighted sum of terms, from a spec such as
 *   bce+dice                          (the default: BCE + Dice, weights 1)
 *   0.5*bce:pos-weight=3+dice         (weighted BCE)
 *   focal:gamma=2,alpha=0.25+dice
 *   tversky:alpha=0.3,beta=0.7
 *   ohem:ratio=0.25+0.5*dice
 * Multi-class (--classes N >= 2, logits [B, N, H, W] against one-hot targets):
 *   ce+dice                           (the default: softmax cross-entropy + softmax Dice over the foreground classes)
 *   ce:weights=0.2/1/3+dice           (class-weighted cross-entropy, one weight per class, '/'-separated)
 * Grammar: terms joined by '+'; a term is [weight*]name[:key=value,key=value...].
 * A BCE or OHEM term without its own pos-weight uses the run's --pos-weight (a number or 'auto').
 */
import { Tensor } from '../tensor';
import * as F from '../nn/functional';
import { UserError } from './errors';
import { softmaxCrossEntropy, softmaxDiceLoss } from './multiclass-losses';

export type LossName = 'bce' | 'dice' | 'focal' | 'tversky' | 'ohem' | 'ce';

export interface LossTerm {
  name: LossName;
  weight: number;
  /** Parameters by their spec names (pos-weight, smooth, gamma, alpha, beta, ratio). */
  params: Record<string, number>;
  /** ce:weights=w0/w1/...: one cross-entropy weight per class. */
  classWeights?: number[];
}

/** Each loss's parameters: [name, check, description]. */
const PARAMS: Record<LossName, [string, (v: number) => boolean, string][]> = {
  bce: [['pos-weight', (v) => v > 0, 'a positive number']],
  dice: [['smooth', (v) => v >= 0, 'a non-negative number']],
  focal: [['gamma', (v) => v >= 0, 'a non-negative number'], ['alpha', (v) => v >= 0 && v <= 1, 'a number in [0, 1]']],
  tversky: [['alpha', (v) => v >= 0, 'a non-negative number'], ['beta', (v) => v >= 0, 'a non-negative number'], ['smooth', (v) => v >= 0, 'a non-negative number']],
  ohem: [['ratio', (v) => v > 0 && v <= 1, 'a number in (0, 1]'], ['pos-weight', (v) => v > 0, 'a positive number']],
  // 'weights' is a list, parsed apart from the numeric parameters (see parseLossSpec).
  ce: [['weights', () => true, "one non-negative weight per class joined by '/', e.g. 0.2/1/1"]],
};
/** The terms that work with one sigmoid channel only (--classes 1); 'dice' is generalised to softmax Dice. */
const BINARY_ONLY: LossName[] = ['bce', 'focal', 'tversky', 'ohem'];
export const LOSS_NAMES = Object.keys(PARAMS) as LossName[];

const isNumber = (s: string) => /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(s.trim());

/** Parses a loss spec (see the module comment); errors are UserErrors naming the bad part. */
export function parseLossSpec(spec: string): LossTerm[] {
  if (typeof spec !== 'string' || spec.trim() === '') throw new UserError(`--loss: expected a spec like 'bce+dice' or 'focal:gamma=2+dice', got '${String(spec)}'`);
  const terms: LossTerm[] = [];
  for (const raw of spec.split('+')) {
    const part = raw.trim();
    if (part === '') throw new UserError(`--loss '${spec}': empty term (terms are joined by '+')`);
    let weight = 1;
    let body = part;
    const star = part.indexOf('*');
    if (star >= 0) {
      const w = part.slice(0, star).trim();
      if (!isNumber(w) || !(Number(w) > 0)) throw new UserError(`--loss '${spec}': weight '${w}' of '${part}' must be a positive number`);
      weight = Number(w);
      body = part.slice(star + 1).trim();
    }
    const colon = body.indexOf(':');
    const name = (colon < 0 ? body : body.slice(0, colon)).trim().toLowerCase();
    if (!(name in PARAMS)) throw new UserError(`--loss '${spec}': unknown loss '${name}' (expected ${LOSS_NAMES.join(', ')})`);
    const allowed = PARAMS[name as LossName];
    const params: Record<string, number> = {};
    let classWeights: number[] | undefined;
    if (colon >= 0) {
      for (const kv of body.slice(colon + 1).split(',')) {
        const eq = kv.indexOf('=');
        const key = (eq < 0 ? kv : kv.slice(0, eq)).trim().toLowerCase();
        const p = allowed.find(([k]) => k === key);
        if (!p) throw new UserError(`--loss '${spec}': ${name} has no parameter '${key}' (it takes ${allowed.map(([k]) => k).join(', ')})`);
        const value = eq < 0 ? '' : kv.slice(eq + 1).trim();
        if (key === 'weights') {
          const ws = value.split('/').map((v) => v.trim());
          if (ws.length < 2 || !ws.every((v) => isNumber(v) && Number(v) >= 0) || !ws.some((v) => Number(v) > 0)) {
            throw new UserError(`--loss '${spec}': ce weights must be ${p[2]} (at least one positive), got '${value}'`);
          }
          if (classWeights) throw new UserError(`--loss '${spec}': ce weights is given twice`);
          classWeights = ws.map(Number);
          continue;
        }
        if (key === 'pos-weight' && value === 'auto') throw new UserError(`--loss '${spec}': pos-weight=auto is set for the run with --pos-weight auto, which ${name} terms use when they name no pos-weight`);
        if (!isNumber(value) || !p[1](Number(value))) throw new UserError(`--loss '${spec}': ${name} ${key} must be ${p[2]}, got '${value}'`);
        if (key in params) throw new UserError(`--loss '${spec}': ${name} ${key} is given twice`);
        params[key] = Number(value);
      }
    }
    terms.push(classWeights ? { name: name as LossName, weight, params, classWeights } : { name: name as LossName, weight, params });
  }
  return terms;
}

/**
 * Checks that the terms fit the number of classes: sigmoid-only losses (bce, focal, tversky, ohem)
 * need classes 1, ce needs classes >= 2, and ce's weights need one per class.
 */
export function checkLossForClasses(terms: LossTerm[], classes: number): void {
  for (const t of terms) {
    if (classes >= 2 && BINARY_ONLY.includes(t.name)) {
      throw new UserError(`--loss: '${t.name}' is a binary loss (one sigmoid channel) and cannot train --classes ${classes}; multi-class losses are ce (softmax cross-entropy, optionally ce:weights=w0/w1/...) and dice (softmax Dice), e.g. --loss ce+dice`);
    }
    if (classes < 2 && t.name === 'ce') throw new UserError(`--loss: 'ce' (softmax cross-entropy) needs --classes 2 or more; for binary segmentation use bce`);
    if (t.classWeights && t.classWeights.length !== classes) {
      throw new UserError(`--loss: ce has ${t.classWeights.length} class weights (${t.classWeights.join('/')}) for --classes ${classes}: give one per class, background first`);
    }
  }
}

/** The default loss terms of a run: BCE + Dice for one class, CE + softmax Dice for more, with the --bce-weight / --dice-weight weights. */
export function defaultLossTerms(bceWeight: number, diceWeight: number, classes: number): LossTerm[] {
  const terms = bceDiceTerms(bceWeight, diceWeight);
  return classes >= 2 ? terms.map((t) => (t.name === 'bce' ? { ...t, name: 'ce' as LossName } : t)) : terms;
}

/** The terms of today's BCE + Dice from the --bce-weight / --dice-weight settings (zero weights dropped). */
export function bceDiceTerms(bceWeight: number, diceWeight: number): LossTerm[] {
  const terms: LossTerm[] = [];
  if (bceWeight > 0) terms.push({ name: 'bce', weight: bceWeight, params: {} });
  if (diceWeight > 0) terms.push({ name: 'dice', weight: diceWeight, params: {} });
  return terms;
}

/**
 * The loss function (logits, target) -> scalar of the terms. `posWeight` is the run's BCE
 * positive weight, used by BCE and OHEM terms that do not give their own.
 */
export function buildLoss(terms: LossTerm[], { posWeight, classes = 1 }: { posWeight?: number; classes?: number } = {}): (logits: Tensor, target: Tensor) => Tensor {
  if (terms.length === 0) throw new UserError('the loss has no terms (the BCE and Dice weights are both 0?)');
  checkLossForClasses(terms, classes);
  const fns = terms.map((t): ((x: Tensor, y: Tensor) => Tensor) => {
    const p = t.params;
    // Multi-class: logits [B, C, H, W] against one-hot targets of the same shape.
    if (classes >= 2) {
      if (t.name === 'ce') return (x, y) => softmaxCrossEntropy(x, y, { weights: t.classWeights });
      return (x, y) => softmaxDiceLoss(x, y, { smooth: p.smooth ?? 1 });
    }
    switch (t.name) {
      case 'bce': return (x, y) => F.bceWithLogits(x, y, { posWeight: p['pos-weight'] ?? posWeight });
      case 'dice': return (x, y) => F.diceLoss(x, y, { smooth: p.smooth });
      case 'focal': return (x, y) => F.focalLoss(x, y, { gamma: p.gamma, alpha: p.alpha });
      case 'tversky': return (x, y) => F.tverskyLoss(x, y, { alpha: p.alpha, beta: p.beta, smooth: p.smooth });
      case 'ohem': return (x, y) => F.ohemBce(x, y, { ratio: p.ratio, posWeight: p['pos-weight'] ?? posWeight });
      default: throw new UserError(`unknown loss '${String((t as LossTerm).name)}'`);
    }
  });
  return (x, y) => {
    let total: Tensor | null = null;
    fns.forEach((fn, i) => {
      const l = fn(x, y).mul(terms[i].weight);
      total = total ? total.add(l) : l;
    });
    return total!;
  };
}

/** A spec string for logs, e.g. '0.5*bce:pos-weight=3+dice'. */
export function formatLossTerms(terms: LossTerm[]): string {
  return terms.map((t) => {
    const params = [...Object.entries(t.params).map(([k, v]) => `${k}=${v}`), ...(t.classWeights ? [`weights=${t.classWeights.join('/')}`] : [])].join(',');
    return `${t.weight !== 1 ? `${t.weight}*` : ''}${t.name}${params ? `:${params}` : ''}`;
  }).join('+');
}

/**
 * Deep-supervision weights for `n` outputs ordered from the shallowest / coarsest to the final
 * one (UNet++'s forwardAll order X^{0,1}..X^{0,4}), normalised to sum 1.
 *
 * nnU-Net weights its outputs 1, 1/2, 1/4, ... from the full-resolution one down, zeroes the
 * coarsest and normalises. UNet++'s four heads are all full resolution; they differ in depth (the
 * head on X^{0,j} sees a j-level nested sub-network), so the halving is applied per level of
 * depth: the final head X^{0,4} weighs 1, X^{0,3} 1/2, X^{0,2} 1/4, X^{0,1} 1/8, i.e. 8/15, 4/15,
 * 2/15, 1/15. The shallowest head is not zeroed: nnU-Net drops its lowest output because a 4x4 or
 * 8x8 map carries little, which a full-resolution head does not.
 */
export function deepSupervisionWeights(n: number): number[] {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`deepSupervisionWeights: expected a positive number of outputs, got ${n}`);
  const raw = Array.from({ length: n }, (_, k) => 2 ** -(n - 1 - k));
  const sum = raw.reduce((a, b) => a + b, 0);
  return raw.map((v) => v / sum);
}

/**
 * nnU-Net's deep-supervision weights for `n` outputs ordered from full resolution down (MedNeXt's
 * forwardAll order: H, H/2, H/4, H/8, H/16): output i weighs 1/2^i, the lowest-resolution output
 * weighs 0, and the weights are normalised to sum 1 (nnU-Net v1 nnUNetTrainerV2.initialize, which
 * the MedNeXt authors' trainers inherit). For MedNeXt's five heads: 8/15, 4/15, 2/15, 1/15, 0.
 * The coarsest map (1/16: 16x16 at 256 px) is too coarse to carry a useful segmentation signal.
 */
export function nnunetDeepSupervisionWeights(n: number): number[] {
  if (!(Number.isInteger(n) && n >= 1)) throw new Error(`nnunetDeepSupervisionWeights: expected a positive number of outputs, got ${n}`);
  const raw = Array.from({ length: n }, (_, i) => (i > 0 && i === n - 1 ? 0 : 2 ** -i));
  const sum = raw.reduce((a, b) => a + b, 0);
  return raw.map((v) => v / sum);
}

/**
 * The target [N, C, H, W] at an output's smaller size [h, w] by nearest-neighbour sampling (for
 * integer factors s = H/h = W/w: the pixel at s*i + floor(s/2), PyTorch's 'nearest-exact', which
 * nnU-Net v2 uses to downsample its deep-supervision targets). Labels stay labels: a binary mask
 * stays 0/1 and a class-index map keeps its classes, which averaging would not preserve; max-pooling
 * would grow every foreground region by up to s-1 pixels.
 */
export function downsampleTarget(target: Tensor, size: [number, number]): Tensor {
  if (target.ndim !== 4) throw new Error(`downsampleTarget: expected a target [N, C, H, W], got [${target.shape.join(', ')}]`);
  const [n, c, H, W] = target.shape;
  const [h, w] = size;
  if (h === H && w === W) return target;
  const s = H / h;
  if (!Number.isInteger(s) || s < 1 || W / w !== s) {
    throw new Error(`downsampleTarget: an output of ${h}x${w} is not the ${H}x${W} target divided by one integer factor`);
  }
  const mid = Math.floor(s / 2);
  return target.contiguous().reshape([n, c, h, s, w, s]).narrow(3, mid, 1).narrow(5, mid, 1).contiguous().reshape([n, c, h, w]);
}

/**
 * Sum over the outputs of weights[k] * loss(outputs[k], target) (weights default:
 * deepSupervisionWeights). An output smaller than the target is compared with the target
 * downsampled to its size (downsampleTarget); an output whose weight is 0 is skipped, as nnU-Net's
 * MultipleOutputLoss2 does, so it costs nothing and gets no gradient.
 */
export function deepSupervisionLoss(outputs: Tensor[], target: Tensor, loss: (x: Tensor, y: Tensor) => Tensor, weights = deepSupervisionWeights(outputs.length)): Tensor {
  if (outputs.length === 0) throw new Error('deepSupervisionLoss: no outputs');
  if (weights.length !== outputs.length) throw new Error(`deepSupervisionLoss: ${weights.length} weights for ${outputs.length} outputs`);
  let total: Tensor | null = null;
  outputs.forEach((o, k) => {
    if (weights[k] === 0) return;
    const y = o.ndim === 4 && target.ndim === 4 && (o.shape[2] !== target.shape[2] || o.shape[3] !== target.shape[3]) ? downsampleTarget(target, [o.shape[2], o.shape[3]]) : target;
    const l = loss(o, y).mul(weights[k]);
    total = total ? total.add(l) : l;
  });
  if (!total) throw new Error('deepSupervisionLoss: every weight is 0');
  return total;
}
