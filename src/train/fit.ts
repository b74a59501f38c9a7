/**
 * fit(config): the training loop. Seeded and resumable: the data order and augmentation depend
 * only on (seed, epoch, batch), the parameter initialisation on the seed, and a checkpoint holds
 * everything else that changes during training (weights, optimiser buffers, scheduler state, the
 * tensor Generator and the data Rng), so "train 2 epochs" and "train 1, stop, resume 1" give the
 * same weights.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tidy } from '../tensor/tensor';
import * as cliProgress from 'cli-progress';
import { Tensor, tensor, defaultGenerator, manualSeed, synchronize } from '../tensor';
import { noGrad } from '../autograd/engine';
import * as F from '../nn/functional';
import { Module, checkpointModules } from '../nn';
import { optimize as optimizeForInference } from '../nn/inference';
import { Optimizer, SGD, Adam, AdamW, clipGradNorm } from '../nn/optim';
import { LRScheduler, PolyLR, CosineLR, WarmupLR, ReduceLROnPlateau } from '../nn/schedulers';
import { recoverTransactions, writeFileAtomic } from '../io/atomic';
import { DataLoader, Dataset, SampleCache, MetricAccumulator, MetricSummary, MultiClassMetricAccumulator, Rng, argmaxClasses, multiClassRecord, oneHot, openDataset, generateSyntheticDataset, readClassMask, readImage, readMask } from '../data';
import { TrainConfig, resolveConfig, deepSupervisionWeightsFor } from './config';
import { createModel, withImageSize } from './models';
import { upkern } from '../models/upkern';
import { loadPth } from '../nn/pth';
import { loadSafetensors } from '../nn/safetensors';
import { ModelMeta, TrainState, checkpointPaths, loadTrainState, resolveStateFile, saveCheckpoint, loadModelFile } from './checkpoint';
import { plotCurves, overlay, overlayClasses } from './plot';
import { UserError, makeOutputFolder } from './errors';
import { buildLoss, defaultLossTerms, deepSupervisionLoss, formatLossTerms, parseLossSpec } from './losses';

export type Task = 'segmentation' | 'autoencoder';

export interface EpochRecord {
  epoch: number;
  lr: number;
  train_loss: number;
  val_loss: number;
  [metric: string]: number;
}

export interface FitOptions extends Partial<TrainConfig> {
  /** Called after each epoch (after the checkpoints are written); return 'stop' to end training there. */
  onEpochEnd?: (rec: EpochRecord) => 'stop' | void;
  /** Where summary lines go (default console.log). */
  log?: (line: string) => void;
  /** 'segmentation' (default) or 'autoencoder' (denoising pretraining, MSE). */
  task?: Task;
  /** Autoencoder input noise std (default 0.1). */
  noiseStd?: number;
}

export interface FitResult {
  outDir: string;
  /** Metrics of the best epoch (1-based epoch number). */
  best: { epoch: number; metric: number; metrics: Record<string, number> | null };
  history: EpochRecord[];
  epochsRun: number;
  stoppedEarly: boolean;
  checkpoint: string;
  config: TrainConfig;
}


/** Keys of TrainConfig a resumed run may change (everything else comes from the checkpoint). */
const RESUME_OVERRIDABLE = ['epochs', 'earlyStop', 'timeLimit', 'workers', 'progress', 'verbose', 'overlays', 'hd95', 'device'] as const;

/**
 * The built-in synthetic dataset in `dir`, generated unless its marker says it is there already.
 * classes >= 2: the multi-class variant (class-index masks, see generateSyntheticDataset).
 */
export async function ensureSyntheticData(dir: string, count: number, size: number, classes = 1): Promise<string> {
  const marker = path.join(dir, '.complete');
  // The binary marker keeps its old form, so existing binary sets are reused.
  const want = classes >= 2 ? `${count}x${size}x${classes}classes` : `${count}x${size}`;
  if (fs.existsSync(marker) && fs.readFileSync(marker, 'utf8').trim() === want) return dir;
  // Generate into a temporary sibling and rename, so an interrupted run never leaves half a dataset.
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  await generateSyntheticDataset(tmp, { count, size, seed: 2024, ...(classes >= 2 ? { classes } : {}) });
  fs.writeFileSync(path.join(tmp, '.complete'), want + '\n');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  fs.renameSync(tmp, dir);
  return dir;
}

export async function openTrainingData(cfg: TrainConfig): Promise<Dataset> {
  let root = cfg.data;
  if (root === undefined) {
    const dir = cfg.syntheticDir ?? path.join(cfg.out, 'data');
    root = await ensureSyntheticData(dir, cfg.syntheticCount, Math.max(cfg.size, 32), cfg.classes);
  }
  return openDataset(root, { fold: cfg.fold, val: 0.2, seed: 0, trainList: cfg.trainList, valList: cfg.valList });
}

function makeOptimizer(cfg: TrainConfig, params: Tensor[]): Optimizer {
  if (cfg.optimizer === 'sgd') return new SGD(params, { lr: cfg.lr, momentum: cfg.momentum, nesterov: cfg.nesterov, weightDecay: cfg.weightDecay });
  if (cfg.optimizer === 'adam') return new Adam(params, { lr: cfg.lr, weightDecay: cfg.weightDecay });
  return new AdamW(params, { lr: cfg.lr, weightDecay: cfg.weightDecay });
}

interface Schedule {
  perIter: LRScheduler | null;
  /** Step perIter only while lastStep < this (warm-up before a plateau schedule). */
  perIterLimit: number;
  plateau: ReduceLROnPlateau | null;
  /** Plateau steps only from this epoch on (after warm-up). */
  plateauFrom: number;
}

function makeSchedule(cfg: TrainConfig, opt: Optimizer, itersPerEpoch: number): Schedule {
  const total = cfg.epochs * itersPerEpoch;
  const [warmPart, mainPart] = cfg.schedule.startsWith('warmup') ? ['warmup', cfg.schedule.split('+')[1] ?? 'constant'] : ['', cfg.schedule];
  const warm = warmPart ? cfg.warmupEpochs * itersPerEpoch : 0;
  const s: Schedule = { perIter: null, perIterLimit: Infinity, plateau: null, plateauFrom: warmPart ? cfg.warmupEpochs : 0 };
  const rest = Math.max(1, total - warm);
  const polyF = (k: number) => Math.pow(Math.max(0, 1 - k / rest), cfg.polyPower);
  const cosF = (k: number) => 0.5 * (1 + Math.cos(Math.PI * Math.min(1, k / rest)));
  if (mainPart === 'plateau') s.plateau = new ReduceLROnPlateau(opt, { mode: 'max', factor: cfg.plateauFactor, patience: cfg.plateauPatience });
  if (warmPart) {
    const after = mainPart === 'poly' ? polyF : mainPart === 'cosine' ? cosF : undefined;
    s.perIter = new WarmupLR(opt, warm, after);
    if (!after) s.perIterLimit = warm;
  } else if (mainPart === 'poly') s.perIter = new PolyLR(opt, total, cfg.polyPower);
  else if (mainPart === 'cosine') s.perIter = new CosineLR(opt, total);
  return s;
}

/** Per-channel mean/std of the (unaugmented) training images and the background/foreground ratio. */
async function trainingStats(ds: Dataset, cfg: TrainConfig, needNorm: boolean, needPw: boolean, cache: SampleCache): Promise<{ mean: number[]; std: number[]; posWeight: number }> {
  // Fills the training loader's cache: the first epoch then decodes nothing again. Nothing else
  // runs yet, so every core decodes (--workers 0, decoding on the main thread, is kept).
  const workers = cfg.workers === 0 ? 0 : Math.max(cfg.workers, os.availableParallelism());
  const loader = new DataLoader(ds, ds.ids.train, { batchSize: 16, size: [cfg.size, cfg.size], channels: cfg.channels, shuffle: false, workers, augment: null, resizeMasks: cfg.resizeMasks, classes: cfg.classes, cache });
  const C = cfg.channels;
  const s = new Float64Array(C), s2 = new Float64Array(C);
  let n = 0, fg = 0, tot = 0;
  try {
    for await (const b of loader.epoch(0)) {
      const hw = b.height * b.width;
      if (needNorm) for (let k = 0; k < b.size; k++) for (let c = 0; c < C; c++) {
        const off = (k * C + c) * hw;
        for (let i = 0; i < hw; i++) { const v = b.images[off + i]; s[c] += v; s2[c] += v * v; }
      }
      n += b.size * hw;
      if (needPw) for (let i = 0; i < b.masks.length; i++) fg += b.masks[i];
      tot += b.masks.length;
    }
  } finally {
    await loader.close();
  }
  const mean = Array.from(s, (v) => v / n);
  const std = Array.from(s2, (v, c) => Math.max(1e-3, Math.sqrt(Math.max(0, v / n - mean[c] * mean[c]))));
  if (needPw && fg === 0) throw new UserError(`pos-weight auto: the training masks of ${ds.root} have no foreground pixels`);
  return { mean, std, posWeight: needPw ? (tot - fg) / fg : 1 };
}

const fmtTime = (s: number): string => (s >= 60 ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(1)}s`);

/** Flat metric names of a summary (global, and per-image with an _img suffix), as the logs and cv.json use them. */
export function metricRecord(sum: MetricSummary): Record<string, number> {
  const g = sum.global, p = sum.perImage;
  const r: Record<string, number> = {
    dice: g.dice, iou: g.iou, precision: g.precision, recall: g.recall, specificity: g.specificity, accuracy: g.accuracy,
    dice_img: p.dice, iou_img: p.iou, precision_img: p.precision, recall_img: p.recall, specificity_img: p.specificity, accuracy_img: p.accuracy,
  };
  if (Number.isFinite(p.hd95)) r.hd95_img = p.hd95;
  // ASSD / NSD come with HD95 (the same surface distances): pooled and per-image mean.
  if (Number.isFinite(p.assd)) Object.assign(r, { assd: g.assd, nsd: g.nsd, assd_img: p.assd, nsd_img: p.nsd });
  return r;
}

function writeLogs(outDir: string, history: EpochRecord[]): void {
  writeFileAtomic(path.join(outDir, 'log.jsonl'), history.map((r) => JSON.stringify(r)).join('\n') + (history.length ? '\n' : ''));
  const cols = [...new Set(history.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => (v === undefined ? '' : typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(6)) : String(v));
  writeFileAtomic(path.join(outDir, 'log.csv'), [cols.join(','), ...history.map((r) => cols.map((c) => cell(r[c])).join(','))].join('\n') + '\n');
}

/**
 * Loads a pretrained autoencoder checkpoint into the sub-module of `model` whose state-dict keys
 * are exactly the checkpoint's (e.g. nexnet-ssl's autoencoder), and optionally freezes it.
 */
function attachEncoder(model: Module, cfg: TrainConfig, load: boolean, log: (l: string) => void): void {
  if (cfg.encoder === undefined) throw new UserError('--freeze-encoder needs --encoder <checkpoint>');
  const { weights, meta } = loadModelFile(path.resolve(cfg.encoder));
  try {
    const keys = Object.keys(weights).sort().join('\n');
    const target = model.namedModules().find(([name, m]) => name !== '' && Object.keys(m.stateDict()).sort().join('\n') === keys);
    if (!target) throw new UserError(`${cfg.encoder}: no sub-module of ${cfg.model} matches this ${meta.model} checkpoint (${Object.keys(weights).length} tensors)`);
    const [name, sub] = target;
    if (load) sub.loadStateDict(weights);
    const withFreeze = model as unknown as { freezeEncoder?: (f: boolean) => unknown };
    if (typeof withFreeze.freezeEncoder === 'function') withFreeze.freezeEncoder(Boolean(cfg.freezeEncoder));
    else if (cfg.freezeEncoder) sub.requiresGrad_(false);
    if (cfg.verbose && load) log(`loaded pretrained ${meta.model} (epoch ${meta.epoch}) into ${cfg.model}.${name}${cfg.freezeEncoder ? ' (frozen)' : ''}`);
  } finally {
    Object.values(weights).forEach((t) => t.dispose());
  }
}

/** UpKern (src/models/upkern.ts): the weights of a trained small-kernel checkpoint, kernels resampled. */
function initFromSmallerKernels(model: Module, cfg: TrainConfig, log: (l: string) => void): void {
  const { weights, meta } = loadModelFile(path.resolve(cfg.upkern!));
  try {
    const r = upkern(model, weights);
    if (cfg.verbose) log(`upkern: initialised ${cfg.model} from ${meta.model} (epoch ${meta.epoch}): ${r.resampled.length} kernels resampled, ${r.copied.length} tensors copied`);
  } catch (e) {
    throw new UserError(`${cfg.upkern}: ${(e as Error).message}`);
  } finally {
    Object.values(weights).forEach((t) => t.dispose());
  }
}

/**
 * --init-weights: a PyTorch .pth (sc.loadPth, restricted unpickler) or a .safetensors file loaded
 * strictly into the new model, so a mismatch is an error listing the names rather than a run that
 * silently starts from partly random weights.
 */
function initFromWeightsFile(model: Module, cfg: TrainConfig, log: (l: string) => void): void {
  const file = cfg.initWeights!;
  const isSafetensors = /\.safetensors$/i.test(file);
  if (isSafetensors && (cfg.initKey !== undefined || cfg.initStripPrefix !== undefined)) {
    throw new UserError(`${file}: --init-key and --init-strip-prefix apply to PyTorch checkpoints, not to .safetensors files`);
  }
  let weights: Record<string, Tensor>;
  const notes: string[] = [];
  try {
    weights = isSafetensors ? loadSafetensors(file).tensors : loadPth(file, { key: cfg.initKey, stripPrefix: cfg.initStripPrefix, onNote: (n) => notes.push(n) });
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  try {
    model.loadStateDict(weights);
  } catch (e) {
    throw new UserError(`${file}: ${(e as Error).message}${notes.length ? ` (${notes.join('; ')})` : ''}`);
  } finally {
    Object.values(weights).forEach((t) => t.dispose());
  }
  if (cfg.verbose) {
    for (const n of notes) log(`init-weights: ${n}`);
    log(`init-weights: initialised ${cfg.model} from ${file} (${Object.keys(weights).length} tensors)`);
  }
}

/** Adds Gaussian noise (std) to a batch and clamps to [0, 1] (denoising-autoencoder input). */
function noisy(x: Float32Array, std: number, rng: Rng): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.min(1, Math.max(0, x[i] + std * rng.normal()));
  return out;
}

export async function fit(options: FitOptions = {}): Promise<FitResult> {
  const { onEpochEnd, log: logOpt, task: taskOpt, noiseStd: noiseOpt, ...over } = options;
  const log = logOpt ?? ((l: string) => console.log(l));
  // The run folder is locked before anything in it is read, so a resume never races a live run.
  const resumeDir = over.resume === undefined ? null : resumeFolder(over.resume);
  const outDir = path.resolve(over.out ?? resumeDir ?? resolveConfig(over).out);
  makeOutputFolder(outDir);
  const unlock = lockRunFolder(outDir);
  try {
    for (const line of recoverTransactions(outDir, { removeTemporaries: true })) log(`${outDir}: ${line}`);
    let resumed: ReturnType<typeof loadTrainState> | null = null;
    let cfg: TrainConfig;
    if (over.resume !== undefined) {
      const stateFile = resolveStateFile(over.resume);
      resumed = loadTrainState(stateFile);
      const saved = resumed.state.config as unknown as TrainConfig;
      const keep: Partial<TrainConfig> = {};
      for (const k of RESUME_OVERRIDABLE) if (over[k] !== undefined) (keep as Record<string, unknown>)[k] = over[k];
      cfg = resolveConfig({ ...saved, ...keep, out: outDir, resume: over.resume });
    } else {
      cfg = resolveConfig(over);
    }
    const task: Task = taskOpt ?? ((resumed?.state.model.task as Task) || 'segmentation');
    const noiseStd = noiseOpt ?? Number((cfg as unknown as Record<string, unknown>).noiseStd ?? 0.1);
    return await fitLocked(cfg, outDir, resumed, task, noiseStd, log, onEpochEnd);
  } finally {
    unlock();
  }
}

/** The folder a --resume argument (run folder, state .json or weights .safetensors) lives in. */
function resumeFolder(arg: string): string {
  const p = path.resolve(arg);
  if (!fs.existsSync(p)) throw new UserError(`${arg}: no such file or folder`);
  return fs.statSync(p).isDirectory() ? p : path.dirname(p);
}

/**
 * State and start time of a process from /proc (Linux), or null when /proc does not tell (another
 * OS). The start time tells a reused pid from the lock's owner.
 */
function procStat(pid: number): { state: string; start: string } | 'gone' | null {
  if (!fs.existsSync('/proc/self/stat')) return null;
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 'gone';
  }
  // "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: f[0], start: f[19] };
}

/**
 * Whether the process that wrote a lock still runs. A zombie (killed, not yet reaped: in a
 * container without an init it may never be) or a process that reuses the pid does not hold it.
 */
function lockHolderAlive(pid: number, start: string | undefined): boolean {
  const st = procStat(pid);
  if (st === 'gone') return false;
  if (st) return st.state !== 'Z' && st.state !== 'X' && (start === undefined || st.start === start);
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One training per run folder: `<out>/.lock` holds the owner's pid and start time. A lock whose
 * process is gone (a crash, a kill, a zombie) is taken over; a live one is an error, so two runs
 * never mix checkpoints.
 */
function lockRunFolder(outDir: string): () => void {
  const lock = path.join(outDir, '.lock');
  const self = procStat(process.pid);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lock, `${process.pid}${self && self !== 'gone' ? ` ${self.start}` : ''}\n`, { flag: 'wx' });
      return () => fs.rmSync(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const [pidText, start] = fs.readFileSync(lock, 'utf8').trim().split(/\s+/);
      const pid = Number(pidText);
      const alive = Number.isInteger(pid) && pid > 0 && pid !== process.pid && lockHolderAlive(pid, start);
      if (alive) throw new UserError(`${outDir}: another training (pid ${pid}) is using this run folder`);
      fs.rmSync(lock, { force: true });
    }
  }
  throw new UserError(`${outDir}: cannot lock the run folder`);
}

async function fitLocked(
  cfg: TrainConfig, outDir: string, resumed: ReturnType<typeof loadTrainState> | null, task: Task, noiseStd: number,
  log: (l: string) => void, onEpochEnd: FitOptions['onEpochEnd'],
): Promise<FitResult> {

  const ds = await openTrainingData(cfg);
  const size: [number, number] = [cfg.size, cfg.size];

  // Model: seeded initialisation.
  manualSeed(cfg.seed);
  const modelOptions: Record<string, unknown> = withImageSize(cfg.model, { inChannels: cfg.channels, ...cfg.modelOptions }, cfg.size);
  // nexnet-ssl freezes its autoencoder by default; here freezing is opt-in (--freeze-encoder).
  if (cfg.model === 'nexnet-ssl' && modelOptions.freezeEncoder === undefined) modelOptions.freezeEncoder = Boolean(cfg.freezeEncoder);
  // In the checkpoints' modelOptions too, so evaluate / predict rebuild the extra heads.
  if (cfg.deepSupervision) modelOptions.deepSupervision = true;
  // One output channel per class (only set for classes >= 2, so binary checkpoints stay as they were).
  const classes = task === 'segmentation' ? cfg.classes : 1;
  if (classes >= 2) modelOptions.numClasses = classes;
  const model = createModel(cfg.model, modelOptions);
  if (cfg.encoder !== undefined) attachEncoder(model, cfg, !resumed, log);
  else if (cfg.freezeEncoder && cfg.model !== 'nexnet-ssl') throw new UserError('--freeze-encoder needs --encoder <checkpoint>');
  if (cfg.upkern !== undefined && !resumed) initFromSmallerKernels(model, cfg, log);
  if (cfg.initWeights !== undefined && !resumed) initFromWeightsFile(model, cfg, log);
  if (cfg.device !== 'cpu') model.to(cfg.device);
  if (cfg.activationCheckpointing) log(`activation checkpointing: ${checkpointModules(model).join(', ')}`);
  const params = model.parameters().filter((p) => p.requiresGrad);
  if (params.length === 0) throw new UserError(`model '${cfg.model}' has no trainable parameters`);

  // Normalisation and pos_weight: computed once from the training set, then kept in the state.
  let normalize: { mean: number[]; std: number[] } | null = null;
  let posWeight: number | undefined = typeof cfg.posWeight === 'number' ? cfg.posWeight : undefined;
  const trainCache = new SampleCache();
  if (resumed) {
    normalize = resumed.state.model.normalize;
    posWeight = resumed.state.posWeight ?? undefined;
  } else {
    const needNorm = cfg.normalize === 'dataset' && task === 'segmentation';
    // pos_weight is a binary BCE weight: not computed for multi-class runs.
    const needPw = cfg.posWeight === 'auto' && task === 'segmentation' && classes < 2;
    if (typeof cfg.normalize === 'object') normalize = cfg.normalize;
    if (needNorm || needPw) {
      const st = await trainingStats(ds, cfg, needNorm, needPw, trainCache);
      if (needNorm) normalize = { mean: st.mean, std: st.std };
      if (needPw) posWeight = st.posWeight;
    }
  }

  const trainLoader = new DataLoader(ds, ds.ids.train, {
    batchSize: cfg.batch, size, channels: cfg.channels, shuffle: true, seed: cfg.seed, augment: cfg.augment,
    normalize: normalize ?? undefined, workers: cfg.workers, cache: trainCache, dropLast: ds.ids.train.length > cfg.batch, resizeMasks: cfg.resizeMasks, classes,
  });
  const valLoader = new DataLoader(ds, ds.ids.val, {
    batchSize: cfg.batch, size, channels: cfg.channels, shuffle: false, augment: null, normalize: normalize ?? undefined, workers: cfg.workers, cache: true, resizeMasks: cfg.resizeMasks, classes,
  });
  const nb = trainLoader.numBatches;
  const optimizer = makeOptimizer(cfg, params);
  const sched = makeSchedule(cfg, optimizer, nb);
  const dataRng = new Rng(cfg.seed ^ 0x5ca1);

  let startEpoch = 0;
  let history: EpochRecord[] = [];
  let best: TrainState['best'] = { metric: -Infinity, epoch: 0, metrics: null };
  let badEpochs = 0;
  let elapsedMs = 0;
  if (resumed) {
    const st = resumed.state;
    model.loadStateDict(resumed.weights);
    Object.values(resumed.weights).forEach((t) => t.dispose());
    if (sched.perIter && st.scheduler) sched.perIter.loadStateDict(st.scheduler);
    if (sched.plateau && st.plateau) sched.plateau.loadStateDict({ ...st.plateau, best: st.plateau.best ?? -Infinity });
    optimizer.loadStateDict({ tensors: resumed.optim, meta: st.optimizer });
    Object.values(resumed.optim).forEach((t) => t.dispose());
    defaultGenerator.setState(st.generator.map((v) => (v === null ? NaN : v)));
    dataRng.setState(st.rng);
    startEpoch = st.epoch;
    history = st.history as EpochRecord[];
    best = { ...st.best, metric: st.best.metric ?? -Infinity };
    badEpochs = st.badEpochs;
    elapsedMs = st.elapsedMs;
    if (cfg.verbose) log(`resuming ${path.relative(process.cwd(), outDir) || '.'} at epoch ${startEpoch + 1}/${cfg.epochs}`);
  }

  const lossTerms = cfg.loss !== undefined ? parseLossSpec(cfg.loss) : defaultLossTerms(cfg.bceWeight, cfg.diceWeight, classes);
  const segLoss = task === 'segmentation' ? buildLoss(lossTerms, classes >= 2 ? { classes } : { posWeight }) : F.mseLoss;
  const showBar = cfg.progress ?? Boolean(process.stderr.isTTY);
  if (cfg.verbose && !resumed) {
    const pw = posWeight !== undefined ? `, pos_weight ${posWeight.toFixed(2)}` : '';
    log(`${task === 'autoencoder' ? 'pretraining' : 'training'} ${cfg.model} (${(model.numParameters() / 1e6).toFixed(3)} M params) on ${ds.root}${ds.fold ? ` fold ${ds.fold}` : ''}${ds.listFiles ? ` (lists ${Object.values(ds.listFiles).map((f) => path.basename(f)).join(', ')})` : ''}: ` +
      `${ds.ids.train.length} train / ${ds.ids.val.length} val images at ${cfg.size}px${classes >= 2 ? `, ${classes} classes` : ''}, batch ${cfg.batch}, ${cfg.optimizer} lr ${cfg.lr}, ${cfg.schedule}${task === 'segmentation' ? `, loss ${formatLossTerms(lossTerms)}` : ''}${pw}; out ${outDir}`);
  }

  const lossOf = (out: Tensor, y: Tensor): Tensor => (task === 'autoencoder' ? F.mseLoss(out, y) : segLoss(out, y));
  // Deep supervision: every head's loss, weighted per model (deepSupervisionWeightsFor), each
  // against the target at the head's size; validation uses forward().
  const heads = (model as Partial<{ forwardAll(x: Tensor): Tensor[] }>).forwardAll?.bind(model);
  if (cfg.deepSupervision && !heads) throw new UserError(`--deep-supervision: model '${cfg.model}' has no forwardAll`);
  let dsWeights: number[] | null = null;
  const trainLossOf = (x: Tensor, y: Tensor): Tensor => {
    if (!cfg.deepSupervision) return lossOf(model.forward(x) as Tensor, y);
    const outs = heads!(x);
    dsWeights ??= deepSupervisionWeightsFor(cfg.model, outs.length);
    return deepSupervisionLoss(outs, y, lossOf, dsWeights);
  };
  if (cfg.deepSupervision && cfg.verbose) {
    log(`deep supervision: ${cfg.model.startsWith('mednext-') ? "heads at 1, 1/2, 1/4, 1/8, 1/16 resolution weighted 8/15, 4/15, 2/15, 1/15, 0 (nnU-Net's 1/2^i, lowest zeroed), targets downsampled by nearest sampling; validation uses the full-resolution head"
      : "heads X0,1..X0,4 weighted 1/15, 2/15, 4/15, 8/15; validation uses the mean of the heads' logits"}`);
  }
  const inputsOf = (b: { images: Float32Array; masks: Float32Array; size: number; channels: number; height: number; width: number }): [Tensor, Tensor] => {
    const shape = [b.size, b.channels, b.height, b.width];
    const dev = { device: cfg.device };
    if (task === 'autoencoder') return [tensor(noisy(b.images, noiseStd, dataRng), shape, dev), tensor(b.images, shape, dev)];
    // Multi-class losses take one-hot targets [B, classes, H, W] of the class-index masks.
    if (classes >= 2) return [tensor(b.images, shape, dev), tensor(oneHot(b.masks, b.size, classes, b.height, b.width), [b.size, classes, b.height, b.width], dev)];
    return [tensor(b.images, shape, dev), tensor(b.masks, [b.size, 1, b.height, b.width], dev)];
  };

  const paths = { best: checkpointPaths(outDir, 'best'), last: checkpointPaths(outDir, 'last') };
  const baseMeta = (epoch: number, tag: string, metrics?: Record<string, number>): ModelMeta => ({
    model: cfg.model, modelOptions, size: cfg.size, channels: cfg.channels, normalize, epoch, metrics, task, tag, ...(classes >= 2 ? { classes } : {}),
  });

  let stoppedEarly = false;
  let epoch = startEpoch;
  try {
    for (; epoch < cfg.epochs; epoch++) {
      // ---- train ----
      model.train();
      const t0 = performance.now();
      const wait0 = trainLoader.waitMs;
      const lrUsed = optimizer.lr;
      let lossSum = 0, seen = 0;
      const bar = showBar
        ? new cliProgress.SingleBar({
          format: `epoch ${epoch + 1}/${cfg.epochs} |{bar}| {value}/{total} | {ips} img/s | loss {loss} | ETA {eta_formatted}`,
          stream: process.stderr, hideCursor: false, clearOnComplete: true, etaBuffer: 20,
        }, cliProgress.Presets.shades_classic)
        : null;
      bar?.start(nb, 0, { ips: '-', loss: '-' });
      for await (const b of trainLoader.epoch(epoch)) {
        const [x, y] = inputsOf(b);
        let lv = NaN;
        try {
          optimizer.zeroGrad();
          tidy(() => {
            const loss = trainLossOf(x, y);
            lv = loss.item();
            // Nothing here reads an activation after backward: free each once it is used.
            loss.backward(null, { freeActivations: true });
          });
        } finally {
          x.dispose();
          y.dispose();
        }
        if (!Number.isFinite(lv)) throw new UserError(`training diverged: loss is ${lv} at epoch ${epoch + 1}, batch ${b.index + 1} (try a lower --lr or --clip)`);
        if (cfg.clip > 0) clipGradNorm(params, cfg.clip);
        optimizer.step();
        // Run this step's queued kernels now: the next batch may still be loading, and waiting
        // for it with the step's tail still queued would leave the cores idle meanwhile.
        synchronize();
        if (sched.perIter && sched.perIter.lastStep < sched.perIterLimit) sched.perIter.step();
        lossSum += lv * b.size;
        seen += b.size;
        const el = (performance.now() - t0) / 1000;
        bar?.update(b.index + 1, { ips: (seen / el).toFixed(1), loss: (lossSum / seen).toFixed(4) });
      }
      bar?.stop();
      const trainS = (performance.now() - t0) / 1000;
      const waitShare = (trainLoader.waitMs - wait0) / 1000 / trainS;

      // ---- validate ----
      const v0 = performance.now();
      // Fused conv -> BN -> activation for the validation forwards (model.train() drops the plan).
      optimizeForInference(model, [1, cfg.channels, cfg.size, cfg.size]);
      const acc = new MetricAccumulator({ logits: true, hd95: cfg.hd95 });
      const mcAcc = classes >= 2 ? new MultiClassMetricAccumulator(classes, { surface: cfg.hd95 }) : null;
      let vLoss = 0, vSeen = 0;
      for await (const b of valLoader.epoch(0)) {
        const [x, y] = inputsOf(b);
        try {
          noGrad(() => tidy(() => {
            const out = model.forward(x) as Tensor;
            vLoss += lossOf(out, y).item() * b.size;
            if (mcAcc) mcAcc.add(argmaxClasses(out.toArray() as Float32Array, b.size, classes, b.height, b.width), b.masks, b.size, b.height, b.width);
            else if (task === 'segmentation') acc.add(out.toArray() as Float32Array, b.masks, b.size, b.height, b.width);
          }));
        } finally {
          x.dispose();
          y.dispose();
        }
        vSeen += b.size;
      }
      model.train();
      const valS = (performance.now() - v0) / 1000;
      // Multi-class: dice / iou are the means over the foreground classes (so the best checkpoint is chosen by them), per class in dice_c<k> etc.
      const metrics: Record<string, number> = mcAcc ? multiClassRecord(mcAcc.summary()) : task === 'segmentation' ? metricRecord(acc.summary()) : { mse: vLoss / vSeen };
      const monitor = task === 'segmentation' ? metrics.dice : -metrics.mse;
      const rec: EpochRecord = {
        epoch: epoch + 1, lr: lrUsed, train_loss: lossSum / seen, val_loss: vLoss / vSeen, ...metrics,
        train_s: trainS, val_s: valS, img_s: seen / trainS, data_wait: waitShare,
      };
      history.push(rec);
      elapsedMs += (trainS + valS) * 1000;

      if (sched.plateau && epoch + 1 > sched.plateauFrom) sched.plateau.step(monitor);
      const improved = monitor > best.metric;
      if (improved) {
        best = { metric: monitor, epoch: epoch + 1, metrics };
        badEpochs = 0;
      } else badEpochs++;
      const stopNow = cfg.earlyStop > 0 && badEpochs >= cfg.earlyStop;

      // ---- checkpoints (best first, then last), logs, plot ----
      const tag = `${epoch + 1}-${Math.floor(Math.random() * 0xffffffff).toString(16)}`;
      const osd = optimizer.stateDict();
      const state: TrainState = {
        format: 'scalpel-train-state', version: 1, tag, epoch: epoch + 1,
        config: { ...cfg, resume: undefined } as unknown as Record<string, unknown>,
        model: baseMeta(epoch + 1, tag, metrics), optimizer: osd.meta,
        scheduler: sched.perIter ? sched.perIter.stateDict() : null,
        plateau: sched.plateau ? sched.plateau.stateDict() : null,
        generator: defaultGenerator.getState().map((v) => (Number.isNaN(v) ? null : v)),
        rng: dataRng.getState(), best, badEpochs, history, posWeight: posWeight ?? null, elapsedMs,
      };
      if (improved) saveCheckpoint(outDir, 'best', model, osd.tensors, state);
      saveCheckpoint(outDir, 'last', model, osd.tensors, state);
      writeLogs(outDir, history);
      if (task === 'segmentation') {
        await plotCurves(path.join(outDir, 'curves.png'), {
          trainLoss: history.map((r) => r.train_loss), valLoss: history.map((r) => r.val_loss),
          dice: history.map((r) => r.dice), diceImg: history.map((r) => r.dice_img), lr: history.map((r) => r.lr),
        });
      }

      if (cfg.verbose) {
        const perClass = classes >= 2 ? ` [${Array.from({ length: classes - 1 }, (_, k) => `c${k + 1} ${metrics[`dice_c${k + 1}`].toFixed(4)}`).join(', ')}]` : '';
        const m = task === 'segmentation'
          ? `val ${classes >= 2 ? 'mean ' : ''}dice ${metrics.dice.toFixed(4)}${perClass} (per-image ${metrics.dice_img.toFixed(4)}) iou ${metrics.iou.toFixed(4)}`
          : `val mse ${metrics.mse.toExponential(3)}`;
        log(`epoch ${String(epoch + 1).padStart(String(cfg.epochs).length)}/${cfg.epochs}  loss ${rec.train_loss.toFixed(4)}  val loss ${rec.val_loss.toFixed(4)}  ${m}  lr ${lrUsed.toExponential(2)}  ` +
          `${fmtTime(trainS)} (${rec.img_s.toFixed(1)} img/s, data wait ${(waitShare * 100).toFixed(1)}%) + val ${fmtTime(valS)}${improved ? '  * best' : ''}`);
      }
      if (stopNow) {
        stoppedEarly = true;
        if (cfg.verbose) log(`early stopping: no improvement for ${badEpochs} epochs (best epoch ${best.epoch})`);
        epoch++;
        break;
      }
      const meanEpochMs = elapsedMs / history.length;
      if (cfg.timeLimit > 0 && epoch + 1 < cfg.epochs && elapsedMs + meanEpochMs > cfg.timeLimit * 60000) {
        if (cfg.verbose) log(`time limit: ${fmtTime(elapsedMs / 1000)} used of ${cfg.timeLimit} min; another epoch (about ${fmtTime(meanEpochMs / 1000)}) would not fit, stopping after epoch ${epoch + 1}`);
        stoppedEarly = true;
        epoch++;
        break;
      }
      if (onEpochEnd?.(rec) === 'stop') {
        epoch++;
        break;
      }
    }
  } finally {
    await trainLoader.close();
    await valLoader.close();
  }

  // Prediction overlays of a few validation images with the best weights.
  if (task === 'segmentation' && cfg.overlays > 0 && fs.existsSync(paths.best.model)) {
    await writeOverlays(model, paths.best.model, ds, cfg, normalize, path.join(outDir, 'overlays'), classes);
  }
  optimizer.dispose();
  model.dispose();
  if (cfg.verbose) {
    const b = best.metrics;
    log(b && task === 'segmentation'
      ? `best epoch ${best.epoch}: val dice ${b.dice.toFixed(4)} iou ${b.iou.toFixed(4)} (per-image dice ${b.dice_img.toFixed(4)}); checkpoint ${paths.best.model}`
      : `best epoch ${best.epoch}; checkpoint ${paths.best.model}`);
  }
  return { outDir, best, history, epochsRun: epoch - startEpoch, stoppedEarly, checkpoint: paths.best.model, config: cfg };
}

async function writeOverlays(model: Module, bestFile: string, ds: Dataset, cfg: TrainConfig, normalize: { mean: number[]; std: number[] } | null, dir: string, classes: number): Promise<void> {
  const { weights } = loadModelFile(bestFile);
  model.loadStateDict(weights);
  Object.values(weights).forEach((t) => t.dispose());
  optimizeForInference(model, [1, cfg.channels, cfg.size, cfg.size]);
  makeOutputFolder(dir);
  for (const id of ds.ids.val.slice(0, cfg.overlays)) {
    const img = await readImage(ds.imagePath(id), { channels: cfg.channels, size: [cfg.size, cfg.size] });
    if (classes >= 2) {
      const truth = (await readClassMask(ds.maskPath(id), classes, [cfg.size, cfg.size])).data;
      const pred = predictMask(model, img.data, cfg.channels, cfg.size, cfg.size, normalize, classes);
      await overlayClasses(img.data, cfg.channels, cfg.size, cfg.size, pred, truth).save(path.join(dir, `${id}.png`));
      continue;
    }
    const truth = await readMask(ds.maskPath(id), [cfg.size, cfg.size]);
    const pred = predictMask(model, img.data, cfg.channels, cfg.size, cfg.size, normalize);
    await overlay(img.data, cfg.channels, cfg.size, cfg.size, pred, truth).save(path.join(dir, `${id}.png`));
  }
}

/**
 * Runs the model on one CHW image (0..1, already at the model's size); returns the 0/1 mask
 * (logit > 0), or with classes >= 2 the class-index map (argmax over the output channels).
 */
export function predictMask(model: Module, image: Float32Array, channels: number, h: number, w: number, normalize: { mean: number[]; std: number[] } | null, classes = 1): Uint8Array {
  const x = new Float32Array(image);
  if (normalize) {
    const n = h * w;
    for (let c = 0; c < channels; c++) for (let i = 0; i < n; i++) x[c * n + i] = (x[c * n + i] - normalize.mean[c]) / normalize.std[c];
  }
  const device = model.parameters()[0]?.device ?? 'cpu';
  const logits = noGrad(() => tidy(() => (model.forward(tensor(x, [1, channels, h, w], { device })) as Tensor).toArray() as Float32Array));
  if (classes >= 2) return argmaxClasses(logits, 1, classes, h, w);
  const out = new Uint8Array(h * w);
  for (let i = 0; i < out.length; i++) out[i] = logits[i] > 0 ? 1 : 0;
  return out;
}
