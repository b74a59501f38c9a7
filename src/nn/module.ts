// Modules: named parameters, buffers and children in a stable (registration) order, train/eval,
// PyTorch-style dotted state dicts, device moves that keep parameter references valid.
import { native } from '../native';
import { Device, checkDevice } from '../tensor/device';
import { DTYPES, isFloat } from '../tensor/dtype';
import { Tensor } from '../tensor/tensor';
import { keep } from '../tensor/scope';
import { noGrad } from '../autograd/engine';
import { shapeStr, sameShape } from '../tensor/shape';
import { toDevice } from '../tensor/ops/transfer';
import { cast } from '../tensor/ops/elementwise';
import { contiguous } from '../tensor/ops/view';

/** Tracks which module is running, for summaries that attribute ops to layers. */
const moduleStack: string[] = [];
let tracking = 0;
export function currentModulePath(): string {
  return moduleStack.length ? moduleStack[moduleStack.length - 1] : '';
}
export function trackModules<T>(fn: () => T): T {
  tracking++;
  try {
    return fn();
  } finally {
    tracking--;
  }
}

export interface LoadReport {
  missing: string[];
  unexpected: string[];
  mismatched: string[];
}

export abstract class Module {
  training = true;
  /** Dotted path of this module inside the model it was registered in ('' for the root). */
  path = '';
  private readonly paramMap = new Map<string, Tensor | null>();
  private readonly bufferMap = new Map<string, { t: Tensor | null; persistent: boolean }>();
  private readonly childMap = new Map<string, Module>();

  abstract forward(...args: unknown[]): unknown;

  /** Registers a parameter (kept out of tidy scopes; requiresGrad on). */
  protected param(name: string, t: Tensor | null): Tensor {
    if (this.paramMap.has(name) || this.bufferMap.has(name) || this.childMap.has(name)) throw new Error(`Module: '${name}' is registered twice`);
    if (t) {
      keep(t);
      t.requiresGrad = true;
    }
    this.paramMap.set(name, t);
    return t as Tensor;
  }

  /** Registers a buffer (running statistics and such); persistent buffers are in the state dict. */
  protected buffer(name: string, t: Tensor | null, persistent = true): Tensor {
    if (this.paramMap.has(name) || this.bufferMap.has(name) || this.childMap.has(name)) throw new Error(`Module: '${name}' is registered twice`);
    if (t) keep(t);
    this.bufferMap.set(name, { t, persistent });
    return t as Tensor;
  }

  /** Registers a child module under `name` and returns it. */
  add<M extends Module>(name: string, m: M): M {
    if (!(m instanceof Module)) throw new Error(`Module.add('${name}'): expected a Module`);
    if (this.childMap.has(name) || this.paramMap.has(name)) throw new Error(`Module: '${name}' is registered twice`);
    this.childMap.set(name, m);
    m.setPath(this.path ? `${this.path}.${name}` : name);
    // Wrap the child's forward so summaries can attribute the ops it runs to its path.
    const orig = m.forward;
    if (!Object.prototype.hasOwnProperty.call(m, 'forward')) {
      (m as { forward: unknown }).forward = function (this: Module, ...args: unknown[]) {
        if (!tracking) return orig.apply(m, args);
        moduleStack.push(m.path);
        try {
          return orig.apply(m, args);
        } finally {
          moduleStack.pop();
        }
      };
    }
    return m;
  }

  private setPath(p: string): void {
    this.path = p;
    for (const [n, c] of this.childMap) c.setPath(`${p}.${n}`);
  }

  children(): [string, Module][] {
    return [...this.childMap];
  }

  /** All modules, depth first, with dotted names ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this.childMap) out.push(...c.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.paramMap) if (t) out.push([prefix ? `${prefix}.${n}` : n, t]);
    for (const [n, c] of this.childMap) out.push(...c.namedParameters(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, b] of this.bufferMap) if (b.t) out.push([prefix ? `${prefix}.${n}` : n, b.t]);
    for (const [n, c] of this.childMap) out.push(...c.namedBuffers(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Parameters and persistent buffers by dotted name, in PyTorch's state_dict order. */
  stateDict(prefix = ''): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [n, t] of this.paramMap) if (t) out[prefix + n] = t;
    for (const [n, b] of this.bufferMap) if (b.t && b.persistent) out[prefix + n] = b.t;
    for (const [n, c] of this.childMap) Object.assign(out, c.stateDict(`${prefix}${n}.`));
    return out;
  }

  /**
   * Copies values from `dict` into this module's parameters and buffers (casting dtype and
   * moving device as needed). strict (default): any missing, unexpected or mis-shaped entry is
   * an error listing them all; otherwise matching entries load and the report lists the rest.
   */
  loadStateDict(dict: Record<string, Tensor> | { tensors: Record<string, Tensor>; metadata?: unknown }, { strict = true } = {}): LoadReport {
    dict = stateDictOf(dict);
    const own = this.stateDict();
    const report: LoadReport = { missing: [], unexpected: [], mismatched: [] };
    for (const k of Object.keys(own)) if (!(k in dict)) report.missing.push(k);
    for (const k of Object.keys(dict)) if (!(k in own)) report.unexpected.push(k);
    for (const k of Object.keys(own)) {
      if (k in dict && !sameShape(own[k].shape, dict[k].shape)) report.mismatched.push(`${k}: expected ${shapeStr(own[k].shape)}, got ${shapeStr(dict[k].shape)}`);
      // Integers reinterpreted as weights are garbage, never a useful cast (float64 -> float32 is).
      if (k in dict && isFloat(own[k].dtype) && !isFloat(dict[k].dtype)) {
        throw new Error(`loadStateDict: entry '${k}' is ${dict[k].dtype} but the model's ${own[k].dtype} ${this.namedParameters().some(([n]) => n === k) ? 'parameter' : 'buffer'} needs floating-point values (an integer tensor is never cast into weights)`);
      }
    }
    if (strict && (report.missing.length || report.unexpected.length || report.mismatched.length)) {
      const parts: string[] = [];
      if (report.missing.length) parts.push(`missing: ${report.missing.join(', ')}`);
      if (report.unexpected.length) parts.push(`unexpected: ${report.unexpected.join(', ')}`);
      if (report.mismatched.length) parts.push(`wrong shape: ${report.mismatched.join('; ')}`);
      throw new Error(`loadStateDict: the state dict does not match the model (${parts.join(' | ')})`);
    }
    noGrad(() => {
      for (const [k, dst] of Object.entries(own)) {
        const src = dict[k];
        if (!src || !sameShape(src.shape, dst.shape)) continue;
        copyInto(dst, src);
      }
    });
    for (const [, m] of this.namedModules()) m.onStateLoaded();
    this.dropInferenceAll();
    return report;
  }

  /** Called after loadStateDict copied values in: modules with derived state resync it here. */
  protected onStateLoaded(): void {}

  /**
   * Drops state derived from the current weights for inference (the fused convolutions of
   * sc.inference.optimize). Runs on every module on train(), loadStateDict(), to() and dispose(),
   * the calls after which the weights may differ.
   */
  dropInference(): void {}

  /**
   * @internal State of sc.inference kept for this module as a whole (its recorded forward):
   * disposed with the fused convolutions, by the same calls.
   */
  inferenceState: { dispose(): void } | null = null;

  /** @internal Drops the inference state of this module and every module under it. */
  dropInferenceAll(): void {
    for (const [, m] of this.namedModules()) {
      m.dropInference();
      m.inferenceState?.dispose();
      m.inferenceState = null;
    }
  }

  train(mode = true): this {
    if (mode) this.dropInferenceAll();
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * Moves every parameter and buffer to a device ('cpu', 'cuda') or casts the floating-point ones
   * to a float dtype ('float32', 'float64'; integer buffers such as num_batches_tracked keep
   * theirs), in place: references to the parameters stay valid. Gradients are dropped; create
   * optimizers after the cast.
   */
  to(target: Device | 'float32' | 'float64' | string): this {
    if (target === 'float32' || target === 'float64') {
      return this.replaceEach((t) => (t.dtype === target || !isFloat(t.dtype) ? null : cast(t, target)));
    }
    if (target in DTYPES) throw new Error(`Module.to: parameters can be cast to 'float32' or 'float64', not '${target}'`);
    const d = checkDevice(target, 'Module.to');
    return this.replaceEach((t) => (t.device === d ? null : toDevice(t, d)));
  }

  /**
   * Points every parameter and buffer at convert(t)'s storage (a fresh contiguous tensor), or
   * leaves it as it is where convert returns null.
   */
  private replaceEach(convert: (t: Tensor) => Tensor | null): this {
    this.dropInferenceAll();
    noGrad(() => {
      for (const [, t] of [...this.namedParameters(), ...this.namedBuffers()]) {
        const c = convert(t);
        if (!c) continue;
        t.zeroGrad();
        t.replaceStorage(c.storage, c.dtype);
        c.dispose();
      }
    });
    return this;
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  numParameters(trainableOnly = false): number {
    return this.parameters().filter((p) => !trainableOnly || p.requiresGrad).reduce((a, p) => a + p.size, 0);
  }

  /** Freezes (or unfreezes) every parameter of this module. */
  requiresGrad_(v = true): this {
    for (const p of this.parameters()) {
      p.requiresGrad = v;
      if (!v) p.zeroGrad();
    }
    return this;
  }

  /** Frees all parameters and buffers of this module and its children. */
  dispose(): void {
    this.dropInferenceAll();
    for (const [, t] of [...this.namedParameters(), ...this.namedBuffers()]) t.dispose();
  }
}

/**
 * The tensor dict of a loadStateDict argument: a plain name -> tensor dict, or what
 * sc.loadSafetensors returns ({ tensors, metadata }). Anything else is an error saying what it got.
 */
function stateDictOf(v: unknown): Record<string, Tensor> {
  if (!v || typeof v !== 'object' || Array.isArray(v) || v instanceof Tensor) {
    throw new Error(`loadStateDict: expected a dict of name -> tensor (or the result of sc.loadSafetensors), got ${v instanceof Tensor ? 'a tensor' : Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v}`);
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.includes('tensors') && keys.every((k) => k === 'tensors' || k === 'metadata') && o.tensors && typeof o.tensors === 'object' && !(o.tensors instanceof Tensor)) {
    return stateDictOf(o.tensors);
  }
  const bad = keys.filter((k) => !(o[k] instanceof Tensor));
  if (bad.length) throw new Error(`loadStateDict: entries ${bad.slice(0, 5).map((k) => `'${k}'`).join(', ')}${bad.length > 5 ? ` (and ${bad.length - 5} more)` : ''} are not tensors (expected a dict of name -> tensor, or the result of sc.loadSafetensors)`);
  return o as Record<string, Tensor>;
}

/** Copies src's values into dst (same shape; dtype cast and device move as needed). */
export function copyInto(dst: Tensor, src: Tensor): void {
  if (!dst.isContiguous()) throw new Error('copyInto: destination must be contiguous');
  let s = src;
  const temps: Tensor[] = [];
  if (s.dtype !== dst.dtype) temps.push((s = cast(s, dst.dtype)));
  if (s.device !== dst.device) temps.push((s = toDevice(s, dst.device)));
  if (!s.isContiguous()) temps.push((s = contiguous(s)));
  const bytes = DTYPES[dst.dtype].bytes;
  if (dst.size > 0) {
    const host = native.copyOut(s.storage.nativeHandle, s.offset * bytes, dst.size * bytes);
    native.copyIn(dst.storage.nativeHandle, dst.offset * bytes, new Uint8Array(host));
  }
  temps.forEach((t) => t.dispose());
}
