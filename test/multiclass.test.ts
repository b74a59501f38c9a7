// Multi-class building blocks: one-hot / argmax, softmax cross-entropy and Dice by hand, per-class Dice / IoU.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp = require('sharp');
import * as sc from '../src';
import { gradcheck } from '../src/autograd/gradcheck';
import { DataError, DataLoader, MultiClassMetricAccumulator, multiClassRecord, readImage, surfaceMetrics, Rng, STRONG_AUGMENT, argmaxClasses, augmentPair, oneHot, openDataset, parsePostSpec, postprocessClasses, readClassMask } from '../src/data';
import { TrainConfig, UserError, resolveConfig, softmaxCrossEntropy, softmaxDiceLoss } from '../src/train';
import { buildLoss, defaultLossTerms, formatLossTerms, parseLossSpec } from '../src/train/losses';
import { loadModelFile, saveModelOnly } from '../src/train/checkpoint';
import { createModel } from '../src/train/models';
import { main } from '../src/cli/main';

const close = (a: number, b: number, what: string, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

describe('multi-class', () => {
  it('one-hot planes and argmax, with errors naming a bad class', () => {
    assert.deepEqual(Array.from(oneHot([1, 0], 1, 3, 1, 2)), [0, 1, 1, 0, 0, 0]);
    // Pixel 0 scores (0, 2, 2): a tie goes to the lower class 1; pixel 1 (5, 1, 9): class 2.
    assert.deepEqual(Array.from(argmaxClasses([0, 5, 2, 1, 2, 9], 1, 3, 1, 2)), [1, 2]);
    assert.throws(() => oneHot([3, 0], 1, 3, 1, 2), /image 0 pixel 0 has class 3, expected an integer in 0\.\.2/);
    assert.throws(() => oneHot([0], 1, 1, 1, 1), /classes must be an integer in \[2, 256\], got 1/);
  });

  it('softmax cross-entropy and Dice equal hand-computed values, with finite-difference gradients', () => {
    // Pixel 0: logits (0, 0, 0) -> p = 1/3 each, class 1. Pixel 1: (ln 2, 0, 0) -> p = (1/2, 1/4, 1/4), class 0.
    const data = Float64Array.from([0, Math.LN2, 0, 0, 0, 0]);
    const x = sc.tensor(data, [1, 3, 1, 2], { dtype: 'float64' });
    const t = sc.tensor(Float64Array.from(oneHot([1, 0], 1, 3, 1, 2)), [1, 3, 1, 2], { dtype: 'float64' });
    close(softmaxCrossEntropy(x, t).item(), (Math.log(3) + Math.log(2)) / 2, 'ce');
    // Foreground classes, smooth 0: class 1: 2(1/3) / (1/3 + 1/4 + 1) = 8/19; class 2: 0 -> loss 1 - 4/19.
    close(softmaxDiceLoss(x, t, { smooth: 0 }).item(), 15 / 19, 'dice');
    // With the background: class 0: 2(1/2) / (1/3 + 1/2 + 1) = 6/11.
    close(softmaxDiceLoss(x, t, { smooth: 0, includeBackground: true }).item(), 1 - (6 / 11 + 8 / 19) / 3, 'dice+bg');
    const xg = sc.tensor(Float64Array.from([0.3, -1, 2, 0.1, -0.5, 0.7, 1.2, 0, -2, 0.4, 0.9, -0.3]), [1, 3, 2, 2], { dtype: 'float64', requiresGrad: true });
    const tg = sc.tensor(Float64Array.from(oneHot([0, 1, 2, 1], 1, 3, 2, 2)), [1, 3, 2, 2], { dtype: 'float64' });
    for (const fn of [(a: sc.Tensor) => softmaxCrossEntropy(a, tg), (a: sc.Tensor) => softmaxDiceLoss(a, tg)]) {
      const r = gradcheck(fn, [xg]);
      assert.ok(r.ok, `gradcheck: ${r.worst} (max error ${r.maxAbsError})`);
    }
    assert.throws(() => softmaxCrossEntropy(x, sc.zeros([1, 2, 1, 2])), /one-hot target \[1, 2, 1, 2\] must have the logits' shape \[1, 3, 1, 2\]/);
    assert.throws(() => softmaxDiceLoss(sc.zeros([1, 1, 2, 2]), sc.zeros([1, 1, 2, 2])), /at least 2 classes/);
  });

  it('per-class Dice / IoU per image and pooled; absent classes score 1 per image', () => {
    const acc = new MultiClassMetricAccumulator(3);
    // Image 0 (1x4): pred 0 1 2 2, target 0 1 1 0. Class 0: tp 1, fn 1; class 1: tp 1, fn 1; class 2: fp 2.
    // Image 1: all background in both.
    const [m0, m1] = acc.add([0, 1, 2, 2, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0], 2, 1, 4);
    assert.deepEqual(m0.dice, [2 / 3, 2 / 3, 0]);
    assert.deepEqual(m0.iou, [0.5, 0.5, 0]);
    assert.equal(m0.meanDice, 1 / 3);
    assert.deepEqual(m1.dice, [1, 1, 1]);
    const s = acc.summary();
    assert.deepEqual(s.perImage.dice, [(2 / 3 + 1) / 2, (2 / 3 + 1) / 2, 0.5]);
    // Pooled: class 0 tp 5, fn 1 -> 10/11; class 1 tp 1, fn 1 -> 2/3; class 2 fp 2 -> 0.
    assert.deepEqual(s.global.dice, [10 / 11, 2 / 3, 0]);
    assert.equal(s.global.meanIou, (0.5 + 0) / 2);
    assert.throws(() => acc.add([0, 3], [0, 0], 1, 1, 2), /pred of image 0 pixel 1 is 3, expected a class in 0\.\.2/);
  });

  it('reads class-index PNGs (nearest resize) and names a value outside the classes', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-mc-'));
    try {
      const f = path.join(dir, 'm.png');
      // 2x2 label map 0 1 / 2 0, grey.
      await sharp(Buffer.from([0, 1, 2, 0]), { raw: { width: 2, height: 2, channels: 1 } }).png().toFile(f);
      const m = await readClassMask(f, 3);
      assert.deepEqual(Array.from(m.data), [0, 1, 2, 0]);
      const up = await readClassMask(f, 3, [4, 4]);
      assert.deepEqual(Array.from(up.data), [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 0, 0, 2, 2, 0, 0]);
      await assert.rejects(readClassMask(f, 2), (e: Error) => e instanceof DataError && /m\.png: pixel \(1, 0\) has class 2, expected 0\.\.1/.test(e.message));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// --classes end to end: config and loss checks, data (class-index masks through the loader and
// augmentation), training, evaluate, predict, and the errors of each.
describe('multi-class: --classes', function () {
  this.timeout(60000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-mc-run-'));
  const data = path.join(tmp, 'data');
  before(async () => {
    await sc.train.ensureSyntheticData(data, 12, 32, 3);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  // In-process CLI (main() is what the bin runs), which spares each command a tsx start.
  const cli = async (...args: string[]) => {
    const out: string[] = [], err: string[] = [];
    const log = console.log, write = process.stderr.write;
    console.log = (...a: unknown[]) => void out.push(a.join(' '));
    process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
    try {
      const code = await main(['node', 'scalpel', ...args]);
      return { code, stdout: out.join('\n'), stderr: err.join('') };
    } finally {
      console.log = log;
      process.stderr.write = write;
    }
  };

  it('config and loss checks name the bad value', () => {
    const bad = (o: Partial<TrainConfig>, re: RegExp) => assert.throws(() => resolveConfig(o), (e: Error) => e instanceof UserError && re.test(e.message), JSON.stringify(o));
    bad({ classes: 0 }, /invalid classes: expected an integer >= 1, got 0/);
    bad({ classes: 1.5 }, /invalid classes: expected an integer >= 1, got 1\.5/);
    bad({ classes: 300 }, /classes: 300 is above the limit of 256/);
    bad({ classes: 3, loss: 'focal:gamma=2+dice' }, /'focal' is a binary loss .* cannot train --classes 3/);
    bad({ classes: 3, loss: 'bce+dice' }, /'bce' is a binary loss/);
    bad({ loss: 'ce+dice' }, /'ce' \(softmax cross-entropy\) needs --classes 2 or more/);
    bad({ classes: 3, loss: 'ce:weights=1/2+dice' }, /ce has 2 class weights \(1\/2\) for --classes 3/);
    bad({ classes: 3, posWeight: 3 }, /--pos-weight 3 is a binary BCE weight/);
    bad({ classes: 3, modelOptions: { numClasses: 2 } }, /numClasses 2 disagrees with --classes 3/);
    assert.throws(() => parseLossSpec('ce:weights=1/x/2'), /ce weights must be one non-negative weight per class/);
    // The default auto pos-weight is simply unused; the default loss is ce+dice.
    assert.equal(resolveConfig({ classes: 3 }).posWeight, 'auto');
    assert.equal(formatLossTerms(defaultLossTerms(1, 1, 3)), 'ce+dice');
    assert.equal(formatLossTerms(defaultLossTerms(1, 1, 1)), 'bce+dice');
    assert.equal(formatLossTerms(parseLossSpec('0.5*ce:weights=0.2/1/3+dice')), '0.5*ce:weights=0.2/1/3+dice');
  });

  it('class-weighted cross-entropy is the weighted mean of the pixels\' losses', () => {
    // Pixel 0: p = 1/3 each, class 1 (weight 2); pixel 1: p = (1/2, 1/4, 1/4), class 0 (weight 0.5).
    const x = sc.tensor(Float64Array.from([0, Math.LN2, 0, 0, 0, 0]), [1, 3, 1, 2], { dtype: 'float64' });
    const t = sc.tensor(Float64Array.from(oneHot([1, 0], 1, 3, 1, 2)), [1, 3, 1, 2], { dtype: 'float64' });
    close(softmaxCrossEntropy(x, t, { weights: [0.5, 2, 1] }).item(), (2 * Math.log(3) + 0.5 * Math.log(2)) / 2.5, 'weighted ce');
    const loss = buildLoss(parseLossSpec('ce:weights=1/1/1+dice'), { classes: 3 });
    close(loss(x, t).item(), softmaxCrossEntropy(x, t).item() + softmaxDiceLoss(x, t).item(), 'ce+dice');
  });

  it('the synthetic set, the loader and the augmentation keep class values', async () => {
    const masks = fs.readdirSync(path.join(data, 'masks'));
    const seen = new Set<number>();
    for (const f of masks) for (const v of (await readClassMask(path.join(data, 'masks', f), 3)).data) seen.add(v);
    assert.deepEqual([...seen].sort(), [0, 1, 2]);
    const ds = openDataset(data, { val: 0.2, seed: 0 });
    const loader = new DataLoader(ds, ds.allIds, { batchSize: 4, size: [32, 32], channels: 1, shuffle: true, augment: STRONG_AUGMENT, workers: 1, classes: 3 });
    try {
      for await (const b of loader.epoch(0)) {
        for (const v of b.masks) assert.ok(v === 0 || v === 1 || v === 2, `mask value ${v}`);
        // Each batch has both foreground classes (one shape of each per image, mostly inside after the affine part).
        assert.ok(b.masks.includes(1) && b.masks.includes(2));
      }
    } finally {
      await loader.close();
    }
    // A quarter turn permutes the pixels: the class counts stay exactly the same.
    const lab = Uint8Array.from({ length: 16 }, (_, i) => i % 3);
    const r = augmentPair(new Float32Array(16), lab, 4, 4, 1, { rot90: 1, hflip: 1 }, new Rng(1));
    const count = (a: ArrayLike<number>, c: number) => Array.from(a).filter((v) => v === c).length;
    for (const c of [0, 1, 2]) assert.equal(count(r.mask, c), count(lab, c));
  });

  it('per-class surface metrics: each class against itself, with the empty-mask rules', () => {
    // 4 x 4. Class 1: pred rows 0-1 x cols 0-1, target shifted one column right; class 2 only in pred (1 pixel); no class 3.
    const pred = new Uint8Array(16), target = new Uint8Array(16);
    for (const [y, x] of [[0, 0], [0, 1], [1, 0], [1, 1]]) pred[y * 4 + x] = 1;
    for (const [y, x] of [[0, 1], [0, 2], [1, 1], [1, 2]]) target[y * 4 + x] = 1;
    pred[15] = 2;
    const acc = new MultiClassMetricAccumulator(4, { surface: true, nsdTolerance: 0.5 });
    const [m] = acc.add(pred, target, 1, 4, 4);
    const bin = (a: Uint8Array, c: number) => Uint8Array.from(a, (v) => (v === c ? 1 : 0));
    const ref = surfaceMetrics(bin(pred, 1), bin(target, 1), 4, 4, 0.5);
    assert.deepEqual([m.hd95![1], m.assd![1], m.nsd![1]], [ref.hd95, ref.assd, ref.nsd]);
    // Every boundary pixel of a 2x2 square is 1 px from the other's, or on it: 2 of 4 per side within 0.5 px.
    assert.equal(ref.hd95, 1);
    assert.equal(ref.nsd, 0.5);
    assert.deepEqual([m.hd95![2], m.nsd![2]], [Math.hypot(4, 4), 0]);
    assert.deepEqual([m.hd95![3], m.assd![3], m.nsd![3]], [0, 0, 1]);
    assert.ok(Number.isNaN(m.hd95![0]));
    close(m.meanHd95!, (1 + Math.hypot(4, 4)) / 3, 'mean hd95');
    const rec = multiClassRecord(acc.summary());
    assert.equal(rec.hd95_img_c2, Math.hypot(4, 4));
    assert.equal(rec.nsd_img, (0.5 + 0 + 1) / 3);
    assert.ok(!('hd95_img' in multiClassRecord(new MultiClassMetricAccumulator(3).summary())), 'no surface metrics unless asked');
  });

  it('post-processing runs per foreground class without overwriting another class', () => {
    // 1 x 7: class 1 at 0-1 and 4 (two components), class 2 at 6; then a ring of 1 around a 2 (3 x 3).
    assert.deepEqual(Array.from(postprocessClasses([1, 1, 0, 0, 1, 0, 2], 1, 7, 3, parsePostSpec('lcc'))), [1, 1, 0, 0, 0, 0, 2]);
    const ring = [1, 1, 1, 1, 2, 1, 1, 1, 1];
    assert.deepEqual(Array.from(postprocessClasses(ring, 3, 3, 3, parsePostSpec('fill'))), ring);
    const hole = [1, 1, 1, 1, 0, 1, 1, 1, 1];
    assert.deepEqual(Array.from(postprocessClasses(hole, 3, 3, 3, parsePostSpec('fill'))), [1, 1, 1, 1, 1, 1, 1, 1, 1]);
  });

  it('scalpel train / evaluate / predict --classes 3 (cmunext-s): per-class logs, table, JSON, CSV and class-index PNGs', async () => {
    const run = path.join(tmp, 'run');
    const t = await cli('train', '--classes', '3', '--model', 'cmunext-s', '--data', data, '--size', '32', '--epochs', '2', '--batch', '4', '--workers', '0',
      '--out', run, '--no-progress', '--overlays', '1', '--lr', '0.01');
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /3 classes, .*loss ce\+dice/);
    assert.match(t.stdout, /epoch 2\/2 .*val mean dice \d\.\d{4} \[c1 \d\.\d{4}, c2 \d\.\d{4}\]/);
    const log = fs.readFileSync(path.join(run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const k of ['dice', 'iou', 'dice_img', 'dice_c0', 'dice_c1', 'dice_c2', 'iou_c2', 'dice_img_c1']) assert.ok(Number.isFinite(log[1][k]), k);
    // The headline is the mean over the foreground classes, and the best checkpoint is chosen by it.
    close(log[1].dice, (log[1].dice_c1 + log[1].dice_c2) / 2, 'mean dice');
    const best = JSON.parse(fs.readFileSync(path.join(run, 'best.json'), 'utf8'));
    assert.equal(best.best.metric, Math.max(...log.map((r) => r.dice)));
    assert.ok(fs.readFileSync(path.join(run, 'log.csv'), 'utf8').split('\n')[0].split(',').includes('dice_c2'));
    assert.equal(fs.readdirSync(path.join(run, 'overlays')).length, 1);
    const { meta, weights } = loadModelFile(path.join(run, 'best.safetensors'));
    Object.values(weights).forEach((w) => w.dispose());
    assert.equal(meta.classes, 3);
    assert.equal(meta.modelOptions.numClasses, 3);

    const json = path.join(tmp, 'eval.json');
    const e = await cli('evaluate', '--checkpoint', run, '--data', data, '--split', 'val', '--json', json);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /3 classes \(argmax\)/);
    assert.match(e.stdout, /^0 \(background\)\s+\d\.\d{4}/m);
    assert.match(e.stdout, /^class\s+dice\s+dice per-image\s+iou\s+iou per-image\s+hd95 px\s+assd px\s+nsd$/m);
    assert.match(e.stdout, /^0 \(background\)(\s+\d\.\d{4}){4}\s+-\s+-\s+-$/m);
    assert.match(e.stdout, /^1(\s+\d\.\d{4}){4}\s+\d+\.\d{2}\s+\d+\.\d{2}\s+\d\.\d{4}$/m);
    assert.match(e.stdout, /^2\s+\d\.\d{4}/m);
    assert.match(e.stdout, /^mean \(1\.\.2\)\s+\d\.\d{4}/m);
    const j = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.equal(j.classes, 3);
    assert.equal(j.global.dice.length, 3);
    close(j.global.meanDice, (j.global.dice[1] + j.global.dice[2]) / 2, 'json mean');
    assert.ok(Number.isFinite(j.foreground.global.dice));
    const rows = fs.readFileSync(json.replace(/\.json$/, '.csv'), 'utf8').trimEnd().split('\n');
    assert.equal(rows[0], 'id,mean_dice,mean_iou,mean_hd95,mean_assd,mean_nsd,dice_c0,dice_c1,dice_c2,iou_c0,iou_c1,iou_c2,hd95_c1,hd95_c2,assd_c1,assd_c2,nsd_c1,nsd_c2');
    assert.equal(j.perImage.hd95[0], null, 'no background HD95 (NaN in memory, null in JSON)');
    assert.ok(Number.isFinite(j.perImage.hd95[1]) && Number.isFinite(j.perImage.meanNsd));
    assert.equal(rows.length, j.count + 1);

    // The first CSV row again, independently: the model's argmax (predictMask) against the mask file.
    const id = rows[1].split(',')[0];
    const { model, meta: m2 } = sc.train.loadModelCheckpoint(path.join(run, 'best.safetensors'));
    model.eval();
    const img = await readImage(path.join(data, 'images', `${id}.png`), { channels: 3, size: [32, 32] });
    const mine = sc.train.predictMask(model, img.data, 3, 32, 32, m2.normalize, 3);
    model.dispose();
    const [ref] = new MultiClassMetricAccumulator(3).add(mine, (await readClassMask(path.join(data, 'masks', `${id}.png`), 3, [32, 32])).data, 1, 32, 32);
    const cells = rows[1].split(',').map(Number);
    // evaluate runs the fused inference plan, predictMask the plain forward: a near-tie pixel may flip, hence the tolerance.
    close(cells[1], ref.meanDice, 'csv mean dice', 0.01);
    cells.slice(6, 9).forEach((v, c) => close(v, ref.dice[c], `csv dice_c${c}`, 0.01));

    // Predict at each image's own size: one input 40 x 24, the others 32 x 32.
    const input = path.join(tmp, 'input');
    fs.mkdirSync(input);
    fs.copyFileSync(path.join(data, 'images', 'syn_0000.png'), path.join(input, 'a.png'));
    await sharp(path.join(data, 'images', 'syn_0001.png')).resize(40, 24, { fit: 'fill' }).png().toFile(path.join(input, 'b.png'));
    const pred = path.join(tmp, 'pred');
    const p = await cli('predict', '--checkpoint', run, '--input', input, '--out', pred, '--tta', 'flips', '--post', 'lcc');
    assert.equal(p.code, 0, p.stderr);
    for (const [name, w, h] of [['a', 32, 32], ['b', 40, 24]] as const) {
      const file = path.join(pred, `${name}.png`);
      const info = await sharp(file).metadata();
      // A single-channel grey label map at the input's size.
      assert.deepEqual([info.width, info.height, info.channels], [w, h, 1], name);
      // readClassMask rejects any value above 2.
      const px = (await readClassMask(file, 3)).data;
      assert.equal(px.length, w * h);
      assert.ok(fs.existsSync(path.join(pred, `${name}_overlay.png`)));
    }
    // Sliding windows give the class map at the image's own size too.
    const win = path.join(tmp, 'pred-win');
    const pw = await cli('predict', '--checkpoint', run, '--input', input, '--out', win, '--window', '16');
    assert.equal(pw.code, 0, pw.stderr);
    const wm = await readClassMask(path.join(win, 'b.png'), 3);
    assert.deepEqual([wm.width, wm.height], [40, 24]);

    // An ensemble (best + last) with TTA and per-class post-processing; no surface metrics.
    const ej = path.join(tmp, 'eval-ens.json');
    const ee = await cli('evaluate', '--checkpoint', path.join(run, 'best.safetensors'), '--checkpoint', path.join(run, 'last.safetensors'), '--data', data, '--split', 'val',
      '--tta', 'flips', '--post', 'lcc,fill', '--no-hd95', '--json', ej, '--classes', '3');
    assert.equal(ee.code, 0, ee.stderr);
    assert.match(ee.stdout, /ensemble of 2 checkpoints .* 3 classes \(argmax\), tta flips, post lcc,fill/);
    const ejj = JSON.parse(fs.readFileSync(ej, 'utf8'));
    assert.deepEqual([ejj.tta, ejj.post, ejj.checkpoints.length, ejj.perImage.dice.length], ['flips', 'lcc,fill', 2, 3]);

    // ONNX export: the output has one channel per class.
    const ox = await cli('export', '--checkpoint', run, '--onnx', path.join(tmp, 'mc.onnx'));
    assert.equal(ox.code, 0, ox.stderr);
    assert.match(ox.stdout, /output 'output' \[1, 3, 32, 32\]/);

    // A --classes that does not match the checkpoint.
    const m = await cli('evaluate', '--checkpoint', run, '--data', data, '--classes', '2');
    assert.equal(m.code, 1);
    assert.match(m.stderr, /best\.safetensors|run.* was trained for 3 classes, but --classes 2 asks for 2 classes/);
    const m1 = await cli('predict', '--checkpoint', run, '--input', input, '--out', path.join(tmp, 'never'), '--classes', '1');
    assert.equal(m1.code, 1);
    assert.match(m1.stderr, /was trained for 3 classes, but --classes 1 asks for binary segmentation \(1 class\)/);
  });

  it('cross-validation and resume keep the classes', async () => {
    const tiny = { classes: 3, model: 'tiny', modelOptions: { width: 4 }, data, size: 32, epochs: 1, batch: 4, workers: 0, verbose: false, progress: false, overlays: 0 };
    const cv = await sc.train.crossValidate({ ...tiny, out: path.join(tmp, 'cv') }, { folds: 2, hd95: false, log: () => undefined });
    const j = JSON.parse(fs.readFileSync(cv.json, 'utf8'));
    assert.equal(j.classes, 3);
    assert.ok(Number.isFinite(j.perFold[0].metrics.dice_c2) && Number.isFinite(j.mean.dice));
    close(j.perFold[1].metrics.dice, (j.perFold[1].metrics.dice_c1 + j.perFold[1].metrics.dice_c2) / 2, 'fold mean dice');
    assert.match(fs.readFileSync(cv.markdown, 'utf8'), /\| dice_c1 \| dice_c2 \|/);
    const heldOut = JSON.parse(fs.readFileSync(path.join(tmp, 'cv', 'fold-1', 'eval-heldout.json'), 'utf8'));
    assert.equal(heldOut.classes, 3);

    const out = path.join(tmp, 'resume');
    await sc.train.fit({ ...tiny, out, hd95: true });
    const r = await sc.train.fit({ resume: out, epochs: 2, verbose: false, progress: false });
    assert.equal(r.config.classes, 3);
    assert.equal(r.history.length, 2);
    // --hd95 (kept by the resume) adds each foreground class's surface metrics to the log.
    for (const k of ['dice_c2', 'hd95_img', 'hd95_img_c1', 'nsd_img_c2']) assert.ok(Number.isFinite(r.history[1][k]), k);
  });

  it('bad --classes values and binary-only losses are one-line CLI errors', async () => {
    const r0 = await cli('train', '--classes', '0');
    assert.equal(r0.code, 2);
    assert.match(r0.stderr, /--classes must be at least 1, got '0'/);
    const r15 = await cli('evaluate', '--checkpoint', 'x', '--data', data, '--classes', '1.5');
    assert.equal(r15.code, 2);
    assert.match(r15.stderr, /--classes must be an integer, got '1\.5'/);
    const rl = await cli('train', '--classes', '3', '--loss', 'tversky+dice', '--data', data, '--out', path.join(tmp, 'never'), '--no-progress');
    assert.equal(rl.code, 1);
    assert.match(rl.stderr, /'tversky' is a binary loss \(one sigmoid channel\) and cannot train --classes 3/);
    assert.ok(!fs.existsSync(path.join(tmp, 'never', 'last.json')));
  });

  it('a mask value outside the classes fails training with the file and pixel; a binary checkpoint refuses --classes 3', async () => {
    const bad = path.join(tmp, 'bad');
    fs.cpSync(data, bad, { recursive: true });
    const f = path.join(bad, 'masks', 'syn_0004.png');
    const m = (await readClassMask(f, 3)).data;
    m[2 * 32 + 5] = 7;
    await sharp(Buffer.from(m), { raw: { width: 32, height: 32, channels: 1 } }).png().toFile(f + '.tmp.png');
    fs.renameSync(f + '.tmp.png', f);
    await assert.rejects(sc.train.fit({ classes: 3, model: 'tiny', modelOptions: { width: 4 }, data: bad, size: 32, epochs: 1, batch: 4, workers: 0, out: path.join(tmp, 'badrun'), verbose: false, progress: false, overlays: 0 }),
      (e: Error) => e instanceof DataError && /syn_0004\.png: pixel \(2, 5\) has class 7, expected 0\.\.2/.test(e.message));

    const bin = path.join(tmp, 'binary.safetensors');
    const model = createModel('tiny', { inChannels: 3, width: 4 });
    saveModelOnly(bin, model, { model: 'tiny', modelOptions: { inChannels: 3, width: 4 }, size: 32, channels: 3, normalize: null, epoch: 1, task: 'segmentation', tag: 't' });
    model.dispose();
    await assert.rejects(sc.train.evaluate({ checkpoint: bin, data, classes: 3, out: null, csv: null }),
      (e: Error) => e instanceof UserError && /binary\.safetensors was trained for binary segmentation \(1 class\), but --classes 3 asks for 3 classes/.test(e.message));
  });
});
