import { native, flavour } from '../native';

export type Device = 'cpu' | 'cuda';

export const DEVICE_IDS: Record<Device, number> = { cpu: 0, cuda: 1 };

export function checkDevice(d: unknown, where: string): Device {
  if (d === 'cpu' || d === 'cuda') {
    if (d === 'cuda') {
      const info = native.backendInfo(1);
      if (!info.available) throw new Error(`${where}: device 'cuda' is not available: ${info.reason}`);
    }
    return d;
  }
  if (typeof d === 'string' && /^cuda:\d+$/.test(d)) {
    if (d !== 'cuda:0') throw new Error(`${where}: only one CUDA device (cuda:0) is supported, got '${d}'`);
    return checkDevice('cuda', where);
  }
  throw new Error(`${where}: unknown device ${JSON.stringify(d)} (expected 'cpu' or 'cuda')`);
}

/** The devices usable in this process: always 'cpu', plus 'cuda' with a GPU or the emulator. */
export function availableDevices(): Device[] {
  return native.backendInfo(1).available ? ['cpu', 'cuda'] : ['cpu'];
}

export const cuda = {
  isAvailable: (): boolean => native.backendInfo(1).available,
  /** True when `cuda` runs the CUDA kernels in the CPU emulator (SCALPEL_FLAVOUR=emu). */
  isEmulated: (): boolean => native.backendInfo(1).emulated,
  deviceCount: (): number => native.backendInfo(1).deviceCount,
  deviceName: (): string => native.backendInfo(1).deviceName,
  /** Why cuda is unavailable, or '' when it is available. */
  unavailableReason: (): string => native.backendInfo(1).reason,
  synchronize: (): void => native.synchronize(1),
  flavour,
};

/**
 * Waits until every op asked for so far has run. CPU kernel calls are queued and run in batches
 * (see setKernelQueue); reading a tensor's values, copying into it and the memory statistics
 * wait by themselves, so only code that times work with a clock needs this. On a GPU it also
 * waits for the device.
 */
export function synchronize(): void {
  native.synchronize(1); // runs the CPU queue first; waits for nothing where CUDA is absent
}

/**
 * How many CPU kernel calls may wait in the queue before they run (default 256, or
 * SCALPEL_KERNEL_QUEUE in the environment; 0 or 1 runs each at once, as op-by-op profiling
 * needs). Each call is checked when it is made; queued, the JavaScript of many ops runs back to
 * back on warm caches instead of between kernels (7 % of CMUNeXt-S's training step at 128 px).
 * Changing it first runs what is queued.
 */
export function setKernelQueue(depth: number): void {
  if (!Number.isInteger(depth) || depth < 0) throw new Error(`setKernelQueue: expected a non-negative integer, got ${depth}`);
  native.setKernelQueue(depth);
}
export function getKernelQueue(): number {
  return native.kernelQueue();
}
