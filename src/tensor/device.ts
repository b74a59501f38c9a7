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
