/**
 * Batch assembly shared by the DataLoader's worker threads and its in-process
 * mode: decode + resize (or take cached decoded samples), augment, and pack into
 * contiguous [B, C, H, W] / [B, 1, H, W] arrays. Class-index masks go through the same geometric
 * augmentation, which samples masks by nearest neighbour (or permutes them), so class values are
 * kept as they are.
 *
 * When loaded inside a worker started by DataLoader (workerData.scalpelDataLoader),
 * this module also answers batch jobs posted by the parent.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { AugmentOptions, Rng, augmentPair } from './augment';
import { DataError, readClassMask, readImage, readMaskInfo } from './decode';

export interface DecodedSample {
  /** CHW 0..1 at the loader size, before augmentation. */
  image: Float32Array;
  /** HW 0/1 at the loader size (class indices 0..classes-1 when classes >= 2). */
  mask: Uint8Array;
}

export interface BatchJobItem {
  id: string;
  imagePath: string;
  maskPath: string;
  /** Per-sample augmentation seed (derived from loader seed, epoch and position). */
  seed: number;
  cached?: DecodedSample;
}

export interface BatchJob {
  jobId: number;
  items: BatchJobItem[];
  channels: 1 | 3;
  size: [number, number];
  /** Augmentation + normalisation; null = none. */
  augment: AugmentOptions | null;
  maskThreshold: number;
  /** Resize a mask whose size differs from its image's (else that is an error). */
  resizeMasks: boolean;
  /** Return the decoded (pre-augmentation) samples so the parent can cache them. */
  returnDecoded: boolean;
  /** 1 (absent): binary masks thresholded at maskThreshold; >= 2: class-index masks (readClassMask). */
  classes?: number;
}

export interface BatchResult {
  jobId: number;
  images: Float32Array;
  masks: Float32Array;
  /** Present when returnDecoded: decoded samples for items that had no cache entry (null for cached ones). */
  decoded?: (DecodedSample | null)[];
}

export interface BatchFailure {
  jobId: number;
  error: { message: string; code?: string; file?: string };
}

export async function decodeSample(item: BatchJobItem, channels: 1 | 3, size: [number, number], maskThreshold: number, resizeMasks = false, classes = 1): Promise<DecodedSample> {
  const maskInfo = classes >= 2 ? readClassMask(item.maskPath, classes, size) : readMaskInfo(item.maskPath, size, maskThreshold);
  const [img, mask] = await Promise.all([readImage(item.imagePath, { channels, size }), maskInfo]);
  // Both are resized to the training size, so a mask of another size would silently be
  // stretched onto its image: almost always a mismatched pair, not an intended annotation.
  if (!resizeMasks && (img.sourceHeight !== mask.sourceHeight || img.sourceWidth !== mask.sourceWidth)) {
    throw new DataError(
      `${item.maskPath}: mask is ${mask.sourceWidth}x${mask.sourceHeight} but its image ${item.imagePath} is ${img.sourceWidth}x${img.sourceHeight} (width x height); fix the pair, or pass --resize-masks to stretch masks to their images`,
      'size', item.maskPath,
    );
  }
  return { image: img.data, mask: mask.data };
}

export async function processBatch(job: BatchJob): Promise<BatchResult> {
  const [h, w] = job.size;
  const c = job.channels;
  const n = job.items.length;
  const images = new Float32Array(n * c * h * w);
  const masks = new Float32Array(n * h * w);
  const decodedOut: (DecodedSample | null)[] = [];
  // Decode the batch concurrently: sharp runs decodes on libuv threads.
  const decoded = await Promise.all(
    job.items.map((it) => (it.cached ? Promise.resolve(it.cached) : decodeSample(it, c, job.size, job.maskThreshold, job.resizeMasks, job.classes))),
  );
  for (let k = 0; k < n; k++) {
    const it = job.items[k];
    const s = decoded[k];
    decodedOut.push(it.cached ? null : s);
    let image = s.image;
    let mask: Uint8Array = s.mask;
    if (job.augment) {
      const r = augmentPair(image, mask, h, w, c, job.augment, new Rng(it.seed));
      image = r.image;
      mask = r.mask;
    }
    images.set(image, k * c * h * w);
    masks.set(mask, k * h * w);
  }
  return job.returnDecoded ? { jobId: job.jobId, images, masks, decoded: decodedOut } : { jobId: job.jobId, images, masks };
}

export function failureOf(jobId: number, e: unknown): BatchFailure {
  if (e instanceof DataError) return { jobId, error: { message: e.message, code: e.code, file: e.file } };
  return { jobId, error: { message: e instanceof Error ? e.message : String(e) } };
}

if (!isMainThread && parentPort && (workerData as { scalpelDataLoader?: boolean } | null)?.scalpelDataLoader) {
  const port = parentPort;
  port.on('message', (job: BatchJob) => {
    processBatch(job).then(
      (res) => {
        // Transfer the freshly allocated buffers instead of copying them.
        const transfer: ArrayBuffer[] = [res.images.buffer as ArrayBuffer, res.masks.buffer as ArrayBuffer];
        for (const d of res.decoded ?? []) if (d) transfer.push(d.image.buffer as ArrayBuffer, d.mask.buffer as ArrayBuffer);
        port.postMessage(res, transfer);
      },
      (e: unknown) => port.postMessage(failureOf(job.jobId, e)),
    );
  });
}
