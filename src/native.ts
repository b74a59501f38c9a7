// Loads the native addon. SCALPEL_FLAVOUR=emu selects the flavour whose `cuda` backend is the
// CUDA sources compiled for the CPU emulator (used by tests on machines without a GPU).
import * as fs from 'fs';
import * as path from 'path';

export type TArgSpec = [handle: number, offset: number, dtype: number, shape: number[], strides: number[]];

export interface NativeAddon {
  /** Storage handles are numbers (a slot and a generation in the addon's table). */
  alloc(backend: number, nbytes: number): number;
  release(handle: number): void;
  /** Bytes malloc has handed out and not taken back (-1 where unknown). */
  mallocInUse(): number;
  copyIn(handle: number, byteOffset: number, data: ArrayBufferView): void;
  copyOut(handle: number, byteOffset: number, nbytes: number): ArrayBuffer;
  hostView(handle: number): ArrayBuffer;
  wrapHost(buffer: ArrayBuffer): number;
  /** Checks and converts the call now; CPU calls may be queued and run later (see flush). */
  run(kernel: string, backend: number, inputs: TArgSpec[], outputs: TArgSpec[], attrs: Record<string, unknown>): void;
  /** Runs the queued kernel calls now (every host access and memory query does this itself). */
  flush(): void;
  /** Kernel calls queued before they run (0 or 1: each at once); changing it runs the queue. */
  setKernelQueue(depth: number): void;
  kernelQueue(): number;
  /** Kernel calls waiting in the queue now. */
  queued(): number;
  /** Milliseconds per call over `iters` calls (CUDA events on the GPU). For benchmarks. */
  timeKernel(kernel: string, backend: number, inputs: TArgSpec[], outputs: TArgSpec[], attrs: Record<string, unknown>, iters: number): number;
  kernels(backend: number): string[];
  backendInfo(backend: number): { available: boolean; emulated: boolean; deviceCount: number; deviceName: string; reason: string };
  memory(backend: number): { storages?: number; bytesInUse?: number; bytesCached?: number; peakBytesInUse?: number };
  emptyCache(backend: number): void;
  resetPeakMemory(backend: number): void;
  setCacheLimit(backend: number, bytes: number): void;
  synchronize(backend: number): void;
  setNumThreads(n: number): void;
  numThreads(): number;
  /** Float GEMM ISA path in use ("avx512", "avx2", "generic"). */
  gemmIsa(): string;
  /** Measured FMA peak (float GFLOP/s) on `threads` threads (benchmark calibration). */
  fmaPeakGflops(threads?: number): number;
  setWinograd(on: boolean): void;
  winograd(): boolean;
  convAlgorithms(x: number[], w: number[], stride: number[], padding: number[], dilation: number[], groups: number): ConvAlgorithms;
}

/** The float32 CPU kernel of each convolution pass: "winograd", "direct", "gemm" or "depthwise". */
export interface ConvAlgorithms {
  forward: string;
  /** The inference path's convolution with a fused epilogue (sc.inference.optimize). */
  fused: string;
  backwardInput: string;
  backwardWeight: string;
}

function findRoot(): string {
  // Works from src/ (tsx) and from dist/src/ (compiled).
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('scalpel: cannot locate the package root (looked upwards from ' + __dirname + ')');
}

export const packageRoot = findRoot();
export const flavour: 'default' | 'emu' = process.env.SCALPEL_FLAVOUR === 'emu' ? 'emu' : 'default';

function load(): NativeAddon {
  const file = flavour === 'emu' ? 'scalpel_emu.node' : 'scalpel.node';
  const candidates = [path.join(packageRoot, 'build', 'Release', file), path.join(packageRoot, 'build', 'Debug', file)];
  for (const c of candidates) {
    if (fs.existsSync(c)) return require(c) as NativeAddon;
  }
  const hint = flavour === 'emu'
    ? 'the emulated-CUDA flavour is built by cmake-js only (run `npm install` with cmake present)'
    : 'run `npm install` (or `node scripts/build-native.js`) to build it';
  throw new Error(`scalpel: native addon ${file} not found under ${path.join(packageRoot, 'build')}: ${hint}`);
}

/**
 * Watches what the addon is asked to do while a kernel sequence is recorded (src/tensor/replay.ts):
 * every run(), and every transfer between JavaScript and a storage, which a recorded sequence
 * cannot repeat.
 */
export interface NativeRecorder {
  run(kernel: string, backend: number, inputs: TArgSpec[], outputs: TArgSpec[], attrs: Record<string, unknown>): void;
  hostAccess(what: 'copyIn' | 'copyOut' | 'hostView' | 'wrapHost'): void;
}

let recorder: NativeRecorder | null = null;

/** Installs (or with null removes) the recorder; returns the one it replaced. */
export function setNativeRecorder(r: NativeRecorder | null): NativeRecorder | null {
  const prev = recorder;
  recorder = r;
  return prev;
}

const nativeAddon: NativeAddon = load();

/** The addon as the library calls it: the same functions, seen by the recorder when one is set. */
export const native: NativeAddon = {
  ...nativeAddon,
  run(kernel, backend, inputs, outputs, attrs) {
    if (recorder) recorder.run(kernel, backend, inputs, outputs, attrs);
    nativeAddon.run(kernel, backend, inputs, outputs, attrs);
  },
  copyIn(handle, byteOffset, data) {
    if (recorder) recorder.hostAccess('copyIn');
    nativeAddon.copyIn(handle, byteOffset, data);
  },
  copyOut(handle, byteOffset, nbytes) {
    if (recorder) recorder.hostAccess('copyOut');
    return nativeAddon.copyOut(handle, byteOffset, nbytes);
  },
  hostView(handle) {
    if (recorder) recorder.hostAccess('hostView');
    return nativeAddon.hostView(handle);
  },
  wrapHost(buffer) {
    if (recorder) recorder.hostAccess('wrapHost');
    return nativeAddon.wrapHost(buffer);
  },
};
