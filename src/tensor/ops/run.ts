// Helpers shared by ops whose custom forward runs a kernel with several outputs and keeps
// some of them for the backward (pooling indices, normalisation statistics).
import { OpDef, OutSpec, runKernel } from '../op';
import { shapeStr } from '../shape';
import { Tensor } from '../tensor';

/** Allocates outputs for `specs` and runs the op's kernel; frees them if the kernel throws. */
export function runOutputs(op: OpDef<never>, inputs: Tensor[], specs: OutSpec[], attrs: Record<string, unknown>): Tensor[] {
  const device = inputs[0].device;
  const outs = specs.map((s) => Tensor.empty(s.shape, s.dtype, device));
  try {
    if (outs.some((o) => o.size > 0)) runKernel(op as unknown as OpDef, inputs, outs, attrs);
  } catch (e) {
    outs.forEach((o) => o.dispose());
    throw e;
  }
  return outs;
}

export function checkFloat(x: Tensor, where: string): void {
  if (x.dtype !== 'float32' && x.dtype !== 'float64') throw new Error(`${where}: expected a float tensor, got ${x.dtype}`);
}

export function check4d(x: Tensor, where: string): void {
  if (x.ndim !== 4) throw new Error(`${where}: input must be 4-D [N, C, H, W], got ${shapeStr(x.shape)}`);
  checkFloat(x, where);
}
