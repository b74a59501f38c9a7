// Elementwise ops: unary math and activations, binary arithmetic with broadcasting,
// comparisons, where, casts. Scalars become kernel attributes (no scalar tensors allocated).
import { native } from '../../native';
import { DEVICE_IDS } from '../device';
import { DType, isFloat } from '../dtype';
import { Attrs, BackwardCtx, apply1, applyInto, defineOp } from '../op';
import { setGradEnabled } from '../grad-mode';
import { broadcastShapes, shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { sumTo } from './reduce';

function requireFloat(name: string, t: Tensor): void {
  if (!isFloat(t.dtype)) throw new Error(`${name}: expected a float32 or float64 tensor, got ${t.dtype}`);
}

// ---- unary --------------------------------------------------------------------------------

type UnaryAttrs = { op: string; min?: number; max?: number; a?: number; b?: number; exponent?: number };

const unaryGrad: Record<string, (ctx: BackwardCtx<UnaryAttrs>, g: Tensor) => Tensor> = {
  neg: (_c, g) => affine(g, -1, 0),
  exp: (c, g) => mul(g, c.outputs[0]),
  log: (c, g) => div(g, c.inputs[0]),
  sqrt: (c, g) => div(g, affine(c.outputs[0], 2, 0)),
  abs: (c, g) => mul(g, unary('sign', c.inputs[0])),
  relu: (c, g) => binary('relu_grad', g, c.inputs[0]),
  gelu: (c, g) => binary('gelu_grad', g, c.inputs[0]),
  sigmoid: (c, g) => binary('sigmoid_grad', g, c.outputs[0]),
  tanh: (c, g) => binary('tanh_grad', g, c.outputs[0]),
  square: (c, g) => mul(g, affine(c.inputs[0], 2, 0)),
  reciprocal: (c, g) => mul(g, affine(square(c.outputs[0]), -1, 0)),
  sin: (c, g) => mul(g, unary('cos', c.inputs[0])),
  cos: (c, g) => mul(g, affine(unary('sin', c.inputs[0]), -1, 0)),
  sign: (_c, g) => affine(g, 0, 0),
  affine: (c, g) => affine(g, c.attrs.a ?? 1, 0),
  clamp: (c, g) => {
    const x = c.inputs[0];
    const lo = c.attrs.min ?? -Infinity, hi = c.attrs.max ?? Infinity;
    const inside = mul(cast(gtScalar(x, lo), g.dtype), cast(ltScalar(x, hi), g.dtype));
    return mul(g, inside);
  },
  pow: (c, g) => {
    const p = c.attrs.exponent!;
    return mul(g, affine(unary('pow', c.inputs[0], { exponent: p - 1 }), p, 0));
  },
};

export const unaryOp = defineOp<UnaryAttrs>({
  name: 'unary',
  inputLayout: 'strided',
  infer([x], attrs) {
    requireFloat(attrs.op, x);
    if (!(attrs.op in unaryGrad)) throw new Error(`unary: unknown op '${attrs.op}'`);
    return [{ shape: x.shape.slice(), dtype: x.dtype }];
  },
  backward(ctx, [g]) {
    return [g ? unaryGrad[ctx.attrs.op](ctx, g) : null];
  },
});

export function unary(op: string, x: Tensor, extra: Attrs = {}): Tensor {
  return apply1(unaryOp, [x], { op, ...extra } as UnaryAttrs);
}

export const neg = (x: Tensor) => unary('neg', x);
export const exp = (x: Tensor) => unary('exp', x);
export const log = (x: Tensor) => unary('log', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const abs = (x: Tensor) => unary('abs', x);
export const relu = (x: Tensor) => unary('relu', x);
export const gelu = (x: Tensor) => unary('gelu', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const square = (x: Tensor) => unary('square', x);
export const reciprocal = (x: Tensor) => unary('reciprocal', x);
export const sin = (x: Tensor) => unary('sin', x);
export const cos = (x: Tensor) => unary('cos', x);
export const sign = (x: Tensor) => unary('sign', x);

/** y = a * x + b */
export function affine(x: Tensor, a: number, b: number): Tensor {
  return unary('affine', x, { a, b });
}

export function clamp(x: Tensor, min?: number | null, max?: number | null): Tensor {
  const attrs: Attrs = {};
  if (min !== undefined && min !== null) attrs.min = min;
  if (max !== undefined && max !== null) attrs.max = max;
  if (attrs.min !== undefined && attrs.max !== undefined && (attrs.min as number) > (attrs.max as number)) {
    throw new Error(`clamp: min (${min}) is greater than max (${max})`);
  }
  return unary('clamp', x, attrs);
}

// ---- binary -------------------------------------------------------------------------------

type BinaryAttrs = { op: string };
const COMPARISONS = new Set(['eq', 'ne', 'lt', 'le', 'gt', 'ge']);
const GRAD_HELPERS = new Set(['relu_grad', 'gelu_grad', 'sigmoid_grad', 'tanh_grad']);

export const binaryOp = defineOp<BinaryAttrs>({
  name: 'binary',
  inputLayout: 'broadcast',
  infer([a, b], { op }) {
    requireFloat(op, a);
    if (a.dtype !== b.dtype) throw new Error(`${op}: dtypes differ (${a.dtype} and ${b.dtype}); cast one with .to(dtype)`);
    const shape = broadcastShapes(a.shape, b.shape, op);
    return [{ shape, dtype: COMPARISONS.has(op) ? 'uint8' : a.dtype }];
  },
  backward({ inputs: [a, b], outputs: [y], attrs: { op } }, [g]) {
    if (!g || COMPARISONS.has(op) || GRAD_HELPERS.has(op)) return [null, null];
    switch (op) {
      case 'add': return [sumTo(g, a.shape), sumTo(g, b.shape)];
      case 'sub': return [sumTo(g, a.shape), sumTo(neg(g), b.shape)];
      case 'mul': return [sumTo(mul(g, b), a.shape), sumTo(mul(g, a), b.shape)];
      case 'div': {
        const ga = div(g, b);
        return [sumTo(ga, a.shape), sumTo(neg(mul(ga, y)), b.shape)];
      }
      case 'pow': {
        // d/da a^b = b a^(b-1) = b y / a;  d/db a^b = y ln a
        const ga = mul(g, mul(b, pow(a, affine(b, 1, -1))));
        const gb = mul(g, mul(y, log(a)));
        return [sumTo(ga, a.shape), sumTo(gb, b.shape)];
      }
      case 'maximum':
      case 'minimum': {
        const pick = cast(op === 'maximum' ? ge(a, b) : le(a, b), g.dtype);
        return [sumTo(mul(g, pick), a.shape), sumTo(mul(g, affine(pick, -1, 1)), b.shape)];
      }
    }
    throw new Error(`binary: no gradient for '${op}'`);
  },
});

export function binary(op: string, a: Tensor, b: Tensor): Tensor {
  return apply1(binaryOp, [a, b], { op });
}

/**
 * relu(a + b) as one op (a residual join followed by a ReLU: ResNet units, TransUNet's trunk)
 * that keeps only its output for backward (the ReLU mask): the sum is a temporary, where the
 * separate ops keep it as the ReLU's input until backward (PyTorch's in-place ReLU does not).
 */
export const addReluOp = defineOp<Record<string, never>>({
  name: 'add_relu',
  forward([a, b]) {
    const prev = setGradEnabled(false);
    try {
      const t = binary('add', a, b);
      return [applyInto(unaryOp, [t], { op: 'relu' }, t)];
    } finally {
      setGradEnabled(prev);
    }
  },
  backward({ inputs: [a, b], outputs: [y] }, [g]) {
    if (!g) return [null, null];
    const gm = binary('relu_grad', g, y);
    return [sumTo(gm, a.shape), sumTo(gm, b.shape)];
  },
});

/** relu(a + b), broadcasting, as one op (see addReluOp). */
export const addRelu = (a: Tensor, b: Tensor) => apply1(addReluOp, [a, b], {});

function scalarLike(x: Tensor, v: number): Tensor {
  // Only for the few ops whose scalar form has no attribute kernel (pow with tensor base,
  // comparisons): a 1-element tensor broadcasts without allocating the full shape.
  return full([], v, x.dtype, x.device);
}

export function add(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === 'number' ? affine(a, 1, b) : binary('add', a, b);
}
export function sub(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === 'number' ? affine(a, 1, -b) : binary('sub', a, b);
}
export function mul(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === 'number' ? affine(a, b, 0) : binary('mul', a, b);
}
export function div(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === 'number' ? affine(a, 1 / b, 0) : binary('div', a, b);
}
export function pow(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === 'number' ? unary('pow', a, { exponent: b }) : binary('pow', a, b);
}
export function maximum(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === 'number' ? clamp(a, b, null) : binary('maximum', a, b);
}
export function minimum(a: Tensor, b: Tensor | number): Tensor {
  return typeof b === 'number' ? clamp(a, null, b) : binary('minimum', a, b);
}

function compare(op: string, a: Tensor, b: Tensor | number): Tensor {
  if (typeof b !== 'number') return binary(op, a, b);
  const s = scalarLike(a, b);
  try {
    return binary(op, a, s);
  } finally {
    s.dispose();
  }
}
export const eq = (a: Tensor, b: Tensor | number) => compare('eq', a, b);
export const ne = (a: Tensor, b: Tensor | number) => compare('ne', a, b);
export const lt = (a: Tensor, b: Tensor | number) => compare('lt', a, b);
export const le = (a: Tensor, b: Tensor | number) => compare('le', a, b);
export const gt = (a: Tensor, b: Tensor | number) => compare('gt', a, b);
export const ge = (a: Tensor, b: Tensor | number) => compare('ge', a, b);
const gtScalar = (x: Tensor, v: number) => (v === -Infinity ? compare('eq', x, x) : compare('gt', x, v));
const ltScalar = (x: Tensor, v: number) => (v === Infinity ? compare('eq', x, x) : compare('lt', x, v));

// ---- where, cast, fill --------------------------------------------------------------------

export const whereOp = defineOp({
  name: 'where',
  inputLayout: 'broadcast',
  infer([c, a, b]) {
    if (c.dtype !== 'uint8') throw new Error(`where: condition must be uint8 (a comparison result), got ${c.dtype}`);
    requireFloat('where', a);
    if (a.dtype !== b.dtype) throw new Error(`where: dtypes differ (${a.dtype} and ${b.dtype})`);
    const shape = broadcastShapes(broadcastShapes(c.shape, a.shape, 'where'), b.shape, 'where');
    return [{ shape, dtype: a.dtype }];
  },
  backward({ inputs: [c, a, b] }, [g]) {
    if (!g) return [null, null, null];
    const z = zerosLike(g);
    return [null, sumTo(where(c, g, z), a.shape), sumTo(where(c, z, g), b.shape)];
  },
});

export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  return apply1(whereOp, [cond, a, b], {});
}

export const castOp = defineOp<{ dtype: DType }>({
  name: 'cast',
  kernel: 'copy',
  inputLayout: 'strided',
  infer([x], { dtype }) {
    return [{ shape: x.shape.slice(), dtype }];
  },
  backward({ inputs: [x] }, [g]) {
    return [g && isFloat(x.dtype) ? cast(g, x.dtype) : null];
  },
});

export function cast(x: Tensor, dtype: DType): Tensor {
  return apply1(castOp, [x], { dtype });
}

export const fillOp = defineOp<{ value: number; shape: number[]; dtype: DType; device: Tensor['device'] }>({
  name: 'fill',
  forward(_inputs, { value, shape, dtype, device }) {
    const t = Tensor.empty(shape, dtype, device);
    try {
      if (t.size > 0) native.run('fill', DEVICE_IDS[device], [], [t.nativeArg()], { value });
    } catch (e) {
      t.dispose();
      throw e;
    }
    return [t];
  },
});

export function full(shape: number[], value: number, dtype: DType, device: Tensor['device']): Tensor {
  if (typeof value !== 'number') throw new Error(`full: value must be a number, got ${typeof value}`);
  return apply1(fillOp, [], { value, shape, dtype, device });
}

export function zerosLike(t: Tensor): Tensor {
  return full(t.shape.slice(), 0, t.dtype, t.device);
}
export function onesLike(t: Tensor): Tensor {
  return full(t.shape.slice(), 1, t.dtype, t.device);
}

/** Fills an existing contiguous tensor in place. */
export function fill_(t: Tensor, value: number): Tensor {
  t.assertAlive('fill_');
  if (!t.isContiguous()) throw new Error(`fill_: tensor ${shapeStr(t.shape)} must be contiguous`);
  native.run('fill', DEVICE_IDS[t.device], [], [t.nativeArg()], { value });
  return t;
}
