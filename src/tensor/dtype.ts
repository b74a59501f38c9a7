export type DType = 'float32' | 'float64' | 'int32' | 'uint8' | 'int64';

export type TypedArray = Float32Array | Float64Array | Int32Array | Uint8Array | BigInt64Array;

interface DTypeInfo {
  id: number; // matches sc::DType in native/core/kernel.h
  bytes: number;
  array: { new (n: number): TypedArray; new (b: ArrayBuffer, off?: number, len?: number): TypedArray };
  float: boolean;
}

export const DTYPES: Record<DType, DTypeInfo> = {
  float32: { id: 0, bytes: 4, array: Float32Array as never, float: true },
  float64: { id: 1, bytes: 8, array: Float64Array as never, float: true },
  int32: { id: 2, bytes: 4, array: Int32Array as never, float: false },
  uint8: { id: 3, bytes: 1, array: Uint8Array as never, float: false },
  int64: { id: 4, bytes: 8, array: BigInt64Array as never, float: false },
};

export function checkDType(d: unknown, where: string): DType {
  if (typeof d === 'string' && d in DTYPES) return d as DType;
  throw new Error(`${where}: unknown dtype ${JSON.stringify(d)} (expected one of ${Object.keys(DTYPES).join(', ')})`);
}

export function isFloat(d: DType): boolean {
  return DTYPES[d].float;
}

export function dtypeOfArray(a: ArrayLike<number> | TypedArray): DType | null {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Uint8Array) return 'uint8';
  if (a instanceof BigInt64Array) return 'int64';
  return null;
}
