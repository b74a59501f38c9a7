// Shape arithmetic shared by the op table: strides, broadcasting, axis normalisation.

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

/** Whether strides lay the shape out row-major without gaps (size-1 dimensions' strides aside). */
export function isContiguousLayout(shape: readonly number[], strides: readonly number[]): boolean {
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && strides[i] !== s) return false;
    s *= shape[i];
  }
  return true;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export function checkShape(shape: unknown, where: string): number[] {
  if (!Array.isArray(shape)) throw new Error(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  if (shape.length > 8) throw new Error(`${where}: at most 8 dimensions are supported, got ${shape.length}`);
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new Error(`${where}: shape must contain non-negative integers, got ${JSON.stringify(shape)}`);
  }
  return shape.slice();
}

/** NumPy broadcasting of two shapes; throws naming both shapes when they are incompatible. */
export function broadcastShapes(a: readonly number[], b: readonly number[], where: string): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) {
      throw new Error(`${where}: shapes ${shapeStr(a)} and ${shapeStr(b)} cannot be broadcast together (dimension ${i}: ${x} vs ${y})`);
    }
    out[i] = x === 1 ? y : x;
  }
  return out;
}

export function normAxis(axis: number, ndim: number, where: string): number {
  if (!Number.isInteger(axis) || axis < -Math.max(ndim, 1) || axis >= Math.max(ndim, 1)) {
    throw new Error(`${where}: dimension ${axis} is out of range for a tensor with ${ndim} dimensions`);
  }
  return axis < 0 ? axis + ndim : axis;
}

export function normAxes(axes: number | number[] | undefined | null, ndim: number, where: string): number[] {
  if (axes === undefined || axes === null) return Array.from({ length: ndim }, (_, i) => i);
  const list = (Array.isArray(axes) ? axes : [axes]).map((a) => normAxis(a, ndim, where));
  const uniq = [...new Set(list)].sort((x, y) => x - y);
  if (uniq.length !== list.length) throw new Error(`${where}: repeated dimension in ${JSON.stringify(axes)}`);
  return uniq;
}

export function pair(v: number | number[], name: string, where: string): [number, number] {
  const p = typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => Number.isInteger(x))) {
    throw new Error(`${where}: ${name} must be an integer or a pair of integers, got ${JSON.stringify(v)}`);
  }
  return [p[0], p[1]];
}
