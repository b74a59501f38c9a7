// npm run bench:e2e [-- --model cmunext-s --size 128 --batch 8 --epochs 48 --budget 10 --data DIR --fold 1 --threads 2 --no-torch]
//
// A real training run end to end, scalpel against PyTorch: the same recipe (--recipe cmunext:
// SGD momentum 0.9, wd 1e-4, lr 0.01 poly 0.9 per iteration, flips + rot90, BCE + Dice, dataset
// mean/std), the same split, the same wall-clock budget (--budget minutes, each engine in its own
// process, one after the other), the same stopping rule (stop after the last epoch that fits).
// Data: BUS-BRA fold 1 from ../shared/data/bus-bra when present, else the built-in synthetic set.
// Reports, per engine: images/s end to end (training images processed / process wall time, so
// start-up, decode, augmentation and validation all count), the step loop's own img/s, epochs
// done, best validation Dice (global, threshold 0.5), peak RSS; and the scalpel/PyTorch ratios.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { arg, fmt, loadavg, machine, mdTable, median, ROOT, writeResults } from './common';
import { ensureSyntheticData } from '../src/train';
import { openDataset } from '../src/data';

const PY = '/usr/bin/python3';
const CACHE = path.join(ROOT, '.bench-cache', 'e2e');

interface EngineResult {
  engine: string;
  epochs: number;
  trainImages: number;
  wallS: number;
  e2eImgS: number;
  stepImgS: number;
  bestDice: number;
  peakRssMb: number | null;
  loadavg: number[];
  error?: string;
}

/** Runs a command under GNU time for its peak RSS (kB on the last stderr line). */
function runTimed(cmd: string, args: string[], env: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string; wallS: number; peakRssMb: number | null } {
  const useTime = fs.existsSync('/usr/bin/time');
  const t0 = performance.now();
  const r = useTime
    ? spawnSync('/usr/bin/time', ['-f', 'PEAK_RSS_KB %M', cmd, ...args], { cwd: ROOT, encoding: 'utf8', env, maxBuffer: 1 << 28 })
    : spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', env, maxBuffer: 1 << 28 });
  const wallS = (performance.now() - t0) / 1000;
  const m = /PEAK_RSS_KB (\d+)/.exec(r.stderr ?? '');
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', wallS, peakRssMb: m ? Number(m[1]) / 1024 : null };
}

async function main(): Promise<void> {
  const model = arg('model', 'cmunext-s')!;
  const size = Number(arg('size', '128'));
  const batch = Number(arg('batch', '8'));
  const epochs = Number(arg('epochs', '48'));
  const budget = Number(arg('budget', '10'));
  const threads = Number(arg('threads', '2'));
  const fold = Number(arg('fold', '1'));
  const shared = path.join(ROOT, '..', 'shared', 'data', 'bus-bra');
  let data = arg('data');
  let dataNote: string;
  if (!data && fs.existsSync(shared)) data = shared;
  if (data) {
    dataNote = `${path.relative(ROOT, path.resolve(data))}${fs.existsSync(path.join(data, "5-fold-cv.csv")) ? ` fold ${fold}` : ""}`;
  } else {
    data = await ensureSyntheticData(path.join(CACHE, 'synthetic'), 400, Math.max(size, 64));
    dataNote = 'built-in synthetic set (400 images; ../shared/data/bus-bra not found)';
  }
  fs.mkdirSync(CACHE, { recursive: true });
  const ds = openDataset(data, { fold: fs.existsSync(path.join(data, '5-fold-cv.csv')) ? fold : undefined, val: 0.2, seed: 0 });
  const manifest = path.join(CACHE, 'manifest.json');
  const pairs = (ids: readonly string[]) => ids.map((id) => [ds.imagePath(id), ds.maskPath(id)]);
  fs.writeFileSync(manifest, JSON.stringify({ train: pairs(ds.ids.train), val: pairs(ds.ids.val) }));
  console.log(`bench:e2e ${model} ${size}px batch ${batch}, budget ${budget} min per engine, ${threads} threads; data: ${dataNote} (${ds.ids.train.length} train / ${ds.ids.val.length} val)`);

  const env = { ...process.env, OMP_NUM_THREADS: String(threads), SCALPEL_NUM_THREADS: String(threads) };
  const results: EngineResult[] = [];

  // scalpel: the CLI itself, as a user runs it.
  {
    const out = path.join(CACHE, `scalpel-${model}-${size}`);
    fs.rmSync(out, { recursive: true, force: true });
    const la = loadavg();
    const foldArgs = ds.fold ? ['--fold', String(ds.fold)] : [];
    const r = runTimed(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'train', '--recipe', 'cmunext', '--model', model, '--data', data, ...foldArgs,
      '--size', String(size), '--batch', String(batch), '--epochs', String(epochs), '--time-limit', String(budget), '--seed', '0',
      '--overlays', '0', '--no-progress', '--out', out], env);
    const log = path.join(out, 'log.jsonl');
    if (r.status !== 0 || !fs.existsSync(log)) {
      results.push({ engine: 'scalpel', epochs: 0, trainImages: 0, wallS: r.wallS, e2eImgS: NaN, stepImgS: NaN, bestDice: NaN, peakRssMb: r.peakRssMb, loadavg: la, error: r.stderr.split('\n').slice(-5).join(' ') });
    } else {
      const hist = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const imgs = hist.reduce((a, h) => a + h.img_s * h.train_s, 0);
      results.push({
        engine: 'scalpel', epochs: hist.length, trainImages: Math.round(imgs), wallS: r.wallS, e2eImgS: imgs / r.wallS,
        stepImgS: median(hist.map((h) => h.img_s)), bestDice: Math.max(...hist.map((h) => h.dice)), peakRssMb: r.peakRssMb, loadavg: la,
      });
    }
    console.log(JSON.stringify(results[results.length - 1]));
  }

  if (arg('no-torch') === undefined) {
    const la = loadavg();
    const r = runTimed(PY, [path.join('bench', 'pytorch', 'train_e2e.py'), '--manifest', manifest, '--model', model, '--size', String(size), '--batch', String(batch),
      '--epochs', String(epochs), '--time-limit', String(budget), '--seed', '0', '--threads', String(threads)], env);
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !line.startsWith('{')) {
      results.push({ engine: 'pytorch', epochs: 0, trainImages: 0, wallS: r.wallS, e2eImgS: NaN, stepImgS: NaN, bestDice: NaN, peakRssMb: r.peakRssMb, loadavg: la, error: r.stderr.split('\n').slice(-5).join(' ') });
    } else {
      const j = JSON.parse(line);
      results.push({
        engine: `pytorch ${j.torch}`, epochs: j.epochs, trainImages: j.train_images, wallS: r.wallS, e2eImgS: j.train_images / r.wallS,
        stepImgS: median(j.history.map((h: { img_s: number }) => h.img_s)), bestDice: j.best_dice, peakRssMb: r.peakRssMb, loadavg: la,
      });
    }
    console.log(JSON.stringify(results[results.length - 1]));
  }

  const [s, t] = results;
  const rows = results.map((x) => [x.engine, x.epochs, x.trainImages, fmt(x.wallS, 0), fmt(x.e2eImgS, 1), fmt(x.stepImgS, 1), fmt(x.bestDice, 4), fmt(x.peakRssMb, 0), x.loadavg[0], x.error ?? '']);
  const ratios = t && !s.error && !t.error
    ? `scalpel/PyTorch: end-to-end images/s ${fmt(s.e2eImgS / t.e2eImgS)}x, step-loop img/s ${fmt(s.stepImgS / t.stepImgS)}x, epochs ${s.epochs} vs ${t.epochs}, peak RSS ${fmt((s.peakRssMb ?? NaN) / (t.peakRssMb ?? NaN))}x.`
    : '';
  const md = [
    '# scalpel end-to-end training benchmark', '',
    `${JSON.stringify(machine())}`, '',
    `${model} at ${size}x${size}, batch ${batch}, --recipe cmunext, ${epochs} planned epochs (the poly schedule's horizon), budget ${budget} min per engine, ${threads} threads. Data: ${dataNote}, ${ds.ids.train.length} train / ${ds.ids.val.length} val images.`,
    'End-to-end img/s = training images processed / wall time of the whole process (start-up, decode, augmentation, validation included). Step-loop img/s = median over epochs of the training loop alone. Best Dice = best validation Dice (global, threshold 0.5) over the epochs run.', '',
    mdTable(['engine', 'epochs', 'train images', 'wall s', 'e2e img/s', 'step-loop img/s', 'best val Dice', 'peak RSS MB', 'loadavg (1 min) at start', 'error'], rows), '',
    ratios,
  ].join('\n');
  writeResults(`e2e-${model}-${size}`, { model, size, batch, epochs, budget, threads, data: dataNote, results }, md);
  console.log(md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
