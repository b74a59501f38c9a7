// The op table. Each op is declared once: its inputs and attributes are validated by infer()
// (shape and dtype inference with errors that name the problem), its forward runs a native
// kernel registered under the same name on every backend (or a custom forward for views and
// multi-kernel ops), and its backward composes other ops or calls dedicated backward kernels.
import { native, TArgSpec } from '../native';
import { DEVICE_IDS } from './device';
import { DType } from './dtype';
import { isGradEnabled } from './grad-mode';
import { GradNode, Tensor, contiguousCopy } from './tensor';
import { shapeStr } from './shape';

export interface OutSpec {
  shape: number[];
  dtype: DType;
}

export type Attrs = Record<string, unknown>;

export interface BackwardCtx<A extends Attrs = Attrs> {
  inputs: Tensor[];
  outputs: Tensor[];
  attrs: A;
  saved: Record<string, unknown>;
}

export interface OpDef<A extends Attrs = Attrs> {
  name: string;
  /** Validates inputs and attrs and returns the outputs' shapes and dtypes. */
  infer?(inputs: Tensor[], attrs: A): OutSpec[];
  /** Native kernel name (default: name). */
  kernel?: string;
  /** Attributes handed to the kernel (default: attrs). */
  kernelAttrs?(attrs: A, inputs: Tensor[], outputs: Tensor[]): Attrs;
  /**
   * How inputs reach the kernel: 'contiguous' (default; copied when needed), 'strided' (any
   * view, as is), or 'broadcast' (views expanded to the first output's shape, stride 0 on
   * broadcast dimensions).
   */
  inputLayout?: 'contiguous' | 'strided' | 'broadcast';
  /** Custom forward (views, multi-kernel ops). May store values for backward in `saved`. */
  forward?(inputs: Tensor[], attrs: A, saved: Record<string, unknown>): Tensor[];
  /** Multiply-accumulates the op performs (for model summaries and FLOP counts). */
  macs?(inputs: Tensor[], outputs: Tensor[], attrs: A): number;
  /** Gradients of the inputs given the outputs' gradients (null where an output got none). */
  backward?(ctx: BackwardCtx<A>, grads: (Tensor | null)[]): (Tensor | null | undefined)[];
}

const table = new Map<string, OpDef>();

export function defineOp<A extends Attrs>(def: OpDef<A>): OpDef<A> {
  if (table.has(def.name)) throw new Error(`op '${def.name}' is defined twice`);
  table.set(def.name, def as unknown as OpDef);
  return def;
}

export function opTable(): ReadonlyMap<string, OpDef> {
  return table;
}

/** The argument tuple for a view expanded (broadcast) to `shape`. */
function broadcastArg(t: Tensor, shape: number[]): TArgSpec {
  const nd = shape.length;
  const strides = new Array<number>(nd).fill(0);
  for (let i = 0; i < t.ndim; i++) {
    const d = nd - t.ndim + i;
    strides[d] = t.shape[i] === 1 && shape[d] !== 1 ? 0 : t.strides[i];
  }
  const a = t.nativeArg();
  return [a[0], a[1], a[2], shape, strides];
}

/** Converts inputs per the op's layout rules and calls fn with the native arguments. */
function withKernelArgs<R>(op: OpDef, inputs: Tensor[], outputs: Tensor[], attrs: Attrs, fn: (kernel: string, device: number, ins: TArgSpec[], outs: TArgSpec[], kattrs: Attrs) => R): R {
  const device = (inputs[0] ?? outputs[0]).device;
  const layout = op.inputLayout ?? 'contiguous';
  const temps: Tensor[] = [];
  try {
    const ins = inputs.map((t) => {
      if (layout === 'broadcast') return broadcastArg(t, outputs[0].shape);
      if (layout === 'strided' || t.isContiguous()) return t.nativeArg();
      const c = contiguousCopy(t);
      temps.push(c);
      return c.nativeArg();
    });
    const kattrs = op.kernelAttrs ? op.kernelAttrs(attrs as never, inputs, outputs) : attrs;
    return fn(op.kernel ?? op.name, DEVICE_IDS[device], ins, outputs.map((t) => t.nativeArg()), kattrs);
  } finally {
    for (const t of temps) t.dispose();
  }
}

/** Runs a registered kernel on the inputs' device with the layout rules of the op. */
export function runKernel(op: OpDef, inputs: Tensor[], outputs: Tensor[], attrs: Attrs): void {
  withKernelArgs(op, inputs, outputs, attrs, (k, d, ins, outs, ka) => native.run(k, d, ins, outs, ka));
}

/**
 * Benchmarks: milliseconds per call of the op's kernel (CUDA events on the GPU, the host clock
 * on the CPU), on outputs allocated from infer(). Ops with a custom forward are not timed here.
 */
export function timeOp<A extends Attrs>(op: OpDef<A>, inputs: Tensor[], attrs: A, iters = 10): number {
  if (!op.infer) throw new Error(`timeOp: '${op.name}' has a custom forward; time its kernels directly`);
  checkInputs(op as OpDef, inputs);
  const outs = op.infer(inputs, attrs).map((s) => Tensor.empty(s.shape, s.dtype, inputs[0].device));
  try {
    return withKernelArgs(op as OpDef, inputs, outs, attrs, (k, d, ins, o, ka) => native.timeKernel(k, d, ins, o, ka, iters));
  } finally {
    outs.forEach((t) => t.dispose());
  }
}

function checkInputs(op: OpDef, inputs: Tensor[]): void {
  for (let i = 0; i < inputs.length; i++) {
    const t = inputs[i];
    if (!(t instanceof Tensor)) throw new Error(`${op.name}: input ${i} must be a Tensor, got ${t === null ? 'null' : typeof t}`);
    t.assertAlive(op.name);
    if (t.device !== inputs[0].device) {
      throw new Error(`${op.name}: all inputs must be on the same device, but input 0 is on ${inputs[0].device} and input ${i} on ${t.device}`);
    }
  }
}

/**
 * Observers of every applied op (model summaries count MACs and output shapes with it; inference
 * plans trace the dataflow). `nested` is true for ops applied inside another op's forward.
 */
export type OpObserver = (op: OpDef, inputs: Tensor[], outputs: Tensor[], attrs: Attrs, nested: boolean) => void;
let applyDepth = 0;
const observers: OpObserver[] = [];
export function observeOps(fn: OpObserver): () => void {
  observers.push(fn);
  return () => {
    const i = observers.indexOf(fn);
    if (i >= 0) observers.splice(i, 1);
  };
}

/** Applies an op: validates, runs the forward, and records an autograd node when needed. */
export function apply<A extends Attrs>(op: OpDef<A>, inputs: Tensor[], attrs: A): Tensor[] {
  checkInputs(op as OpDef, inputs);
  const saved: Record<string, unknown> = {};
  let outputs: Tensor[];
  if (op.forward) {
    applyDepth++;
    try {
      outputs = op.forward(inputs, attrs, saved);
    } finally {
      applyDepth--;
    }
  } else {
    const specs = op.infer!(inputs, attrs);
    const device = inputs[0]?.device ?? 'cpu';
    outputs = specs.map((s) => Tensor.empty(s.shape, s.dtype, device));
    try {
      if (outputs.some((o) => o.size > 0)) runKernel(op as OpDef, inputs, outputs, attrs);
    } catch (e) {
      for (const o of outputs) o.dispose();
      throw e;
    }
  }
  for (const obs of observers) obs(op as OpDef, inputs, outputs, attrs, applyDepth > 0);
  if (op.backward && isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    const node: GradNode = { op: op as OpDef, inputs, outputs, attrs, saved, released: false };
    outputs.forEach((o, i) => {
      if (o.dtype === 'float32' || o.dtype === 'float64') {
        o.requiresGrad = true;
        o.gradFn = node;
        o.outputIndex = i;
      }
    });
  }
  return outputs;
}

/** apply() for single-output ops. */
export function apply1<A extends Attrs>(op: OpDef<A>, inputs: Tensor[], attrs: A): Tensor {
  return apply(op, inputs, attrs)[0];
}

/** Runs a kernel writing into an existing contiguous tensor (in-place updates; no autograd). */
export function applyInto<A extends Attrs>(op: OpDef<A>, inputs: Tensor[], attrs: A, out: Tensor): Tensor {
  checkInputs(op as OpDef, [...inputs, out]);
  if (!out.isContiguous()) throw new Error(`${op.name}: in-place output must be contiguous`);
  if (isGradEnabled() && out.requiresGrad) {
    throw new Error(`${op.name}: in-place update of a tensor that requires grad; wrap it in sc.noGrad()`);
  }
  const specs = op.infer!(inputs, attrs);
  if (specs[0].dtype !== out.dtype || specs[0].shape.join() !== out.shape.join()) {
    throw new Error(`${op.name}: in-place output is ${shapeStr(out.shape)} ${out.dtype} but the result is ${shapeStr(specs[0].shape)} ${specs[0].dtype}`);
  }
  if (out.size > 0) runKernel(op as OpDef, inputs, [out], attrs);
  return out;
}
