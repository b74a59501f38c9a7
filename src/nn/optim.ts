// Optimisers (PyTorch semantics): SGD with momentum/Nesterov/weight decay, Adam, AdamW.
// Each step runs one fused native kernel per parameter, in place, allocating nothing after the
// first step (state buffers are created once).
import { native } from '../native';
import { DEVICE_IDS } from '../tensor/device';
import { Tensor } from '../tensor/tensor';
import { keep } from '../tensor/scope';
import { zerosLike } from '../tensor/create';
import { applyInto } from '../tensor/op';
import { unaryOp } from '../tensor/ops/elementwise';
import { sum } from '../tensor/ops/reduce';
import { square } from '../tensor/ops/elementwise';
import { noGrad } from '../autograd/engine';

export interface ParamGroup {
  params: Tensor[];
  lr: number;
  [k: string]: unknown;
}

function runInPlace(kernel: string, grad: Tensor, targets: Tensor[], attrs: Record<string, unknown>): void {
  for (const t of [grad, ...targets]) {
    t.assertAlive(kernel);
    if (!t.isContiguous()) throw new Error(`${kernel}: parameters and gradients must be contiguous`);
    if (t.device !== grad.device) throw new Error(`${kernel}: parameter on ${targets[0].device} but gradient on ${grad.device}`);
  }
  native.run(kernel, DEVICE_IDS[grad.device], [grad.nativeArg()], targets.map((t) => t.nativeArg()), attrs);
}

export abstract class Optimizer {
  readonly paramGroups: ParamGroup[];
  /** Per-parameter state (buffers are tensors kept out of tidy scopes). */
  readonly state = new Map<Tensor, Record<string, Tensor | number>>();

  constructor(params: Tensor[] | ParamGroup[], defaults: Record<string, unknown> & { lr: number }) {
    if (!Array.isArray(params) || params.length === 0) throw new Error(`${this.constructor.name}: expected a non-empty list of parameters`);
    if (!(typeof defaults.lr === 'number' && defaults.lr >= 0)) throw new Error(`${this.constructor.name}: lr must be a non-negative number, got ${defaults.lr}`);
    const groups = (params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup[])) as Partial<ParamGroup>[];
    this.paramGroups = groups.map((g) => ({ ...defaults, ...g, params: g.params! }) as ParamGroup);
    for (const g of this.paramGroups) for (const p of g.params) {
      if (!(p instanceof Tensor)) throw new Error(`${this.constructor.name}: parameters must be tensors`);
    }
  }

  /** Clears the gradients of every parameter. */
  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) p.zeroGrad();
  }

  /** The learning rate of the first group (schedulers set every group). */
  get lr(): number {
    return this.paramGroups[0].lr;
  }

  abstract step(): void;

  protected buffer(p: Tensor, name: string): { t: Tensor; fresh: boolean } {
    let st = this.state.get(p);
    if (!st) this.state.set(p, (st = {}));
    const cur = st[name];
    if (cur instanceof Tensor) return { t: cur, fresh: false };
    const t = keep(zerosLike(p));
    st[name] = t;
    return { t, fresh: true };
  }

  /** Optimiser state for checkpoints: tensors by `${paramIndex}.${name}` and JSON-able scalars. */
  stateDict(): { tensors: Record<string, Tensor>; meta: { groups: Record<string, unknown>[]; scalars: Record<string, number> } } {
    const tensors: Record<string, Tensor> = {};
    const scalars: Record<string, number> = {};
    let i = 0;
    for (const g of this.paramGroups) for (const p of g.params) {
      const st = this.state.get(p);
      if (st) for (const [k, v] of Object.entries(st)) {
        if (v instanceof Tensor) tensors[`${i}.${k}`] = v;
        else scalars[`${i}.${k}`] = v;
      }
      i++;
    }
    const groups = this.paramGroups.map(({ params, ...rest }) => ({ ...rest, size: params.length }));
    return { tensors, meta: { groups, scalars } };
  }

  loadStateDict(sd: { tensors: Record<string, Tensor>; meta: { groups: Record<string, unknown>[]; scalars: Record<string, number> } }): void {
    const flat = this.paramGroups.flatMap((g) => g.params);
    if (sd.meta.groups.length !== this.paramGroups.length) throw new Error(`optimizer state has ${sd.meta.groups.length} parameter groups, this optimizer ${this.paramGroups.length}`);
    sd.meta.groups.forEach((g, i) => {
      if (g.size !== this.paramGroups[i].params.length) throw new Error(`optimizer state group ${i} has ${g.size} parameters, this optimizer ${this.paramGroups[i].params.length}`);
      const { size: _size, ...rest } = g;
      Object.assign(this.paramGroups[i], rest);
    });
    for (const st of this.state.values()) for (const v of Object.values(st)) if (v instanceof Tensor) v.dispose();
    this.state.clear();
    const put = (key: string, v: Tensor | number) => {
      const dot = key.indexOf('.');
      const idx = Number(key.slice(0, dot));
      const p = flat[idx];
      if (!p) throw new Error(`optimizer state refers to parameter ${idx}, but there are ${flat.length}`);
      if (v instanceof Tensor && v.shape.join() !== p.shape.join()) throw new Error(`optimizer state '${key}' has shape [${v.shape}] but the parameter is [${p.shape}]`);
      let st = this.state.get(p);
      if (!st) this.state.set(p, (st = {}));
      st[key.slice(dot + 1)] = v instanceof Tensor ? keep(v.device === p.device && v.dtype === p.dtype ? v.contiguous() : v.to(p.device).to(p.dtype)) : v;
    };
    for (const [k, v] of Object.entries(sd.tensors)) put(k, v);
    for (const [k, v] of Object.entries(sd.meta.scalars)) put(k, v);
  }

  /** Frees the optimiser's state buffers. */
  dispose(): void {
    for (const st of this.state.values()) for (const v of Object.values(st)) if (v instanceof Tensor) v.dispose();
    this.state.clear();
  }
}

export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export class SGD extends Optimizer {
  constructor(params: Tensor[] | ParamGroup[], opts: SGDOptions) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, ...opts });
    if (opts.nesterov && (!(opts.momentum ?? 0) || (opts.dampening ?? 0) !== 0)) throw new Error('SGD: Nesterov momentum requires momentum > 0 and dampening = 0');
  }
  step(): void {
    for (const g of this.paramGroups) for (const p of g.params) {
      if (!p.grad) continue;
      const momentum = g.momentum as number;
      const attrs = { lr: g.lr, momentum, dampening: g.dampening, weightDecay: g.weightDecay, nesterov: g.nesterov ? 1 : 0, first: 0 };
      if (momentum !== 0) {
        const { t, fresh } = this.buffer(p, 'momentum_buffer');
        attrs.first = fresh ? 1 : 0;
        runInPlace('sgd_step', p.grad, [p, t], attrs);
      } else {
        runInPlace('sgd_step', p.grad, [p, p], attrs);
      }
    }
  }
}

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export class Adam extends Optimizer {
  protected decoupled = false;
  constructor(params: Tensor[] | ParamGroup[], opts: AdamOptions = {}, defaultWeightDecay = 0) {
    super(params, { lr: opts.lr ?? 1e-3, betas: opts.betas ?? [0.9, 0.999], eps: opts.eps ?? 1e-8, weightDecay: opts.weightDecay ?? defaultWeightDecay });
  }
  step(): void {
    for (const g of this.paramGroups) for (const p of g.params) {
      if (!p.grad) continue;
      const m = this.buffer(p, 'exp_avg').t;
      const v = this.buffer(p, 'exp_avg_sq').t;
      const st = this.state.get(p)!;
      const step = ((st.step as number | undefined) ?? 0) + 1;
      st.step = step;
      const [beta1, beta2] = g.betas as [number, number];
      runInPlace('adam_step', p.grad, [p, m, v], { lr: g.lr, beta1, beta2, eps: g.eps, weightDecay: g.weightDecay, step, decoupled: this.decoupled ? 1 : 0 });
    }
  }
}

/** Adam with decoupled weight decay (default 0.01, like PyTorch). */
export class AdamW extends Adam {
  constructor(params: Tensor[] | ParamGroup[], opts: AdamOptions = {}) {
    super(params, opts, 0.01);
    this.decoupled = true;
  }
}

/**
 * Scales gradients in place so that their global L2 norm is at most maxNorm; returns the norm
 * before clipping (PyTorch's clip_grad_norm_).
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): number {
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`);
  return noGrad(() => {
    const grads = params.map((p) => p.grad).filter((g): g is Tensor => !!g);
    let total = 0;
    for (const g of grads) {
      const s = sum(square(g));
      total += s.item();
      s.dispose();
    }
    const norm = Math.sqrt(total);
    const coef = maxNorm / (norm + 1e-6);
    if (coef < 1) for (const g of grads) applyInto(unaryOp, [g], { op: 'affine', a: coef, b: 0 }, g);
    return norm;
  });
}
