// The shape of an op test case, shared by every case file. The harness (backend-ops.test.ts)
// runs each case on every backend against its reference, and gradchecks it on the CPU.
import type { Tensor } from '../../src';
import type { Ref } from './reference';

export interface InputSpec {
  shape: number[];
  /** Value distribution: randn (default), positive (0.5..2), unit (0..1), mask (0/1), index (0..n-1 integers as float). */
  kind?: 'randn' | 'positive' | 'unit' | 'mask' | 'index';
  /** Whether the input takes part in the gradient check (default true). */
  grad?: boolean;
  /** Build the input as a non-contiguous (transposed) view. */
  noncontig?: boolean;
  /** For kind 'index': exclusive upper bound. */
  n?: number;
}

export interface OpCase {
  /** Unique test name. */
  name: string;
  /** The op-table entries this case covers (for the coverage check). */
  ops: string[];
  inputs: InputSpec[];
  run(xs: Tensor[]): Tensor;
  /** Reference on float64 host copies of the inputs; omitted when compared only across backends. */
  ref?(xs: Ref[]): Ref;
  /** Normalised mean squared error allowed against the reference (default 1e-10). */
  tol?: number;
  /** Set false for ops without gradients (comparisons, argmax, ...). */
  grad?: boolean;
  /** Gradcheck tolerances (float64 on CPU). */
  gradTol?: { atol?: number; rtol?: number; eps?: number };
  /** Backends this case does not apply to (reported as not supported, never silently passed). */
  skipOn?: string[];
}
