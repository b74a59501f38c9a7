// Inference plans: sc.inference.optimize(model, example) traces one eval-mode forward, finds
// every convolution whose output flows only into a batch norm and/or an activation, and fuses
// them into one conv2d_fused call per chain:
//   conv -> BN [-> act]   BN folded into the weights and bias:  w' = w * s,  b' = (b - mean) * s + beta
//   conv -> act [-> BN]   the activation in the epilogue, BN as a per-channel scale and shift
//   conv -> act           the activation in the epilogue
// where s = gamma / sqrt(var + eps). The fused modules keep their weights untouched; the plan
// holds the folded copies and applies only in eval mode under noGrad. It is dropped by
// train(), loadStateDict(), to() and dispose(), since those may change the weights; a forward
// that strays from the traced dataflow (an absorbed module fed another tensor) is an error,
// never a silently different result.
//
// On top of the fusion, the optimized forward is recorded (src/tensor/replay.ts): the second
// call in a row with inputs of one shape runs normally while its native kernels are recorded,
// and later calls with that shape replay them on buffers planned once, skipping the JavaScript of
// the modules and ops. One recording is kept per model (a new shape seen twice in a row replaces
// it); a forward that cannot be recorded (it reads values on the host, draws random numbers, ...)
// keeps running normally, and replayInfo() says why. The recording repeats the forward as it was:
// after changing a module's configuration (not its weights, which are read live), call
// optimize() again.
import { isGradEnabled, noGrad } from '../autograd/engine';
import { Tensor, tidy } from '../tensor/tensor';
import { observeOps } from '../tensor/op';
import { keep } from '../tensor/scope';
import { KernelPlan } from '../tensor/replay';
import { randn } from '../tensor/create';
import * as F from './functional';
import type { FusedActivation } from '../tensor/ops/conv';
import { BatchNorm2d, Conv2d, Lambda, type AbsorbedForward, type FusedConvForward } from './layers';
import { Module, currentModulePath, trackModules } from './module';

export interface OptimizeReport {
  /** Convolutions in the traced forward. */
  convs: number;
  /** Convolutions now running fused, and what they absorbed. */
  fused: number;
  batchNormsFolded: number;
  activationsFused: number;
}

interface OpRecord {
  op: string;
  inputs: Tensor[];
  outputs: Tensor[];
  attrs: Record<string, unknown>;
  path: string;
}

const ACTS: Record<string, FusedActivation> = { ReLU: 'relu', GELU: 'gelu' };

class FusedConv implements FusedConvForward {
  last: Tensor | null = null;
  constructor(
    private readonly conv: Conv2d,
    private readonly weight: Tensor,
    private readonly bias: Tensor | null,
    private readonly act: FusedActivation,
    private readonly scale: Tensor | null,
    private readonly shift: Tensor | null,
    private readonly owned: Tensor[],
  ) {}
  forward(x: Tensor): Tensor {
    const { stride, padding, dilation, groups } = this.conv.cfg;
    this.last = F.conv2dFused(x, this.weight, this.bias, { stride, padding, dilation, groups, act: this.act, scale: this.scale, shift: this.shift });
    return this.last;
  }
  dispose(): void {
    for (const t of this.owned) t.dispose();
    this.owned.length = 0;
    this.last = null;
  }
}

class Absorbed implements AbsorbedForward {
  constructor(private readonly leader: FusedConv, private readonly path: string, private readonly leaderPath: string) {}
  pass(x: Tensor): Tensor {
    if (x !== this.leader.last) {
      throw new Error(`sc.inference: '${this.path}' was fused into the convolution '${this.leaderPath}' by optimize(), but now receives another tensor; this forward does not follow the traced plan (call sc.inference.release(model), or optimize() again with an input like this one)`);
    }
    return x;
  }
}

export interface ReplayInfo {
  /** Whether a recorded forward is ready (the next call with its input shapes replays it). */
  recorded: boolean;
  /** The input shapes it was recorded for. */
  inputShapes: number[][];
  /** Kernel calls per replay, and the bytes of the intermediate buffers it keeps. */
  kernels: number;
  bufferBytes: number;
  /** Concatenations whose inputs are written in place at batch 1 (no copy; see replay.ts). */
  concatsElided: number;
  /** Forwards served by replaying since optimize(). */
  replays: number;
  /** Why the last forward tried could not be recorded (null when it could). */
  declined: string | null;
}

/** The key of a call's arguments: tensors by shape, dtype and device, other values as they are. */
function argumentKey(args: unknown[]): string | null {
  try {
    return JSON.stringify(args, (_k, v) => (v instanceof Tensor ? `tensor ${v.dtype} ${v.device} [${v.shape.join(',')}]` : v));
  } catch {
    return null; // cyclic or BigInt arguments: not recorded
  }
}

/** The recorded forward of an optimized model (see the top of this file). */
class ForwardRecording {
  private plan: KernelPlan | null = null;
  private planKey: string | null = null;
  private lastKey: string | null = null;
  private readonly declinedKeys = new Map<string, string>();
  private lastDeclined: string | null = null;
  private replays = 0;

  forward(plain: () => unknown, args: unknown[]): unknown {
    const key = argumentKey(args);
    if (this.plan && !this.plan.isValid) {
      this.plan.dispose();
      this.plan = this.planKey = null;
    }
    const inputs = tensorsIn(args);
    if (key !== null && this.plan && key === this.planKey) {
      this.replays++;
      return this.plan.run(inputs);
    }
    const again = key !== null && key === this.lastKey;
    this.lastKey = key;
    if (!again || this.declinedKeys.has(key!) || inputs.length === 0 || inputs.some((t) => !t.isContiguous())) return tidy(plain);
    const { result, plan, declined } = tidy(() => KernelPlan.capture(plain, inputs));
    this.lastDeclined = declined;
    if (plan) {
      this.plan?.dispose();
      this.plan = plan;
      this.planKey = key;
    } else {
      if (this.declinedKeys.size >= 64) this.declinedKeys.clear(); // bounded, for a model fed many shapes
      this.declinedKeys.set(key!, declined!);
    }
    return result;
  }

  info(): ReplayInfo {
    const p = this.plan;
    return { recorded: !!p, inputShapes: p?.inputShapes ?? [], kernels: p?.kernels ?? 0, bufferBytes: p?.bufferBytes ?? 0, concatsElided: p?.concatsElided ?? 0, replays: this.replays, declined: this.lastDeclined };
  }

  dispose(): void {
    this.plan?.dispose();
    this.plan = this.planKey = this.lastKey = null;
  }
}

// The root forward of an optimized model runs inside tidy() in eval mode under noGrad: nothing
// is saved for backward there, so every tensor the forward made and does not return is garbage,
// and freeing it at once keeps a plain synchronous loop (no tidy of the user's own) flat instead
// of leaving the intermediates to finalizers that only run when the event loop turns.
const tidyForwards = new WeakMap<Module, { original: Module['forward']; own: boolean }>();

function installForward(model: Module): void {
  if (tidyForwards.has(model)) return;
  const original = model.forward;
  tidyForwards.set(model, { original, own: Object.prototype.hasOwnProperty.call(model, 'forward') });
  model.forward = function optimizedInEval(this: Module, ...args: unknown[]) {
    if (model.training || isGradEnabled()) return original.apply(this, args);
    const plain = () => original.apply(this, args);
    const rec = model.inferenceState;
    return rec instanceof ForwardRecording ? rec.forward(plain, args) : tidy(plain);
  } as Module['forward'];
}

/** What the recorded forward of an optimized model is doing (see optimize()). */
export function replayInfo(model: Module): ReplayInfo {
  const rec = model.inferenceState;
  if (!(rec instanceof ForwardRecording)) return { recorded: false, inputShapes: [], kernels: 0, bufferBytes: 0, concatsElided: 0, replays: 0, declined: 'the model is not optimized for replay (sc.inference.optimize)' };
  return rec.info();
}

/** Drops the plan of optimize(): every module runs its own forward again. */
export function release(model: Module): void {
  model.dropInferenceAll();
  const saved = tidyForwards.get(model);
  if (saved) {
    tidyForwards.delete(model);
    if (saved.own) model.forward = saved.original;
    else delete (model as { forward?: unknown }).forward;
  }
}

function tensorsIn(v: unknown, out: Tensor[] = []): Tensor[] {
  if (v instanceof Tensor) out.push(v);
  else if (Array.isArray(v)) v.forEach((e) => tensorsIn(e, out));
  else if (v && typeof v === 'object') Object.values(v).forEach((e) => tensorsIn(e, out));
  return out;
}

/** Per-channel s = gamma / sqrt(var + eps) and t = beta - mean * s, in float64, as [s, t]. */
function bnAffine(bn: BatchNorm2d): [Tensor, Tensor] {
  const f64 = (t: Tensor) => t.to('float64');
  const v = f64(bn.runningVar!), m = f64(bn.runningMean!);
  let s = v.add(bn.cfg.eps ?? 1e-5).sqrt().pow(-1);
  if (bn.weight) s = s.mul(f64(bn.weight));
  let t = m.mul(s).neg();
  if (bn.bias) t = t.add(f64(bn.bias));
  return [s, t];
}

/**
 * Fuses the model's conv -> batch norm -> activation chains for inference (see the top of this
 * file) and puts the model in eval mode. `example` (a tensor or an input shape) is run once to
 * trace the dataflow; any input the forward treats the same way benefits. Unless
 * `options.replay` is false, the optimized forward is then recorded and replayed per input shape
 * (see the top of this file; replayInfo() reports on it). Returns what it fused.
 */
export interface OptimizeOptions {
  /** Record the optimized forward and replay it for inputs of a shape seen before (default true). */
  replay?: boolean;
}

export function optimize(model: Module, example: Tensor | number[], options: OptimizeOptions = {}): OptimizeReport {
  if (!(model instanceof Module)) throw new Error('sc.inference.optimize: expected a Module');
  release(model);
  model.eval();
  const byPath = new Map<string, Module>();
  for (const [, m] of model.namedModules()) byPath.set(m.path, m);
  const records: OpRecord[] = [];
  const finals = new Set<Tensor>();
  tidy(() => noGrad(() => {
    const x = example instanceof Tensor ? example : randn(example, { dtype: model.parameters()[0]?.dtype ?? 'float32', device: model.parameters()[0]?.device ?? 'cpu' });
    const stop = observeOps((op, inputs, outputs, attrs, nested) => {
      if (!nested) records.push({ op: op.name, inputs, outputs, attrs: attrs as Record<string, unknown>, path: currentModulePath() });
    });
    try {
      for (const t of tensorsIn(trackModules(() => model.forward(x)))) finals.add(t);
    } finally {
      stop();
    }
  }));

  const consumers = new Map<Tensor, OpRecord[]>();
  for (const r of records) for (const t of r.inputs) consumers.set(t, [...(consumers.get(t) ?? []), r]);
  const calls = new Map<string, number>();
  for (const r of records) calls.set(`${r.path}/${r.op}`, (calls.get(`${r.path}/${r.op}`) ?? 0) + 1);
  const once = (r: OpRecord) => calls.get(`${r.path}/${r.op}`) === 1;
  // The one op that reads t, when nothing else (the model's output included) does.
  const soleConsumer = (t: Tensor): OpRecord | null => {
    const c = consumers.get(t) ?? [];
    return c.length === 1 && !finals.has(t) && once(c[0]) && c[0].inputs[0] === t ? c[0] : null;
  };
  const asBN = (r: OpRecord | null): BatchNorm2d | null => {
    const m = r && r.op === 'batch_norm' && !r.attrs.training && r.attrs.hasRunning ? byPath.get(r.path) : null;
    return m instanceof BatchNorm2d && m.runningMean && m.runningVar ? m : null;
  };
  const asAct = (r: OpRecord | null): [Lambda, FusedActivation] | null => {
    const m = r && r.op === 'unary' ? byPath.get(r.path) : null;
    return m instanceof Lambda && ACTS[m.name] && r!.attrs.op === ACTS[m.name] ? [m, ACTS[m.name]] : null;
  };

  const report: OptimizeReport = { convs: 0, fused: 0, batchNormsFolded: 0, activationsFused: 0 };
  noGrad(() => {
    for (const r of records) {
      if (r.op !== 'conv2d') continue;
      report.convs++;
      const conv = byPath.get(r.path);
      if (!(conv instanceof Conv2d) || !once(r) || conv.fused) continue;
      let cur = r.outputs[0];
      let next = soleConsumer(cur);
      const before = asBN(next);
      if (before) cur = next!.outputs[0], next = soleConsumer(cur);
      const act = asAct(next);
      if (act) cur = next!.outputs[0], next = soleConsumer(cur);
      const after = act && !before ? asBN(next) : null;
      if (!before && !act) continue;

      const owned: Tensor[] = [];
      const own = (t: Tensor) => (owned.push(keep(t)), t);
      let weight = conv.weight, bias = conv.bias, scale: Tensor | null = null, shift: Tensor | null = null;
      tidy(() => {
        const dt = conv.weight.dtype;
        if (before) {
          const [s, t] = bnAffine(before);
          weight = own(conv.weight.to('float64').mul(s.reshape([-1, 1, 1, 1])).to(dt));
          bias = own((conv.bias ? conv.bias.to('float64').mul(s).add(t) : t).to(dt));
        }
        if (after) {
          const [s, t] = bnAffine(after);
          scale = own(s.to(dt));
          shift = own(t.to(dt));
        }
      });
      const fused = new FusedConv(conv, weight, bias, act ? act[1] : 'none', scale, shift, owned);
      conv.fused = fused;
      for (const m of [before, act?.[0], after]) if (m) m.absorbed = new Absorbed(fused, m.path, conv.path);
      report.fused++;
      report.batchNormsFolded += (before ? 1 : 0) + (after ? 1 : 0);
      report.activationsFused += act ? 1 : 0;
    }
  });
  installForward(model);
  if (options.replay ?? true) model.inferenceState = new ForwardRecording();
  return report;
}
