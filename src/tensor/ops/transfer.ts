// Moving tensors between devices (through host memory) with autograd support.
import { native } from '../../native';
import { Device } from '../device';
import { DTYPES } from '../dtype';
import { apply1, defineOp } from '../op';
import { Tensor, contiguousCopy } from '../tensor';

export const toDeviceOp = defineOp<{ device: Device }>({
  name: 'to_device',
  forward([x], { device }) {
    const src = x.isContiguous() ? x : contiguousCopy(x);
    const out = Tensor.empty(x.shape.slice(), x.dtype, device);
    try {
      const bytes = DTYPES[x.dtype].bytes;
      if (x.size > 0) {
        const host = native.copyOut(src.storage.nativeHandle, src.offset * bytes, x.size * bytes);
        native.copyIn(out.storage.nativeHandle, 0, new Uint8Array(host));
      }
    } catch (e) {
      out.dispose();
      throw e;
    } finally {
      if (src !== x) src.dispose();
    }
    return [out];
  },
  backward({ inputs: [x] }, [g]) {
    return [g ? toDevice(g, x.device) : null];
  },
});

export function toDevice(x: Tensor, device: Device): Tensor {
  return apply1(toDeviceOp, [x], { device });
}
