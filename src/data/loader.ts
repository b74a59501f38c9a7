/**
 * DataLoader: seeded, prefetching batch assembly with decoding and augmentation in
 * worker threads.
 *
 * Determinism: the epoch order is a shuffle seeded by (seed, epoch) and each
 * sample's augmentation is seeded by (seed, epoch, position in the epoch), so a
 * batch's content depends only on (seed, epoch, batch index) -- not on the number
 * of workers or on which worker finishes first. Resuming training at epoch e only
 * needs `loader.epoch(e)`.
 *
 * Worker script: workers are started with `eval: true` code that requires the
 * sibling module `loader-worker.(ts|js)` by absolute path. When this file runs from
 * TypeScript source (tsx), the `.ts` extension of __filename is seen and tsx's CJS
 * hook is registered inside the worker first; compiled JS in dist/ needs nothing.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { AugmentOptions, Rng, mixSeed, validateAugmentOptions } from './augment';
import { DataError } from './decode';
import { BatchFailure, BatchJob, BatchJobItem, BatchResult, DecodedSample, processBatch } from './loader-worker';

/** Anything that maps ids to files, e.g. the result of openDataset. */
export interface SampleSource {
  imagePath(id: string): string;
  maskPath(id: string): string;
}

export interface DataLoaderOptions {
  batchSize: number;
  /** Output [height, width]; every sample is resized to it. */
  size: [number, number];
  /** Image channels, 1 (grey) or 3 (RGB). Default 1. */
  channels?: 1 | 3;
  /** Shuffle each epoch (seeded). Default true. */
  shuffle?: boolean;
  seed?: number;
  /** Drop the last incomplete batch. Default false. */
  dropLast?: boolean;
  /** Augmentation applied per sample per epoch; omit/null for none (validation). */
  augment?: AugmentOptions | null;
  /** Per-channel normalisation applied after augmentation (also without augmentation). */
  normalize?: { mean: number[]; std: number[] };
  /** Worker threads; 0 = decode in this thread (still asynchronous via sharp). Default 1. */
  workers?: number;
  /** Batches prepared ahead of the consumer. Default 2. */
  prefetch?: number;
  /**
   * Keep decoded+resized samples in memory after first use (augmentation still per epoch).
   * true: this loader's own cache; a SampleCache: one shared with other loaders over the same
   * files (each file is decoded once across them). Default false.
   */
  cache?: boolean | SampleCache;
  /** Mask binarisation threshold on the 0..255 scale. Default 128. */
  maskThreshold?: number;
  /** Stretch a mask whose size differs from its image's to it; default false: that is an error. */
  resizeMasks?: boolean;
  /**
   * 1 (default): binary masks (thresholded at maskThreshold). N >= 2: class-index masks, pixel
   * value = class in 0..N-1 (a value >= N is a DataError naming the file and pixel).
   */
  classes?: number;
}

export interface Batch {
  /** [B, C, H, W] */
  images: Float32Array;
  /** [B, 1, H, W], 0/1 (class indices 0..classes-1 with the classes option >= 2) */
  masks: Float32Array;
  ids: string[];
  /** B (the last batch may be smaller unless dropLast). */
  size: number;
  channels: number;
  height: number;
  width: number;
  epoch: number;
  index: number;
}

/**
 * Decoded, resized samples by id, before augmentation and normalisation. Handing one SampleCache
 * to several loaders over the same files (fit's statistics pass and its training loader)
 * decodes each file once between them. The loaders must decode alike (size, channels, mask
 * settings): the first loader fixes the settings and another one that differs is an error, as
 * its samples would silently come at the wrong size or with the wrong masks.
 */
export class SampleCache {
  private readonly samples = new Map<string, DecodedSample>();
  private settings: string | null = null;

  /** Samples held. */
  get size(): number {
    return this.samples.size;
  }

  get(id: string): DecodedSample | undefined {
    return this.samples.get(id);
  }

  set(id: string, sample: DecodedSample): void {
    this.samples.set(id, sample);
  }

  /** Called by each loader that uses this cache with its decode settings. */
  bind(settings: string): void {
    if (this.settings === null) this.settings = settings;
    else if (this.settings !== settings) throw new Error(`DataLoader: the shared SampleCache holds samples decoded with ${this.settings}; this loader decodes with ${settings}`);
  }
}

interface Pending {
  resolve(r: BatchResult): void;
  reject(e: Error): void;
}

interface PoolWorker {
  worker: Worker;
  pending: Map<number, Pending>;
  dead: boolean;
}

function workerSource(): string {
  const ext = path.extname(__filename);
  const file = path.join(__dirname, `loader-worker${ext}`);
  const lines: string[] = [];
  if (ext === '.ts' || ext === '.mts' || ext === '.cts') {
    // Running from source: the worker does not inherit a hook installed by
    // `--require tsx` / `--import tsx`, so install tsx's CJS hook explicitly.
    lines.push(`require(${JSON.stringify(require.resolve('tsx/cjs/api'))}).register();`);
  }
  lines.push(`require(${JSON.stringify(file)});`);
  return lines.join('\n');
}

function toError(f: BatchFailure['error']): Error {
  if (f.code) return new DataError(f.message, f.code as DataError['code'], f.file);
  return new Error(f.message);
}

export class DataLoader {
  readonly batchSize: number;
  readonly size: [number, number];
  readonly channels: 1 | 3;
  /** Total milliseconds the consumer spent waiting for batches that were not ready yet. */
  waitMs = 0;
  private readonly opts: Required<Pick<DataLoaderOptions, 'shuffle' | 'seed' | 'dropLast' | 'workers' | 'prefetch' | 'maskThreshold' | 'resizeMasks' | 'classes'>> & { cache: boolean };
  private readonly augment: AugmentOptions | null;
  private readonly cache: SampleCache;
  private pool: PoolWorker[] = [];
  private nextJobId = 1;
  private nextEpoch = 0;
  private closed = false;

  constructor(
    private readonly source: SampleSource,
    readonly ids: readonly string[],
    options: DataLoaderOptions,
  ) {
    if (!Number.isInteger(options.batchSize) || options.batchSize <= 0) throw new Error(`DataLoader: batchSize must be a positive integer, got ${options.batchSize}`);
    if (ids.length === 0) throw new Error('DataLoader: no ids');
    const [h, w] = options.size;
    if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0) throw new Error(`DataLoader: invalid size [${options.size.join(', ')}]`);
    this.batchSize = options.batchSize;
    this.size = [h, w];
    this.channels = options.channels ?? 1;
    this.opts = {
      shuffle: options.shuffle ?? true,
      seed: options.seed ?? 0,
      dropLast: options.dropLast ?? false,
      workers: Math.max(0, Math.floor(options.workers ?? 1)),
      prefetch: Math.max(1, Math.floor(options.prefetch ?? 2)),
      cache: options.cache !== undefined && options.cache !== false,
      maskThreshold: options.maskThreshold ?? 128,
      resizeMasks: options.resizeMasks ?? false,
      classes: options.classes ?? 1,
    };
    const k = this.opts.classes;
    if (!(Number.isInteger(k) && k >= 1 && k <= 256)) throw new Error(`DataLoader: classes must be an integer from 1 to 256, got ${k}`);
    // Checked here, in the main thread, so a bad option is one clear error rather than a worker's crash.
    const aug: AugmentOptions = { ...validateAugmentOptions(options.augment ?? {}) };
    if (options.normalize) aug.normalize = options.normalize;
    this.augment = Object.keys(aug).length > 0 ? aug : null;
    this.cache = options.cache instanceof SampleCache ? options.cache : new SampleCache();
    const { maskThreshold, resizeMasks, classes } = this.opts;
    this.cache.bind(JSON.stringify({ size: this.size, channels: this.channels, maskThreshold, resizeMasks, classes }));
    if (this.opts.dropLast && this.numBatches === 0) throw new Error(`DataLoader: dropLast with ${ids.length} ids and batch size ${this.batchSize} gives no batches`);
  }

  /** Batches per epoch. */
  get numBatches(): number {
    return this.opts.dropLast ? Math.floor(this.ids.length / this.batchSize) : Math.ceil(this.ids.length / this.batchSize);
  }

  /** Number of samples currently cached. */
  get cachedCount(): number {
    return this.cache.size;
  }

  /** The sample order of an epoch (seeded shuffle, or the given order). */
  epochOrder(epoch: number): string[] {
    const order = [...this.ids];
    if (this.opts.shuffle) new Rng(mixSeed(this.opts.seed, epoch, 0x5eed)).shuffle(order);
    return order;
  }

  /** Iterate an epoch's batches, prefetching `prefetch` batches ahead. */
  async *epoch(epoch: number): AsyncGenerator<Batch, void, undefined> {
    if (this.closed) throw new Error('DataLoader: closed');
    this.nextEpoch = epoch + 1;
    const order = this.epochOrder(epoch);
    const nb = this.numBatches;
    const inflight: Promise<BatchResult>[] = [];
    let submitted = 0;
    const submit = (): void => {
      const b = submitted++;
      const items: BatchJobItem[] = order.slice(b * this.batchSize, Math.min(order.length, (b + 1) * this.batchSize)).map((id, k) => ({
        id,
        imagePath: this.source.imagePath(id),
        maskPath: this.source.maskPath(id),
        seed: mixSeed(this.opts.seed, epoch, b * this.batchSize + k),
        cached: this.cache.get(id),
      }));
      const job: BatchJob = {
        jobId: this.nextJobId++,
        items,
        channels: this.channels,
        size: this.size,
        augment: this.augment,
        maskThreshold: this.opts.maskThreshold,
        resizeMasks: this.opts.resizeMasks,
        returnDecoded: this.opts.cache,
        // Only for classes >= 2, so the binary job stays as it was.
        ...(this.opts.classes >= 2 ? { classes: this.opts.classes } : {}),
      };
      const p = this.run(job).then((res) => {
        if (res.decoded) res.decoded.forEach((d, k) => d && this.cache.set(items[k].id, d));
        return res;
      });
      // Errors surface when the consumer reaches this batch; this only avoids an
      // unhandled rejection if the consumer stops early.
      p.catch(() => undefined);
      inflight.push(p);
    };
    for (let b = 0; b < nb; b++) {
      while (submitted < nb && submitted <= b + this.opts.prefetch) submit();
      const t0 = performance.now();
      const res = await inflight[b];
      this.waitMs += performance.now() - t0;
      inflight[b] = undefined as unknown as Promise<BatchResult>; // let the batch be collected
      const ids = order.slice(b * this.batchSize, Math.min(order.length, (b + 1) * this.batchSize));
      const [h, w] = this.size;
      yield { images: res.images, masks: res.masks, ids, size: ids.length, channels: this.channels, height: h, width: w, epoch, index: b };
    }
  }

  /** `for await (const batch of loader)` iterates the next epoch (0, 1, ... or after the last epoch(e) call). */
  [Symbol.asyncIterator](): AsyncGenerator<Batch, void, undefined> {
    return this.epoch(this.nextEpoch);
  }

  /** Stop the workers. The loader cannot be used afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    const pool = this.pool;
    this.pool = [];
    await Promise.all(pool.map((pw) => pw.worker.terminate()));
  }

  private run(job: BatchJob): Promise<BatchResult> {
    if (this.closed) return Promise.reject(new Error('DataLoader: closed'));
    if (this.opts.workers === 0) return processBatch(job);
    const pw = this.pickWorker();
    return new Promise<BatchResult>((resolve, reject) => {
      pw.pending.set(job.jobId, { resolve, reject });
      if (pw.pending.size === 1) pw.worker.ref();
      pw.worker.postMessage(job);
    });
  }

  private pickWorker(): PoolWorker {
    this.pool = this.pool.filter((p) => !p.dead);
    if (this.pool.length < this.opts.workers) {
      const pw = this.spawn();
      this.pool.push(pw);
      return pw;
    }
    return this.pool.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
  }

  private spawn(): PoolWorker {
    const worker = new Worker(workerSource(), { eval: true, workerData: { scalpelDataLoader: true } });
    const pw: PoolWorker = { worker, pending: new Map(), dead: false };
    // Idle workers must not keep the process alive; ref() is taken while jobs are pending.
    worker.unref();
    const settle = (jobId: number): Pending | undefined => {
      const p = pw.pending.get(jobId);
      pw.pending.delete(jobId);
      if (pw.pending.size === 0) worker.unref();
      return p;
    };
    worker.on('message', (msg: BatchResult | BatchFailure) => {
      const p = settle(msg.jobId);
      if (!p) return;
      if ('error' in msg) p.reject(toError(msg.error));
      else p.resolve(msg);
    });
    const fail = (e: Error): void => {
      pw.dead = true;
      for (const [id, p] of pw.pending) {
        pw.pending.delete(id);
        p.reject(e);
      }
    };
    worker.on('error', (e) => fail(new Error(`DataLoader worker failed: ${e.message}`)));
    worker.on('exit', (code) => {
      if (!this.closed) fail(new Error(`DataLoader worker exited with code ${code}`));
      pw.dead = true;
    });
    return pw;
  }
}
