// sc.onnx.export(model, shape, file): traces one eval-mode, noGrad forward at a fixed input shape
// and writes it as an ONNX model. Every recorded op becomes one or more standard ONNX nodes;
// parameters and buffers become initializers named by their state-dict names, and any other
// tensor the forward reads without computing it from the input (constants, a shape-dependent
// decay mask) becomes an initializer too. The graph is exact for the traced shape only: shapes
// (reshape targets, Resize sizes, MaSA's decay mask) are baked in.
import { noGrad } from '../autograd/engine';
import { writeFileAtomic } from '../io/atomic';
import { Module, currentModulePath, trackModules } from '../nn/module';
import { release } from '../nn/inference';
import { randn } from '../tensor/create';
import { observeOps } from '../tensor/op';
import { Tensor, tidy } from '../tensor/tensor';
import { ATTR, DATA_TYPE, encodeModel } from './proto';

export interface ExportOptions {
  /** ONNX opset (13..21, default 17). */
  opset?: number;
  inputName?: string;
  outputName?: string;
  /** Stored in the model's doc string. */
  docString?: string;
}

export interface ExportResult {
  file: string;
  bytes: number;
  nodes: number;
  initializers: string[];
  inputShape: number[];
  outputShapes: number[][];
}

interface OpRecord { op: string; inputs: Tensor[]; outputs: Tensor[]; attrs: Record<string, any>; path: string }
type Attr = number | number[] | string | { floats: number[] } | { float: number };

function tensorsIn(v: unknown, out: Tensor[] = []): Tensor[] {
  if (v instanceof Tensor) out.push(v);
  else if (Array.isArray(v)) v.forEach((e) => tensorsIn(e, out));
  else if (v && typeof v === 'object') Object.values(v).forEach((e) => tensorsIn(e, out));
  return out;
}

function attribute(name: string, v: Attr): Record<string, unknown> {
  if (typeof v === 'string') return { name, type: ATTR.STRING, s: Buffer.from(v) };
  if (Array.isArray(v)) return { name, type: ATTR.INTS, ints: v };
  if (typeof v === 'number') return { name, type: ATTR.INT, i: v };
  if ('floats' in v) return { name, type: ATTR.FLOATS, floats: v.floats };
  return { name, type: ATTR.FLOAT, f: v.float };
}

function tensorProto(name: string, dtype: string, dims: number[], data: ArrayBufferView): Record<string, unknown> {
  const dataType = (DATA_TYPE as Record<string, number>)[dtype];
  if (!dataType) throw new Error(`sc.onnx.export: tensor '${name}' has dtype ${dtype}, which has no ONNX mapping here`);
  return { name, dataType, dims, rawData: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
}

/** Builds the ONNX graph from the recorded ops. */
class GraphBuilder {
  readonly nodes: Record<string, unknown>[] = [];
  readonly initializers: Record<string, unknown>[] = [];
  private readonly names = new Map<Tensor, string>();
  private readonly used = new Set<string>();
  private counter = 0;

  constructor(private readonly stateNames: Map<Tensor, string>) {}

  unique(base: string): string {
    let n = base, i = 1;
    while (this.used.has(n)) n = `${base}_${i++}`;
    this.used.add(n);
    return n;
  }

  bind(t: Tensor, name: string): void {
    this.names.set(t, name);
  }

  has(t: Tensor): boolean {
    return this.names.has(t);
  }

  /** The value name of a tensor: a computed value, or an initializer made on first use. */
  name(t: Tensor): string {
    const known = this.names.get(t);
    if (known) return known;
    const name = this.unique(this.stateNames.get(t) ?? `const_${this.counter++}`);
    this.initializers.push(tensorProto(name, t.dtype, t.shape, t.toArray()));
    this.names.set(t, name);
    return name;
  }

  constFloat(values: ArrayLike<number>, dims: number[], dtype = 'float32'): string {
    const name = this.unique(`const_${this.counter++}`);
    const data = dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values);
    this.initializers.push(tensorProto(name, dtype, dims, data));
    return name;
  }

  constInt64(values: number[]): string {
    const name = this.unique(`const_${this.counter++}`);
    this.initializers.push(tensorProto(name, 'int64', [values.length], BigInt64Array.from(values.map(BigInt))));
    return name;
  }

  /** Adds a node; returns its output names (fresh ones unless given). */
  node(opType: string, path: string, inputs: string[], attrs: Record<string, Attr> = {}, outputs?: string[]): string[] {
    const base = `${path || 'model'}/${opType}`;
    const name = this.unique(base);
    const outs = outputs ?? [this.unique(`${name}:0`)];
    this.nodes.push({ name, opType, input: inputs, output: outs, attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) });
    return outs;
  }
}

/** A protobuf message (the whole ModelProto) cannot exceed 2 GiB. */
const MAX_MODEL_BYTES = 2 ** 31 - 2 ** 20;
const MAX_CONSTANT_BYTES = 2 ** 30;

const UNARY: Record<string, string> = {
  relu: 'Relu', sigmoid: 'Sigmoid', tanh: 'Tanh', exp: 'Exp', log: 'Log', sqrt: 'Sqrt', abs: 'Abs', neg: 'Neg',
  reciprocal: 'Reciprocal', sin: 'Sin', cos: 'Cos', sign: 'Sign',
};
const BINARY: Record<string, string> = { add: 'Add', sub: 'Sub', mul: 'Mul', div: 'Div', pow: 'Pow', maximum: 'Max', minimum: 'Min' };

/** The 1-D decay gamma^|i-j| (height 1) or the 2-D gamma^(Manhattan distance) on a height x width grid, [L, L]. */
function decayMask(gamma: number, height: number, width: number): Float32Array {
  const L = height * width;
  const m = new Float32Array(L * L);
  for (let n = 0; n < L; n++) {
    const rn = Math.floor(n / width), cn = n % width;
    for (let k = 0; k < L; k++) m[n * L + k] = Math.pow(gamma, Math.abs(rn - Math.floor(k / width)) + Math.abs(cn - (k % width)));
  }
  return m;
}

function emit(g: GraphBuilder, r: OpRecord, opset: number): void {
  const a = r.attrs;
  const x = () => g.name(r.inputs[0]);
  const out = (names: string[]) => names.forEach((n, i) => g.bind(r.outputs[i], n));
  const where = () => `'${r.op}'${a.op ? ` (${a.op})` : ''} in module '${r.path || '<root>'}'`;
  const unsupported = (why = 'has no ONNX mapping'): never => {
    throw new Error(`sc.onnx.export: op ${where()} ${why}`);
  };
  const pads4 = (p: number[]) => [p[0], p[1], p[0], p[1]];
  switch (r.op) {
    case 'conv2d':
    case 'conv_transpose2d': {
      const w = r.inputs[1];
      const attrs: Record<string, Attr> = {
        kernel_shape: w.shape.slice(2), strides: a.stride, pads: pads4(a.padding), dilations: a.dilation, group: a.groups,
      };
      if (r.op === 'conv_transpose2d') attrs.output_padding = a.outputPadding;
      out(g.node(r.op === 'conv2d' ? 'Conv' : 'ConvTranspose', r.path, r.inputs.map((t) => g.name(t)), attrs));
      return;
    }
    case 'batch_norm': {
      if (a.training || !a.hasRunning) unsupported('uses batch statistics (training mode or no running stats); only eval-mode batch norm exports');
      const C = r.inputs[0].shape[1];
      let i = 1;
      const scale = a.hasWeight ? g.name(r.inputs[i++]) : g.constFloat(new Array(C).fill(1), [C], r.inputs[0].dtype);
      const bias = a.hasBias ? g.name(r.inputs[i++]) : g.constFloat(new Array(C).fill(0), [C], r.inputs[0].dtype);
      out(g.node('BatchNormalization', r.path, [x(), scale, bias, g.name(r.inputs[i]), g.name(r.inputs[i + 1])], { epsilon: { float: a.eps } }));
      return;
    }
    case 'layer_norm': {
      if (opset < 17) unsupported('needs opset >= 17 (LayerNormalization)');
      const ns = a.normalizedShape as number[];
      const dims = ns, dtype = r.inputs[0].dtype, n = ns.reduce((p, q) => p * q, 1);
      let i = 1;
      const scale = a.hasWeight ? g.name(r.inputs[i++]) : g.constFloat(new Array(n).fill(1), dims, dtype);
      const ins = [x(), scale];
      if (a.hasBias) ins.push(g.name(r.inputs[i]));
      out(g.node('LayerNormalization', r.path, ins, { axis: -ns.length, epsilon: { float: a.eps } }));
      return;
    }
    case 'group_norm': {
      // LayerNormalization over [N, groups, C / groups * spatial], back to x's shape, then the
      // per-channel affine (what scalpel's op computes).
      if (opset < 17) unsupported('needs opset >= 17 (LayerNormalization)');
      const xs = r.inputs[0].shape, dtype = r.inputs[0].dtype;
      const per = xs.slice(1).reduce((p, q) => p * q, 1) / a.groups;
      const [rows] = g.node('Reshape', r.path, [x(), g.constInt64([xs[0], a.groups, per])]);
      const [ln] = g.node('LayerNormalization', r.path, [rows, g.constFloat(new Array(per).fill(1), [per], dtype)], { axis: -1, epsilon: { float: a.eps } });
      let [y] = g.node('Reshape', r.path, [ln, g.constInt64(xs)]);
      const cs = [xs[1], ...xs.slice(2).map(() => 1)];
      let i = 1;
      if (a.hasWeight) [y] = g.node('Mul', r.path, [y, g.node('Reshape', r.path, [g.name(r.inputs[i++]), g.constInt64(cs)])[0]]);
      if (a.hasBias) [y] = g.node('Add', r.path, [y, g.node('Reshape', r.path, [g.name(r.inputs[i]), g.constInt64(cs)])[0]]);
      return out([y]);
    }
    case 'unary': {
      const dtype = r.inputs[0].dtype;
      const c = (v: number) => g.constFloat([v], [], dtype);
      if (a.op in UNARY) return out(g.node(UNARY[a.op], r.path, [x()]));
      if (a.op === 'gelu') {
        // Exact (erf) GELU, as scalpel's kernel: x * 0.5 * (1 + erf(x / sqrt 2)).
        const [e] = g.node('Erf', r.path, [g.node('Div', r.path, [x(), c(Math.SQRT2)])[0]]);
        const [half] = g.node('Mul', r.path, [x(), c(0.5)]);
        return out(g.node('Mul', r.path, [half, g.node('Add', r.path, [e, c(1)])[0]]));
      }
      if (a.op === 'square') return out(g.node('Mul', r.path, [x(), x()]));
      if (a.op === 'affine') return out(g.node('Add', r.path, [g.node('Mul', r.path, [x(), c(a.a ?? 1)])[0], c(a.b ?? 0)]));
      if (a.op === 'pow') return out(g.node('Pow', r.path, [x(), c(a.exponent)]));
      if (a.op === 'clamp') return out(g.node('Clip', r.path, [x(), a.min !== undefined ? c(a.min) : '', a.max !== undefined ? c(a.max) : '']));
      return unsupported();
    }
    case 'binary':
      if (!(a.op in BINARY)) return unsupported();
      return out(g.node(BINARY[a.op], r.path, [x(), g.name(r.inputs[1])]));
    case 'cast': {
      const to = (DATA_TYPE as Record<string, number>)[a.dtype];
      if (!to) unsupported(`casts to ${a.dtype}, which has no ONNX mapping here`);
      return out(g.node('Cast', r.path, [x()], { to }));
    }
    case 'cat':
      return out(g.node('Concat', r.path, r.inputs.map((t) => g.name(t)), { axis: a.dim }));
    case 'max_pool2d':
      return out(g.node('MaxPool', r.path, [x()], { kernel_shape: a.kernelSize, strides: a.stride, pads: pads4(a.padding) }));
    case 'avg_pool2d':
      return out(g.node('AveragePool', r.path, [x()], { kernel_shape: a.kernelSize, strides: a.stride, pads: pads4(a.padding), count_include_pad: a.countIncludePad === false ? 0 : 1 }));
    case 'adaptive_avg_pool2d':
      if ((a.outputSize as number[]).some((s) => s !== 1)) unsupported(`with output size ${a.outputSize} (only 1x1, GlobalAveragePool, is mapped)`);
      return out(g.node('GlobalAveragePool', r.path, [x()]));
    case 'interpolate': {
      const [N, C] = r.inputs[0].shape;
      const attrs: Record<string, Attr> = a.mode === 'bilinear'
        ? { mode: 'linear', coordinate_transformation_mode: a.alignCorners ? 'align_corners' : 'half_pixel' }
        : { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' };
      // Scale factors, when given, map coordinates (as PyTorch and scalpel do); otherwise the sizes.
      const useScales = !a.alignCorners && (a.scales as number[]).every((s) => s > 0);
      const ins = useScales
        ? [x(), '', g.constFloat([1, 1, ...a.scales], [4])]
        : [x(), '', '', g.constInt64([N, C, ...a.size])];
      return out(g.node('Resize', r.path, ins, attrs));
    }
    case 'softmax': {
      const [s] = g.node(a.log ? 'LogSoftmax' : 'Softmax', r.path, [x()], { axis: a.dim });
      return out([s]);
    }
    case 'reshape':
      return out(g.node('Reshape', r.path, [x(), g.constInt64(r.outputs[0].shape)]));
    case 'expand':
      return out(g.node('Expand', r.path, [x(), g.constInt64(r.outputs[0].shape)]));
    case 'permute':
      return out(g.node('Transpose', r.path, [x()], { perm: a.dims }));
    case 'contiguous':
    case 'to_device':
    case 'dropout':
      // Eval-mode dropout never runs (the op is not applied), a copy is the identity.
      return out(g.node('Identity', r.path, [x()]));
    case 'narrow':
      return out(g.node('Slice', r.path, [x(), g.constInt64([a.start]), g.constInt64([a.start + a.length]), g.constInt64([a.dim])]));
    case 'pad': {
      const mode = ({ constant: 'constant', reflect: 'reflect', replicate: 'edge' } as Record<string, string>)[a.mode];
      if (!mode) unsupported(`in mode '${a.mode}'`);
      const ins = [x(), g.constInt64([...a.before, ...a.after])];
      if (mode === 'constant') ins.push(g.constFloat([a.value], [], r.inputs[0].dtype));
      return out(g.node('Pad', r.path, ins, { mode }));
    }
    case 'bmm': {
      const tr = (n: string) => g.node('Transpose', r.path, [n], { perm: [0, 2, 1] })[0];
      const A = a.transA ? tr(x()) : x();
      const B = a.transB ? tr(g.name(r.inputs[1])) : g.name(r.inputs[1]);
      return out(g.node('MatMul', r.path, [A, B]));
    }
    case 'tpen': {
      // Channel block k-1 holds coeffs[k-1, c] * x^k.
      const [N, C, H, W] = r.inputs[0].shape;
      void N; void H; void W;
      const coeffs = g.name(r.inputs[1]);
      const order = r.inputs[1].shape[0];
      const blocks: string[] = [];
      let power = x();
      for (let k = 1; k <= order; k++) {
        if (k > 1) [power] = g.node('Mul', r.path, [power, x()]);
        const [row] = g.node('Slice', r.path, [coeffs, g.constInt64([k - 1]), g.constInt64([k]), g.constInt64([0])]);
        const [c4] = g.node('Reshape', r.path, [row, g.constInt64([1, C, 1, 1])]);
        blocks.push(g.node('Mul', r.path, [power, c4])[0]);
      }
      return out(g.node('Concat', r.path, blocks, { axis: 1 }));
    }
    case 'scaled_dot_product_attention': {
      // softmax(q k^T * scale) v with 4-D [B, H, L, D] operands (MatMul broadcasts over B, H).
      const [q, k, v] = r.inputs;
      const [kt] = g.node('Transpose', r.path, [g.name(k)], { perm: [0, 1, 3, 2] });
      const [s] = g.node('MatMul', r.path, [g.name(q), kt]);
      const [ss] = g.node('Mul', r.path, [s, g.constFloat([a.scale], [], q.dtype)]);
      const [p] = g.node('Softmax', r.path, [ss], { axis: -1 });
      return out(g.node('MatMul', r.path, [p, g.name(v)]));
    }
    case 'decay_attention': {
      // softmax(q k^T / sqrt(D)) * decay mask (constant at the traced shape), then times v.
      const [q, k, v] = r.inputs;
      const D = q.shape[2];
      const [kt] = g.node('Transpose', r.path, [g.name(k)], { perm: [0, 2, 1] });
      const [s] = g.node('MatMul', r.path, [g.name(q), kt]);
      const [sc] = g.node('Mul', r.path, [s, g.constFloat([1 / Math.sqrt(D)], [], q.dtype)]);
      const [p] = g.node('Softmax', r.path, [sc], { axis: -1 });
      const L = a.height * a.width;
      if (L * L * 4 > MAX_CONSTANT_BYTES) unsupported(`needs a ${L}x${L} decay mask at this shape (${(L * L * 4 / 2 ** 30).toFixed(1)} GiB, over the ${MAX_CONSTANT_BYTES / 2 ** 30} GiB a constant may take); export at a smaller size or use the decomposed MaSA`);
      const mask = g.constFloat(decayMask(a.gamma, a.height, a.width), [L, L], q.dtype);
      const [pm] = g.node('Mul', r.path, [p, mask]);
      return out(g.node('MatMul', r.path, [pm, g.name(v)]));
    }
    default:
      return unsupported();
  }
}

function checkShape(shape: unknown): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new Error(`sc.onnx.export: the input shape must be an array of positive integers [N, C, H, W], got ${JSON.stringify(shape)}`);
  }
  if (shape.length !== 4) throw new Error(`sc.onnx.export: the input shape must have 4 dimensions [N, C, H, W], got ${shape.length} (${JSON.stringify(shape)})`);
  return shape;
}

/** Builds the ONNX ModelProto bytes of the model's forward at one input shape (see the top of this file). */
export function toOnnx(model: Module, inputShape: number[], opts: ExportOptions = {}): { bytes: Uint8Array; result: Omit<ExportResult, 'file' | 'bytes'> } {
  if (!(model instanceof Module)) throw new Error('sc.onnx.export: expected a Module');
  const shape = checkShape(inputShape);
  const opset = opts.opset ?? 17;
  if (!Number.isInteger(opset) || opset < 13 || opset > 21) throw new Error(`sc.onnx.export: opset must be an integer 13..21, got ${opts.opset}`);
  const inputName = opts.inputName ?? 'input', outputName = opts.outputName ?? 'output';
  // A fused inference plan runs ops ONNX does not have; the plain forward is traced instead.
  release(model);
  const wasTraining = model.training;
  model.eval();
  const stateNames = new Map<Tensor, string>();
  for (const [n, t] of [...model.namedParameters(), ...model.namedBuffers()]) if (!stateNames.has(t)) stateNames.set(t, n);
  const dtype = model.parameters()[0]?.dtype ?? 'float32';
  const device = model.parameters()[0]?.device ?? 'cpu';
  try {
    return tidy(() => noGrad(() => {
      const g = new GraphBuilder(stateNames);
      const records: OpRecord[] = [];
      const x = randn(shape, { dtype, device });
      const stop = observeOps((op, inputs, outputs, attrs, nested) => {
        if (!nested) records.push({ op: op.name, inputs, outputs, attrs: attrs as Record<string, any>, path: currentModulePath() });
      });
      let outputs: Tensor[];
      try {
        outputs = tensorsIn(trackModules(() => model.forward(x)));
      } catch (e) {
        throw new Error(`sc.onnx.export: the model's forward failed at input shape ${JSON.stringify(shape)}: ${(e as Error).message}`);
      } finally {
        stop();
      }
      if (outputs.length === 0) throw new Error('sc.onnx.export: the forward returned no tensor');
      g.unique(inputName);
      g.bind(x, inputName);
      for (const r of records) {
        // Ops that read neither the input nor a parameter (a fill, arithmetic on it) are folded:
        // their results become constant initializers where something reads them.
        if (r.inputs.every((t) => !g.has(t) && !stateNames.has(t))) continue;
        emit(g, r, opset);
      }
      const outNames = outputs.map((t, i) => (outputs.length === 1 ? outputName : `${outputName}_${i}`));
      outputs.forEach((t, i) => {
        const name = g.unique(outNames[i]);
        g.node('Identity', 'output', [g.name(t)], {}, [name]);
      });
      const valueInfo = (name: string, t: Tensor) => ({
        name, type: { tensorType: { elemType: (DATA_TYPE as Record<string, number>)[t.dtype], shape: { dim: t.shape.map((d) => ({ dimValue: d })) } } },
      });
      const total = g.initializers.reduce((n, t) => n + (t.rawData as Buffer).length, 0);
      if (total > MAX_MODEL_BYTES) throw new Error(`sc.onnx.export: the initializers take ${(total / 2 ** 30).toFixed(2)} GiB, over the 2 GiB an ONNX file (one protobuf message) can hold`);
      const bytes = encodeModel({
        irVersion: 8,
        producerName: 'scalpel',
        producerVersion: '0.1',
        docString: opts.docString ?? '',
        opsetImport: [{ domain: '', version: opset }],
        graph: {
          name: model.constructor.name,
          node: g.nodes,
          initializer: g.initializers,
          input: [valueInfo(inputName, x)],
          output: outputs.map((t, i) => valueInfo(outNames[i], t)),
        },
      });
      return {
        bytes,
        result: { nodes: g.nodes.length, initializers: g.initializers.map((t) => t.name as string), inputShape: shape.slice(), outputShapes: outputs.map((t) => t.shape.slice()) },
      };
    }));
  } finally {
    if (wasTraining) model.train();
  }
}

/**
 * Writes the model's forward at `inputShape` as an ONNX file (atomically); see the top of this
 * file. The model is traced in eval mode (its training flag is restored after) and a fused plan
 * of sc.inference.optimize() is released first, since its fused op has no ONNX form.
 */
export function exportModel(model: Module, inputShape: number[], file: string, opts: ExportOptions = {}): ExportResult {
  if (typeof file !== 'string' || file === '') throw new Error(`sc.onnx.export: expected an output file path, got ${JSON.stringify(file)}`);
  const { bytes, result } = toOnnx(model, inputShape, opts);
  writeFileAtomic(file, bytes);
  return { file, bytes: bytes.length, ...result };
}
