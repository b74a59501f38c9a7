// Recorded kernel sequences. For one input shape, an inference forward (eval mode, noGrad) is the
// same sequence of native kernel calls every time; only the input's values differ. capture() runs
// such a forward once while recording every native run() and every storage it creates; the plan
// it returns replays the sequence directly: no op dispatch, shape inference, Tensor objects or
// allocation per kernel, which at batch 1 is a tenth or more of the forward's time (the JavaScript
// between kernels also evicts the cache lines the next kernel wants). The intermediates are
// mapped onto a few buffers by liveness (first to last kernel that names them; greedy best fit),
// a static memory plan: the buffers stay warm in the cache from one replay to the next.
//
// A recording cannot repeat what happened outside the kernels, so capture() declines (plan null,
// with the reason) when the forward reads values on the host (data-dependent control flow),
// writes host data into a tensor (rand(), constants built from JavaScript arrays per call) or runs
// a random kernel (dropout). Storages the sequence reads from outside (parameters, folded weights,
// module caches) are watched: once one of them is given back, the plan is invalid and says so.
import { native, setNativeRecorder, TArgSpec } from '../native';
import type { Device } from './device';
import { DType, DTYPES } from './dtype';
import { isContiguousLayout, numel, sameShape } from './shape';
import { onStorageRelease, Storage, watchStorages } from './storage';
import { Tensor } from './tensor';

interface KernelCall {
  kernel: string;
  backend: number;
  ins: TArgSpec[];
  outs: TArgSpec[];
  attrs: Record<string, unknown>;
}

/** Kernels whose result a recording would freeze (their seed is an attribute). */
const RANDOM_KERNELS = new Set(['dropout']);

/** A result tensor of the recorded forward, rebuilt over a fresh storage on every replay. */
interface OutputView {
  storage: number;
  shape: number[];
  strides: number[];
  offset: number;
  dtype: DType;
}

/** What the forward returned, with each tensor replaced by the index of its OutputView. */
type Template = { tensor: number } | { array: Template[] } | { object: Record<string, Template> } | { value: unknown };

/** The template of a result, or null when it holds something a replay could not rebuild. */
function templateOf(v: unknown, tensors: Tensor[]): Template | null {
  if (v instanceof Tensor) {
    tensors.push(v);
    return { tensor: tensors.length - 1 };
  }
  const all = (parts: (Template | null)[]) => (parts.every((p) => p !== null) ? (parts as Template[]) : null);
  if (Array.isArray(v)) {
    const parts = all(v.map((e) => templateOf(e, tensors)));
    return parts && { array: parts };
  }
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const keys = Object.keys(v);
    const parts = all(keys.map((k) => templateOf((v as Record<string, unknown>)[k], tensors)));
    return parts && { object: Object.fromEntries(keys.map((k, i) => [k, parts[i]])) };
  }
  // Primitives are repeated as they are; a Map or class instance might hold this call's tensors.
  return v === null || (typeof v !== 'object' && typeof v !== 'function') ? { value: v } : null;
}

function build(t: Template, tensors: Tensor[]): unknown {
  if ('tensor' in t) return tensors[t.tensor];
  if ('array' in t) return t.array.map((e) => build(e, tensors));
  if ('object' in t) return Object.fromEntries(Object.entries(t.object).map(([k, e]) => [k, build(e, tensors)]));
  return t.value;
}

const BYTES_BY_ID = new Map(Object.values(DTYPES).map((d) => [d.id, d.bytes]));

/** Appends v to the list kept under key k. */
function pushTo<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/**
 * Concatenations whose inputs can be written in place: a cat along a dimension with nothing but
 * ones before it (channels at batch 1) puts each input in one contiguous block of the output, so
 * the kernels that write the inputs can write those blocks directly and the copy goes. Taken
 * when the output and the inputs are intermediates used whole, nothing writes an input after the
 * cat (the output would no longer be a copy of it) and nothing but the cat writes the output.
 * `pinned` storages (the plan's inputs and outputs) are never moved. Returns the calls without
 * the elided cats, their arguments rewritten to the blocks.
 */
function elideConcats(calls: KernelCall[], created: Map<number, Storage>, pinned: (h: number) => boolean): KernelCall[] {
  const writers = new Map<number, number[]>();
  calls.forEach((c, i) => c.outs.forEach((a) => pushTo(writers, a[0], i)));
  const whole = (a: TArgSpec) => {
    const s = created.get(a[0]);
    return !!s && !pinned(a[0]) && a[1] === 0 && isContiguousLayout(a[3], a[4]) && s.bytes === numel(a[3]) * (BYTES_BY_ID.get(a[2]) ?? 0);
  };
  const alias = new Map<number, { to: number; base: number }>();
  const dropped = new Set<number>();
  calls.forEach((c, i) => {
    if (c.kernel !== 'cat' || c.outs.length !== 1 || c.ins.length < 2) return;
    const o = c.outs[0], dim = Number(c.attrs.dim);
    if (!whole(o) || o[3].slice(0, dim).some((d) => d !== 1) || (writers.get(o[0]) ?? []).some((j) => j !== i)) return;
    const placed: [number, number][] = [];
    let base = 0;
    for (const a of c.ins) {
      const h = a[0];
      if (!whole(a) || a[2] !== o[2] || alias.has(h) || h === o[0] || placed.some(([p]) => p === h)) return;
      if ((writers.get(h) ?? []).some((j) => j > i)) return;
      placed.push([h, base]);
      base += numel(a[3]);
    }
    for (const [h, b] of placed) alias.set(h, { to: o[0], base: b });
    dropped.add(i);
  });
  // An input may be the output of an earlier elided cat: follow the chain to the last storage.
  const resolve = (h: number): { to: number; base: number } | null => {
    let r = alias.get(h);
    if (!r) return null;
    let to = r.to, base = r.base;
    while ((r = alias.get(to))) (base += r.base), (to = r.to);
    return { to, base };
  };
  const kept = calls.filter((_, i) => !dropped.has(i));
  for (const c of kept) {
    for (const a of [...c.ins, ...c.outs]) {
      const r = resolve(a[0]);
      if (r) (a[0] = r.to), (a[1] += r.base);
    }
  }
  return kept;
}

export interface CaptureResult<T> {
  /** What the recorded forward returned (a normal result, valid whether or not a plan came of it). */
  result: T;
  plan: KernelPlan | null;
  /** Why no plan was made (null when one was). */
  declined: string | null;
}

export class KernelPlan {
  private valid = true;
  private invalidReason = '';
  private readonly unwatch: (() => void)[] = [];

  private constructor(
    private readonly calls: KernelCall[],
    /** Concatenations elided (their inputs written in place): see elideConcats. */
    readonly concatsElided: number,
    /** Per input: the argument tuples naming its storage, and their offsets less the input's. */
    private readonly inputArgs: { arg: TArgSpec; offset: number }[][],
    private readonly inputSpecs: { shape: number[]; dtype: DType; device: Device }[],
    /** Per output storage: its size, device and the argument tuples naming it. */
    private readonly outputStorages: { bytes: number; device: Device; args: TArgSpec[] }[],
    private readonly outputViews: OutputView[],
    private readonly template: Template,
    private readonly buffers: Storage[],
    externals: number[],
  ) {
    for (const h of externals) this.unwatch.push(onStorageRelease(h, () => this.invalidate('a tensor it reads (a parameter or a module\'s cached tensor) was disposed')));
  }

  /** Kernel calls per replay. */
  get kernels(): number {
    return this.calls.length;
  }

  /** The input shapes the plan was recorded for. */
  get inputShapes(): number[][] {
    return this.inputSpecs.map((s) => s.shape.slice());
  }

  /** Bytes of the intermediate buffers the plan holds between replays. */
  get bufferBytes(): number {
    return this.buffers.reduce((a, b) => a + b.bytes, 0);
  }

  /** False once disposed, or once a storage it reads from outside was given back. */
  get isValid(): boolean {
    return this.valid;
  }

  /** True when `inputs` have the shapes, dtypes and devices the plan was recorded with. */
  accepts(inputs: Tensor[]): boolean {
    return inputs.length === this.inputSpecs.length && inputs.every((t, i) => {
      const s = this.inputSpecs[i];
      return t.dtype === s.dtype && t.device === s.device && sameShape(t.shape, s.shape);
    });
  }

  /**
   * Runs the recorded kernels on `inputs` (those accepts() takes) and returns the forward's
   * result over fresh output storages.
   */
  run(inputs: Tensor[]): unknown {
    if (!this.valid) throw new Error(`KernelPlan: this recorded forward can no longer run (${this.invalidReason})`);
    if (!this.accepts(inputs)) {
      const got = inputs.map((t) => `[${t.shape.join(', ')}] ${t.dtype} ${t.device}`).join(', ');
      const want = this.inputSpecs.map((s) => `[${s.shape.join(', ')}] ${s.dtype} ${s.device}`).join(', ');
      throw new Error(`KernelPlan: recorded for inputs ${want}, got ${got}`);
    }
    const temps: Tensor[] = [];
    const outs: Storage[] = [];
    try {
      inputs.forEach((t0, i) => {
        t0.assertAlive('KernelPlan.run');
        let t = t0;
        if (!t.isContiguous()) temps.push((t = t.contiguous()));
        const h = t.storage.nativeHandle;
        for (const a of this.inputArgs[i]) {
          a.arg[0] = h;
          a.arg[1] = a.offset + t.offset;
        }
      });
      for (const o of this.outputStorages) {
        const s = new Storage(o.device, o.bytes);
        s.retain();
        outs.push(s);
        for (const a of o.args) a[0] = s.nativeHandle;
      }
      for (const c of this.calls) native.run(c.kernel, c.backend, c.ins, c.outs, c.attrs);
      const tensors = this.outputViews.map((v) => new Tensor(outs[v.storage], v.shape.slice(), v.dtype, v.strides.slice(), v.offset));
      return build(this.template, tensors);
    } finally {
      for (const s of outs) s.release(); // the result tensors hold their own references
      for (const t of temps) t.dispose();
    }
  }

  /**
   * Marks the plan unusable and gives its buffers back (an invalid plan never runs again; this
   * also frees them when its owner was dropped without dispose() and a tensor it read went).
   */
  invalidate(reason: string): void {
    if (!this.valid) return;
    this.valid = false;
    this.invalidReason = reason;
    for (const u of this.unwatch) u();
    this.unwatch.length = 0;
    for (const b of this.buffers) b.release();
    this.buffers.length = 0;
  }

  /** Gives the buffers back. Idempotent. */
  dispose(): void {
    this.invalidate('it was disposed');
  }

  /**
   * Runs fn (an inference forward over `inputs`) once, recording its kernels, and makes a plan
   * that replays them for inputs of the same shapes. fn's result is returned either way.
   */
  static capture<T>(fn: () => T, inputs: Tensor[]): CaptureResult<T> {
    const calls: KernelCall[] = [];
    const created = new Map<number, Storage>();
    let declined: string | null = null;
    const decline = (why: string) => {
      if (declined === null) declined = why;
    };
    const copyArg = (a: TArgSpec): TArgSpec => [a[0], a[1], a[2], a[3].slice(), a[4].slice()];
    const prevRecorder = setNativeRecorder({
      run(kernel, backend, ins, outs, attrs) {
        if (RANDOM_KERNELS.has(kernel)) decline(`it runs the random kernel '${kernel}'`);
        calls.push({ kernel, backend, ins: ins.map(copyArg), outs: outs.map(copyArg), attrs: { ...attrs } });
      },
      hostAccess(what) {
        decline(what === 'copyOut' || what === 'hostView'
          ? `it reads tensor values on the host (${what}), so what it runs may depend on them`
          : `it writes host data into a tensor (${what}: e.g. rand() or a tensor built from a JavaScript array)`);
      },
    });
    const freed = new Set<number>();
    const prevWatch = watchStorages({ created: (s) => created.set(s.nativeHandle, s), released: (h) => freed.add(h) });
    let result: T;
    try {
      result = fn();
    } finally {
      setNativeRecorder(prevRecorder);
      watchStorages(prevWatch);
    }
    if (prevRecorder) decline('another recording was in progress');
    if (calls.length === 0) decline('it ran no kernel');
    const plan = declined === null ? KernelPlan.make(calls, created, freed, inputs, result, decline) : null;
    return { result, plan, declined: plan ? null : declined };
  }

  private static make(recorded: KernelCall[], created: Map<number, Storage>, freed: Set<number>, inputs: Tensor[], result: unknown, decline: (why: string) => void): KernelPlan | null {
    let calls = recorded;
    const inputHandles = new Map<number, number>();
    for (let i = 0; i < inputs.length; i++) {
      const h = inputs[i].storage.nativeHandle;
      if (!inputs[i].isContiguous()) return decline(`input ${i} is not contiguous`), null;
      if (inputHandles.has(h)) return decline(`inputs ${inputHandles.get(h)} and ${i} share their memory`), null;
      inputHandles.set(h, i);
    }
    const tensors: Tensor[] = [];
    const template = templateOf(result, tensors);
    if (!template) return decline('it returns a value other than tensors in arrays and plain objects (a replay could not rebuild it)'), null;
    const outputIndex = new Map<number, number>();
    const outputViews: OutputView[] = [];
    for (const t of tensors) {
      const h = t.storage.nativeHandle;
      if (!created.has(h)) return decline('it returns a tensor it did not compute (a parameter, a cached tensor or the input)'), null;
      if (!outputIndex.has(h)) outputIndex.set(h, outputIndex.size);
      outputViews.push({ storage: outputIndex.get(h)!, shape: t.shape.slice(), strides: t.strides.slice(), offset: t.offset, dtype: t.dtype });
    }

    calls = elideConcats(calls, created, (h) => outputIndex.has(h) || inputHandles.has(h));

    // Every argument tuple, by the storage it names, and each created storage's live range.
    const argsOf = new Map<number, TArgSpec[]>();
    const first = new Map<number, number>(), last = new Map<number, number>();
    calls.forEach((c, i) => {
      for (const a of [...c.ins, ...c.outs]) {
        if (!first.has(a[0])) first.set(a[0], i);
        last.set(a[0], i);
        pushTo(argsOf, a[0], a);
      }
    });
    // Storages from before the forward (parameters, folded weights, caches): read in place, so
    // they must outlive the forward; the plan is told when they go.
    const externals = [...argsOf.keys()].filter((h) => !inputHandles.has(h) && !created.has(h));
    if (externals.some((h) => freed.has(h))) return decline('it reads a tensor from before the forward that the forward freed'), null;

    const inputArgs = inputs.map((t) => (argsOf.get(t.storage.nativeHandle) ?? []).map((arg) => ({ arg, offset: arg[1] - t.offset })));
    const outputStorages: { bytes: number; device: Device; args: TArgSpec[] }[] = [];
    for (const [h] of outputIndex) {
      const s = created.get(h)!;
      outputStorages.push({ bytes: s.bytes, device: s.device, args: argsOf.get(h) ?? [] });
    }

    // Intermediates onto shared buffers: walk the calls in order, give back the buffers of the
    // storages whose last kernel has run, and give each storage first named here the smallest
    // free buffer that holds it (or a new one).
    const buffers: Storage[] = [];
    const free: Storage[] = [];
    const byFirst = new Map<number, number[]>(), byLast = new Map<number, number[]>();
    for (const h of argsOf.keys()) {
      if (!created.has(h) || outputIndex.has(h)) continue;
      pushTo(byFirst, first.get(h)!, h);
      pushTo(byLast, last.get(h)!, h);
    }
    const bufferOf = new Map<number, Storage>();
    for (let i = 0; i < calls.length; i++) {
      for (const h of byLast.get(i - 1) ?? []) free.push(bufferOf.get(h)!);
      for (const h of byFirst.get(i) ?? []) {
        const s = created.get(h)!;
        let best = -1;
        for (let j = 0; j < free.length; j++) {
          if (free[j].device === s.device && free[j].bytes >= s.bytes && (best < 0 || free[j].bytes < free[best].bytes)) best = j;
        }
        let buf: Storage;
        if (best >= 0) buf = free.splice(best, 1)[0];
        else {
          buf = new Storage(s.device, s.bytes);
          buf.retain();
          buffers.push(buf);
        }
        bufferOf.set(h, buf);
        for (const a of argsOf.get(h)!) a[0] = buf.nativeHandle;
      }
    }
    const inputSpecs = inputs.map((t) => ({ shape: t.shape.slice(), dtype: t.dtype, device: t.device }));
    return new KernelPlan(calls, recorded.length - calls.length, inputArgs, inputSpecs, outputStorages, outputViews, template, buffers, externals);
  }
}
