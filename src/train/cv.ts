/**
 * k-fold cross-validation in one call: the folds come from the dataset's fold CSV when it has one
 * with that many folds (BUS-BRA's 5-fold-cv.csv / 10-fold-cv.csv: fold k trains on its train
 * rows, selects the checkpoint on its val rows and is held out on its test rows), or are generated
 * from a seed (the labelled ids shuffled and dealt round-robin into K parts; fold k holds out part
 * k and trains on the others, minus a seeded validation share for checkpoint selection).
 *
 * Each fold's split is written as list files into `<out>/fold-<k>/` (train.txt, val.txt,
 * heldout.txt), trained there with fit() reading those lists, and its best checkpoint evaluated
 * on its held-out part. `<out>/cv.json` and `<out>/cv.md` hold the per-fold metrics and the mean
 * and sample standard deviation (n - 1) of each over the folds. With `ensemble`, the fold models'
 * averaged probabilities are evaluated on the dataset's test split when it has one (each fold
 * model alone too, for comparison).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Dataset, Rng, mixSeed, multiClassRecord, openDataset, readFoldCsv, PostSpec, formatPostSpec, parsePostSpec } from '../data';
import { writeFileAtomic } from '../io/atomic';
import { TrainConfig, resolveConfig } from './config';
import { fit, FitOptions, metricRecord, ensureSyntheticData } from './fit';
import { evaluate, EvaluateResult } from './evaluate';
import { UserError, makeOutputFolder } from './errors';
import { TtaMode, parseTtaMode } from './tta';

export interface CrossValidateOptions {
  /** Number of folds, at least 2 (default 5). */
  folds?: number;
  /** Seed of the generated folds (default: the training seed). Unused with a fold CSV. */
  foldSeed?: number;
  /** Validation share of each generated fold's training part, for checkpoint selection (default 0.2). */
  valFraction?: number;
  /**
   * 'auto' (default): the fold CSV when the dataset has one with `folds` folds, else generated;
   * 'generated': generated even when a fold CSV exists; 'csv': the fold CSV or an error.
   */
  source?: 'auto' | 'generated' | 'csv';
  /** Test list file (relative to the data folder) for the ensemble, when the dataset's own split files have no test split. */
  testList?: string;
  /** Evaluate the average of the fold models on the test split (when there is one). */
  ensemble?: boolean;
  /** Test-time augmentation and post-processing of the held-out and ensemble evaluations. */
  tta?: TtaMode;
  post?: string | PostSpec;
  /** HD95 in the held-out evaluations (default true). */
  hd95?: boolean;
  /** Where progress lines go (default console.log; the folds' training lines too). */
  log?: (line: string) => void;
}

/** The metrics tabulated in cv.md (cv.json holds every metric of the evaluation). */
export const CV_TABLE_METRICS = ['dice', 'iou', 'precision', 'recall', 'dice_img', 'iou_img', 'hd95_img'] as const;

export interface FoldResult {
  fold: number;
  dir: string;
  counts: { train: number; val: number; heldOut: number };
  checkpoint: string;
  bestEpoch: number;
  metrics: Record<string, number>;
}

export interface MeanStd {
  mean: number;
  /** Sample standard deviation (n - 1 in the denominator) over the folds. */
  std: number;
}

export interface CrossValidateResult {
  outDir: string;
  folds: FoldResult[];
  source: { kind: 'fold-csv'; file: string } | { kind: 'generated'; seed: number; valFraction: number };
  /** Mean and sample std over the folds of each metric of the held-out evaluations. */
  summary: Record<string, MeanStd>;
  ensemble: null | { test: number; metrics: Record<string, number>; members: Record<string, MeanStd>; memberMetrics: Record<string, number>[] } | { skipped: string };
  json: string;
  markdown: string;
}

/** The flat metrics of an evaluation (binary: metricRecord; multi-class: the per-class record, dice = mean over the foreground classes). */
function evaluationRecord(r: EvaluateResult): Record<string, number> {
  return r.classSummary ? multiClassRecord(r.classSummary) : metricRecord(r.summary);
}

/** Mean and sample standard deviation (n - 1; 0 for one value) of each key present in every record. */
export function meanStd(records: Record<string, number>[]): Record<string, MeanStd> {
  const out: Record<string, MeanStd> = {};
  if (records.length === 0) return out;
  for (const k of Object.keys(records[0])) {
    const xs = records.map((r) => r[k]);
    if (!xs.every((x) => typeof x === 'number' && Number.isFinite(x))) continue;
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const ss = xs.reduce((a, b) => a + (b - mean) * (b - mean), 0);
    out[k] = { mean, std: xs.length > 1 ? Math.sqrt(ss / (xs.length - 1)) : 0 };
  }
  return out;
}

interface FoldSplit {
  train: string[];
  val: string[];
  heldOut: string[];
}

/** The folds from a fold CSV with exactly `k` folds in the root, or null when there is none. */
function csvFolds(root: string, k: number, source: CrossValidateOptions['source']): { file: string; folds: FoldSplit[] } | null {
  if (source === 'generated') return null;
  const candidates = fs.readdirSync(root).filter((f) => /^\d+-fold-cv\.csv$/.test(f)).sort();
  const want = `${k}-fold-cv.csv`;
  if (!candidates.includes(want)) {
    if (source === 'csv') throw new UserError(`${root}: no ${want} (found ${candidates.length ? candidates.join(', ') : 'no fold CSV'}); pass --folds to match one, or generated folds`);
    return null;
  }
  const file = path.join(root, want);
  const folds: FoldSplit[] = [];
  for (let f = 1; f <= k; f++) {
    const s = readFoldCsv(file, f);
    if (s.folds !== k) throw new UserError(`${file}: has ${s.folds} folds, expected ${k} from its name`);
    folds.push({ train: s.train, val: s.val, heldOut: s.test });
  }
  return { file, folds };
}

/** Seeded folds: ids sorted, shuffled, dealt round-robin; each fold's training part loses a seeded validation share. */
export function generateFolds(ids: readonly string[], k: number, seed: number, valFraction = 0.2): FoldSplit[] {
  if (!(Number.isInteger(k) && k >= 2)) throw new UserError(`--folds must be an integer of at least 2, got ${k}`);
  if (!(valFraction > 0 && valFraction < 1)) throw new UserError(`cross-validation val fraction must be in (0, 1), got ${valFraction}`);
  if (ids.length < 2 * k) throw new UserError(`${k} folds need at least ${2 * k} labelled images (each held-out part and each training part non-empty, with a validation share), got ${ids.length}`);
  const order = new Rng(seed).shuffle([...ids].sort());
  const parts: string[][] = Array.from({ length: k }, () => []);
  order.forEach((id, i) => parts[i % k].push(id));
  return parts.map((heldOut, f) => {
    const rest = new Rng(mixSeed(seed, f + 1)).shuffle(parts.filter((_, j) => j !== f).flat().sort());
    const nVal = Math.min(rest.length - 1, Math.max(1, Math.round(rest.length * valFraction)));
    return { train: rest.slice(nVal).sort(), val: rest.slice(0, nVal).sort(), heldOut: [...heldOut].sort() };
  });
}

const fmt = (v: number | undefined, digits = 4): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const perClassDice = (m: Record<string, number>, classes: number): string => Array.from({ length: classes - 1 }, (_, k) => `c${k + 1} ${fmt(m[`dice_c${k + 1}`])}`).join(', ');
const METRIC_TITLES: Record<string, string> = {
  dice: 'Dice', iou: 'IoU', precision: 'precision', recall: 'recall', dice_img: 'Dice (per image)', iou_img: 'IoU (per image)', hd95_img: 'HD95 px (per image)',
};

function markdownReport(r: Omit<CrossValidateResult, 'json' | 'markdown'>, cfg: TrainConfig, data: string, extras: { tta: TtaMode; post: string }): string {
  // Multi-class runs add each foreground class's pooled Dice (dice = their mean, precision / recall are binary only).
  const perClass = cfg.classes >= 2 ? Array.from({ length: cfg.classes - 1 }, (_, k) => `dice_c${k + 1}`) : [];
  const cols = [...CV_TABLE_METRICS, ...perClass].filter((m) => r.folds.some((f) => m in f.metrics));
  const head = `| fold | train / val / held out | ${cols.map((c) => METRIC_TITLES[c] ?? c).join(' | ')} |`;
  const sep = `|---|---|${cols.map(() => '---:').join('|')}|`;
  const rows = r.folds.map((f) => `| ${f.fold} | ${f.counts.train} / ${f.counts.val} / ${f.counts.heldOut} | ${cols.map((c) => fmt(f.metrics[c], c === 'hd95_img' ? 2 : 4)).join(' | ')} |`);
  const ms = (s: Record<string, MeanStd>, c: string) => (s[c] ? `${fmt(s[c].mean, c === 'hd95_img' ? 2 : 4)} ± ${fmt(s[c].std, c === 'hd95_img' ? 2 : 4)}` : '-');
  const meanRow = `| **mean ± std** | | ${cols.map((c) => ms(r.summary, c)).join(' | ')} |`;
  const src = r.source.kind === 'fold-csv' ? `the fold CSV ${path.basename(r.source.file)}` : `generated folds (seed ${r.source.seed}, validation share ${r.source.valFraction} of each training part)`;
  const lines = [
    `# ${r.folds.length}-fold cross-validation: ${cfg.model}`,
    '',
    `Data ${data}, ${src}; ${cfg.epochs} epochs at ${cfg.size} px per fold, best checkpoint by validation Dice, evaluated on the held-out part ${cfg.classes >= 2 ? `(${cfg.classes} classes, argmax; Dice and IoU are means over the foreground classes)` : 'at threshold 0.5'}` +
      `${extras.tta !== 'none' ? `, TTA ${extras.tta}` : ''}${extras.post ? `, post-processing ${extras.post}` : ''}. ` +
      'Dice, IoU, precision and recall are global (pixels pooled over the held-out images); "per image" columns are means over the images.',
    '',
    head, sep, ...rows, meanRow,
    '',
    `std is the sample standard deviation over the ${r.folds.length} folds (n - 1 in the denominator).`,
  ];
  const e = r.ensemble;
  if (e && 'skipped' in e) lines.push('', `Ensemble: not evaluated (${e.skipped}).`);
  else if (e) {
    lines.push('', `## Ensemble of the ${r.folds.length} fold models on the test split (${e.test} images)`, '',
      `| model | ${cols.map((c) => METRIC_TITLES[c] ?? c).join(' | ')} |`, `|---|${cols.map(() => '---:').join('|')}|`,
      `| ensemble (mean probability) | ${cols.map((c) => fmt(e.metrics[c], c === 'hd95_img' ? 2 : 4)).join(' | ')} |`,
      `| single fold models, mean ± std | ${cols.map((c) => ms(e.members, c)).join(' | ')} |`);
  }
  return lines.join('\n') + '\n';
}

/** The labelled ids to fold, and the test ids kept out of every fold (from split files or a test list). */
function poolOf(ds: Dataset): { pool: string[]; test: string[] } {
  const test = ds.ids.test ?? [];
  if (ds.splitSource === 'generated') return { pool: [...ds.allIds], test: [] };
  // A test list alone: every other labelled image is folded.
  if (ds.splitSource === 'lists' && !ds.listFiles?.train && !ds.listFiles?.val) {
    const held = new Set(test);
    return { pool: ds.allIds.filter((id) => !held.has(id)), test };
  }
  return { pool: [...ds.ids.train, ...ds.ids.val], test };
}

function writeList(file: string, ids: string[]): void {
  writeFileAtomic(file, ids.join('\n') + '\n');
}

export async function crossValidate(config: FitOptions = {}, opts: CrossValidateOptions = {}): Promise<CrossValidateResult> {
  const log = opts.log ?? config.log ?? ((l: string) => console.log(l));
  const k = opts.folds ?? 5;
  if (!(Number.isInteger(k) && k >= 2 && k <= 100)) throw new UserError(`--folds must be an integer from 2 to 100, got ${k}`);
  if (config.fold !== undefined) throw new UserError('cross-validation trains every fold: --fold is for train and evaluate');
  if (config.resume !== undefined) throw new UserError('cross-validation cannot --resume; rerun it into a new --out');
  if (opts.source !== undefined && !['auto', 'generated', 'csv'].includes(opts.source)) throw new UserError(`invalid fold source '${opts.source}' (expected auto, generated or csv)`);
  // Bad evaluation options fail here, not after the first fold has trained.
  try {
    if (opts.tta !== undefined) parseTtaMode(opts.tta);
  } catch (e) {
    throw new UserError(`--tta: ${(e as Error).message}`);
  }
  try {
    if (typeof opts.post === 'string') parsePostSpec(opts.post);
  } catch (e) {
    throw new UserError(`--post: ${(e as Error).message}`);
  }
  if (opts.valFraction !== undefined && !(opts.valFraction > 0 && opts.valFraction < 1)) throw new UserError(`cross-validation val fraction must be in (0, 1), got ${opts.valFraction}`);
  const cfg = resolveConfig({ ...config, out: config.out ?? 'runs/cv' });
  const outDir = path.resolve(cfg.out);
  makeOutputFolder(outDir);
  const data = cfg.data !== undefined ? path.resolve(cfg.data) : await ensureSyntheticData(path.join(outDir, 'data'), cfg.syntheticCount, Math.max(cfg.size, 32), cfg.classes);
  const ds = openDataset(data, { val: 0.2, seed: 0, trainList: cfg.trainList, valList: cfg.valList, testList: opts.testList });
  const foldSeed = opts.foldSeed ?? cfg.seed;
  const valFraction = opts.valFraction ?? 0.2;

  const csv = cfg.trainList === undefined && opts.testList === undefined ? csvFolds(ds.root, k, opts.source) : null;
  if (opts.source === 'csv' && !csv) throw new UserError('fold source csv: list files were given, which replace the fold CSV');
  const { pool, test } = poolOf(ds);
  const splits = csv ? csv.folds : generateFolds(pool, k, foldSeed, valFraction);
  const source: CrossValidateResult['source'] = csv ? { kind: 'fold-csv', file: csv.file } : { kind: 'generated', seed: foldSeed, valFraction };
  const testIds = csv ? [] : test;
  log(`${k}-fold cross-validation of ${cfg.model} on ${ds.root}: ${csv ? `folds from ${path.basename(csv.file)}` : `generated folds of ${pool.length} images (seed ${foldSeed})`}${testIds.length ? `, ${testIds.length} test images kept out` : ''}; out ${outDir}`);

  const { log: _ignored, ...fitBase } = config;
  void _ignored;
  const folds: FoldResult[] = [];
  for (let f = 0; f < k; f++) {
    const s = splits[f];
    const dir = path.join(outDir, `fold-${f + 1}`);
    makeOutputFolder(dir);
    const lists = { train: path.join(dir, 'train.txt'), val: path.join(dir, 'val.txt'), heldOut: path.join(dir, 'heldout.txt') };
    writeList(lists.train, s.train);
    writeList(lists.val, s.val);
    writeList(lists.heldOut, s.heldOut);
    log(`fold ${f + 1}/${k}: ${s.train.length} train / ${s.val.length} val / ${s.heldOut.length} held out`);
    const r = await fit({ ...fitBase, data, trainList: lists.train, valList: lists.val, out: dir, log });
    const ev = await evaluate({
      checkpoint: r.checkpoint, data, valList: lists.heldOut, out: path.join(dir, 'eval-heldout.json'), hd95: opts.hd95 ?? true,
      workers: cfg.workers, batch: cfg.batch, resizeMasks: cfg.resizeMasks, tta: opts.tta, post: opts.post, classes: cfg.classes,
    });
    const metrics = evaluationRecord(ev);
    folds.push({ fold: f + 1, dir, counts: { train: s.train.length, val: s.val.length, heldOut: s.heldOut.length }, checkpoint: r.checkpoint, bestEpoch: r.best.epoch, metrics });
    log(cfg.classes >= 2
      ? `fold ${f + 1}/${k} held out: mean dice ${fmt(metrics.dice)} iou ${fmt(metrics.iou)} [${perClassDice(metrics, cfg.classes)}] (best epoch ${r.best.epoch})`
      : `fold ${f + 1}/${k} held out: dice ${fmt(metrics.dice)} iou ${fmt(metrics.iou)} precision ${fmt(metrics.precision)} recall ${fmt(metrics.recall)} (best epoch ${r.best.epoch})`);
  }
  const summary = meanStd(folds.map((f) => f.metrics));

  let ensemble: CrossValidateResult['ensemble'] = null;
  if (opts.ensemble) {
    if (testIds.length === 0) {
      ensemble = { skipped: csv ? `with the fold CSV every image is held out by one fold, so there is no common test split` : `${ds.root} has no test split (split files with test.txt, or a test list)` };
      log(`ensemble: not evaluated (${ensemble.skipped})`);
    } else {
      const testFile = path.join(outDir, 'test.txt');
      writeList(testFile, testIds);
      const evalTest = (checkpoint: string | string[], out: string): Promise<EvaluateResult> => evaluate({
        checkpoint, data, valList: testFile, out, hd95: opts.hd95 ?? true, workers: cfg.workers, batch: cfg.batch, resizeMasks: cfg.resizeMasks, tta: opts.tta, post: opts.post, classes: cfg.classes,
      });
      const ens = await evalTest(folds.map((f) => f.checkpoint), path.join(outDir, 'eval-test-ensemble.json'));
      const memberMetrics: Record<string, number>[] = [];
      for (const f of folds) memberMetrics.push(evaluationRecord(await evalTest(f.checkpoint, path.join(f.dir, 'eval-test.json'))));
      ensemble = { test: testIds.length, metrics: evaluationRecord(ens), members: meanStd(memberMetrics), memberMetrics };
      log(`ensemble of ${k} fold models on ${testIds.length} test images: dice ${fmt(ensemble.metrics.dice)} iou ${fmt(ensemble.metrics.iou)} (single models ${fmt(ensemble.members.dice.mean)} ± ${fmt(ensemble.members.dice.std)})`);
    }
  }

  const postText = opts.post === undefined ? '' : typeof opts.post === 'string' ? opts.post : formatPostSpec(opts.post);
  const partial = { outDir, folds, source, summary, ensemble };
  const json = path.join(outDir, 'cv.json');
  const markdown = path.join(outDir, 'cv.md');
  writeFileAtomic(json, JSON.stringify({
    format: 'scalpel-cv', folds: k, model: cfg.model, ...(cfg.classes >= 2 ? { classes: cfg.classes } : {}), data, epochs: cfg.epochs, size: cfg.size, seed: cfg.seed, source,
    tta: opts.tta ?? 'none', post: postText || null, threshold: 0.5, std: 'sample standard deviation over the folds (n - 1)',
    perFold: folds, mean: Object.fromEntries(Object.entries(summary).map(([m, v]) => [m, v.mean])),
    stdev: Object.fromEntries(Object.entries(summary).map(([m, v]) => [m, v.std])), ensemble,
  }, null, 1) + '\n');
  writeFileAtomic(markdown, markdownReport(partial, cfg, data, { tta: opts.tta ?? 'none', post: postText }));
  // Multi-class: dice / iou are the foreground means, then each class's Dice; precision / recall are binary only.
  for (const m of cfg.classes >= 2 ? ['dice', 'iou', ...Array.from({ length: cfg.classes - 1 }, (_, k) => `dice_c${k + 1}`)] : ['dice', 'iou', 'precision', 'recall']) if (summary[m]) log(`${m.padEnd(9)} ${fmt(summary[m].mean)} ± ${fmt(summary[m].std)} (mean ± sample std over ${k} folds)`);
  log(`cross-validation report: ${markdown}`);
  return { ...partial, json, markdown };
}
