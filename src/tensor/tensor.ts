// The Tensor: a strided view (shape, strides, offset in elements) over a refcounted Storage on
// one device. Arithmetic and other methods are attached in methods.ts from the op table.
import { native, TArgSpec } from '../native';
import { Device, DEVICE_IDS } from './device';
import { DType, DTYPES, TypedArray } from './dtype';
import { contiguousStrides, isContiguousLayout, numel, shapeStr } from './shape';
import { Storage, storageFinalizer, trackTensor } from './storage';
import { tidyWith, trackInScope } from './scope';
import type { OpDef } from './op';

/** A recorded application of an op, kept by its outputs until backward() frees it. */
export interface GradNode {
  op: OpDef;
  inputs: Tensor[];
  outputs: Tensor[];
  attrs: Record<string, unknown>;
  /** Extra tensors or values the op's forward chose to keep for its backward. */
  saved: Record<string, unknown>;
  released: boolean;
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: number[];
  readonly strides: number[];
  readonly offset: number;
  readonly dtype: DType;
  /** @internal */
  storage: Storage;
  requiresGrad = false;
  grad: Tensor | null = null;
  /** @internal the node that produced this tensor (null for leaves). */
  gradFn: GradNode | null = null;
  /** @internal which output of gradFn this tensor is. */
  outputIndex = 0;
  private disposedFlag = false;
  private dataReleased = false;
  private disposedReason: string | null = null;

  /** @internal use the creation functions (sc.tensor, sc.zeros, ...) instead. */
  constructor(storage: Storage, shape: number[], dtype: DType, strides?: number[], offset = 0) {
    this.storage = storage;
    this.shape = shape;
    this.dtype = dtype;
    this.strides = strides ?? contiguousStrides(shape);
    this.offset = offset;
    storage.retain();
    trackTensor(1);
    storageFinalizer.register(this, storage, this);
    trackInScope(this);
  }

  /** @internal the id the next tensor will get (ids only increase). */
  static nextTensorId(): number {
    return nextId;
  }

  /** Allocates an uninitialised contiguous tensor. */
  static empty(shape: number[], dtype: DType, device: Device): Tensor {
    const s = new Storage(device, Math.max(1, numel(shape)) * DTYPES[dtype].bytes);
    return new Tensor(s, shape, dtype);
  }

  get device(): Device {
    return this.storage.device;
  }

  /**
   * @internal Moves this tensor onto `storage` (contiguous, this shape; of `dtype`, this tensor's
   * own unless given) and gives the old storage back. Used by Module.to(device | dtype), so that
   * references to parameters stay valid.
   */
  replaceStorage(storage: Storage, dtype: DType = this.dtype): void {
    this.assertAlive('replaceStorage');
    const old = this.storage;
    storage.retain();
    storageFinalizer.unregister(this);
    this.storage = storage;
    (this as { dtype: DType }).dtype = dtype;
    (this as { strides: number[] }).strides = contiguousStrides(this.shape);
    (this as { offset: number }).offset = 0;
    storageFinalizer.register(this, storage, this);
    old.release();
  }

  get ndim(): number {
    return this.shape.length;
  }
  get size(): number {
    return numel(this.shape);
  }
  /** @internal true once releaseData() freed the values (the tensor is still a graph node). */
  get valuesReleased(): boolean {
    return this.dataReleased;
  }

  get isDisposed(): boolean {
    return this.disposedFlag;
  }
  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  isContiguous(): boolean {
    return isContiguousLayout(this.shape, this.strides);
  }

  /** @internal dispose(), remembering why (named by the use-after-dispose error). */
  disposeAs(reason: string): void {
    if (this.disposedFlag) return;
    this.disposedReason = reason;
    this.dispose();
  }

  /**
   * @internal Gives the values' memory back now while the tensor stays a node of the autograd
   * graph (shape, gradFn and requiresGrad remain): for a training intermediate that no backward
   * reads and no later forward code uses, such as the upsampled half of a decoder's concatenation
   * (cat and pad differentiate without their inputs' values). PyTorch frees such tensors when
   * their last Python reference goes; here the model says so. Any later read throws, naming
   * `reason`; dispose() afterwards completes the disposal.
   */
  releaseData(reason: string): void {
    if (this.disposedFlag || this.dataReleased) return;
    this.dataReleased = true;
    this.disposedReason = reason;
    storageFinalizer.unregister(this);
    this.storage.release();
  }

  /** Gives the tensor's memory reference back now. Idempotent. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    trackTensor(-1);
    if (!this.dataReleased) {
      storageFinalizer.unregister(this);
      this.storage.release();
    }
    this.gradFn = null;
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }

  /** @internal throws when the tensor was disposed. */
  assertAlive(where: string): void {
    if (this.dataReleased && !this.disposedFlag) throw new Error(`${where}: tensor ${shapeStr(this.shape)} ${this.dtype} was used after its values were released (${this.disposedReason})`);
    if (this.disposedFlag) throw new Error(`${where}: tensor ${shapeStr(this.shape)} ${this.dtype} was used after dispose()${this.disposedReason ? ` (${this.disposedReason})` : ''}`);
  }

  /** @internal the argument tuple the native run() takes. */
  nativeArg(): TArgSpec {
    return [this.storage.nativeHandle, this.offset, DTYPES[this.dtype].id, this.shape, this.strides];
  }

  /** A row-major typed-array copy of the values (synchronises with the device). */
  toArray(): TypedArray {
    this.assertAlive('toArray');
    const src = this.isContiguous() ? this : contiguousCopy(this);
    const bytes = DTYPES[this.dtype].bytes;
    const ab = native.copyOut(src.storage.nativeHandle, src.offset * bytes, this.size * bytes);
    if (src !== this) src.dispose();
    return new DTYPES[this.dtype].array(ab);
  }

  /** Nested JavaScript arrays of the values. */
  tolist(): unknown {
    const data = Array.from(this.toArray() as ArrayLike<number>, Number);
    const build = (dim: number, off: number): unknown => {
      if (dim === this.ndim) return data[off];
      const stride = numel(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim] }, (_, i) => build(dim + 1, off + i * stride));
    };
    return build(0, 0);
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item: tensor has ${this.size} elements (shape ${shapeStr(this.shape)}), expected exactly 1`);
    return Number(this.toArray()[0]);
  }

  toString(): string {
    const head = `Tensor(shape=${shapeStr(this.shape)}, dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''}`;
    if (this.disposedFlag) return head + ', disposed)';
    if (this.dataReleased) return head + ', values released)';
    const vals = Array.from(this.toArray() as ArrayLike<number>, Number);
    const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toPrecision(4));
    const shown = vals.length <= 12 ? vals.map(fmt).join(', ') : `${vals.slice(0, 6).map(fmt).join(', ')}, ..., ${vals.slice(-3).map(fmt).join(', ')}`;
    return `${head},\n  [${shown}])`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

/** Strided copy into a fresh contiguous tensor of the same dtype (no autograd). */
export function contiguousCopy(t: Tensor, dtype: DType = t.dtype): Tensor {
  const out = Tensor.empty(t.shape.slice(), dtype, t.device);
  if (t.size > 0) native.run('copy', DEVICE_IDS[t.device], [t.nativeArg()], [out.nativeArg()], {});
  return out;
}

export function isTensor(x: unknown): x is Tensor {
  return x instanceof Tensor;
}

/**
 * Runs fn and disposes every tensor created inside it, except those in its result and those
 * passed to keep(). Returns fn's result.
 */
export function tidy<T>(fn: () => T): T {
  return tidyWith(fn, isTensor);
}
