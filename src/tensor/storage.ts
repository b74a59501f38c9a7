// Native memory ownership. A Storage wraps one native block, named by a plain number (the
// addon's handle table: no N-API finalizer, so release() frees at once even in a synchronous
// loop); every Tensor (views included) holds one reference and gives it back on dispose(). The
// FinalizationRegistry on tensors is a backstop for tensors that were never disposed; it is not
// the plan, and scopes (tidy) are.
import { native } from '../native';
import { Device, DEVICE_IDS } from './device';

export class Storage {
  private refs = 0;
  private handle: number | null;

  constructor(readonly device: Device, readonly bytes: number, handle?: number) {
    this.handle = handle ?? native.alloc(DEVICE_IDS[device], bytes);
    if (storageWatch) storageWatch.created(this);
  }

  /** A CPU storage over an ArrayBuffer's own memory (no copy; keeps the buffer alive). */
  static wrap(buffer: ArrayBuffer): Storage {
    return new Storage('cpu', buffer.byteLength, native.wrapHost(buffer));
  }

  get released(): boolean {
    return this.handle === null;
  }

  /** The native handle; throws when the memory was already given back. */
  get nativeHandle(): number {
    if (this.handle === null) throw new Error('tensor used after dispose: its storage was released');
    return this.handle;
  }

  retain(): void {
    this.refs++;
  }

  /** Drops one reference; the last one gives the native memory back at once. */
  release(): void {
    if (--this.refs === 0 && this.handle !== null) {
      const h = this.handle;
      native.release(h);
      this.handle = null;
      if (storageWatch) storageWatch.released(h);
      if (releaseWatch.size !== 0) releaseWatch.get(h)?.forEach((fn) => fn());
    }
  }
}

// Recorded kernel sequences (replay.ts) learn which storages a recording created and freed, and
// are told when a storage they read from outside is given back (its handle would then be stale).
export interface StorageWatch {
  created(s: Storage): void;
  released(handle: number): void;
}
let storageWatch: StorageWatch | null = null;
const releaseWatch = new Map<number, Set<() => void>>();

/** Sees every Storage created and freed from now on (null stops); returns the watch replaced. */
export function watchStorages(w: StorageWatch | null): StorageWatch | null {
  const prev = storageWatch;
  storageWatch = w;
  return prev;
}

/** Calls fn once the storage behind `handle` gives its memory back; returns the unsubscriber. */
export function onStorageRelease(handle: number, fn: () => void): () => void {
  let set = releaseWatch.get(handle);
  if (!set) releaseWatch.set(handle, (set = new Set()));
  set.add(fn);
  return () => {
    set!.delete(fn);
    if (set!.size === 0 && releaseWatch.get(handle) === set) releaseWatch.delete(handle);
  };
}

let liveTensors = 0;

export function trackTensor(delta: number): void {
  liveTensors += delta;
}

export function liveTensorCount(): number {
  return liveTensors;
}

// Backstop: a tensor garbage-collected without dispose() gives its reference back.
export const storageFinalizer = new FinalizationRegistry<Storage>((s) => {
  liveTensors--;
  s.release();
});

export interface DeviceMemory {
  storages: number;
  bytesInUse: number;
  bytesCached: number;
  peakBytesInUse: number;
}

export interface ProcessMemory {
  /** Resident set size now, and its peak over the process's life (bytes). */
  rssBytes: number;
  peakRssBytes: number;
  /** Bytes the native (malloc) heap holds outside V8 and the tensor allocator; -1 if unknown. */
  nativeHeapBytes: number;
}

export interface MemoryInfo {
  /** Tensors created and not yet disposed (views count separately). */
  liveTensors: number;
  cpu: DeviceMemory;
  cuda?: DeviceMemory;
  process: ProcessMemory;
}

function deviceMemory(id: number): DeviceMemory {
  const m = native.memory(id);
  return { storages: m.storages ?? 0, bytesInUse: m.bytesInUse ?? 0, bytesCached: m.bytesCached ?? 0, peakBytesInUse: m.peakBytesInUse ?? 0 };
}

export function memory(): MemoryInfo {
  const proc: ProcessMemory = { rssBytes: process.memoryUsage.rss(), peakRssBytes: process.resourceUsage().maxRSS * 1024, nativeHeapBytes: native.mallocInUse() };
  const info: MemoryInfo = { liveTensors, cpu: deviceMemory(0), process: proc };
  if (native.backendInfo(1).available) info.cuda = deviceMemory(1);
  return info;
}

/** Returns cached (freed) blocks to the system or the GPU driver. */
export function emptyCache(): void {
  native.emptyCache(0);
  if (native.backendInfo(1).available) native.emptyCache(1);
}

/** Restarts the allocators' peakBytesInUse (sc.memory()) from the bytes in use now. */
export function resetPeakMemory(): void {
  native.resetPeakMemory(0);
  if (native.backendInfo(1).available) native.resetPeakMemory(1);
}

/**
 * Bounds what the allocators keep cached for reuse (freed blocks): above `bytes`, blocks are
 * given back to the system (or the GPU driver) at once, largest first. null: no bound (the
 * default; a training loop then reuses the same blocks every step without new page faults).
 * Also set by the environment variable SCALPEL_CACHE_LIMIT_MB at start-up.
 */
export function setCacheLimit(bytes: number | null): void {
  if (bytes !== null && !(Number.isFinite(bytes) && bytes >= 0)) throw new Error(`setCacheLimit: expected a number of bytes >= 0 or null, got ${bytes}`);
  native.setCacheLimit(0, bytes ?? -1);
  if (native.backendInfo(1).available) native.setCacheLimit(1, bytes ?? -1);
}

const envLimit = process.env.SCALPEL_CACHE_LIMIT_MB;
if (envLimit !== undefined && envLimit !== '') {
  const mb = Number(envLimit);
  if (!(Number.isFinite(mb) && mb >= 0)) throw new Error(`SCALPEL_CACHE_LIMIT_MB must be a number of megabytes >= 0, got ${JSON.stringify(envLimit)}`);
  setCacheLimit(mb * 2 ** 20);
}
