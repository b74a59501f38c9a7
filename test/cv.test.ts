// k-fold cross-validation (sc.train.crossValidate / `scalpel cv`): generated seeded folds and a
// fold CSV, one run per fold, held-out metrics, mean and sample std, and the fold ensemble.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sc from '../src';
import { writeSplit } from '../src/data';
import { crossValidate, ensureSyntheticData, evaluate, generateFolds, meanStd, FitOptions, UserError } from '../src/train';
import { buildProgram, main } from '../src/cli/main';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-cv-'));
const SIZE = 32;
const readList = (f: string) => fs.readFileSync(f, 'utf8').split('\n').filter(Boolean);

function tiny(out: string, extra: FitOptions = {}): FitOptions {
  return {
    model: 'tiny', modelOptions: { width: 4 }, size: SIZE, batch: 4, epochs: 1, optimizer: 'sgd', lr: 0.05, schedule: 'constant',
    workers: 0, seed: 2, out: path.join(tmp, out), overlays: 0, verbose: false, progress: false, ...extra,
  };
}

describe('cross-validation', function () {
  this.timeout(60000);
  const data = path.join(tmp, 'data');
  before(async () => {
    await ensureSyntheticData(data, 12, SIZE);
    writeSplit(data, { val: 0.25, test: 0.25, seed: 1 }); // 6 train + 3 val are folded, 3 test kept out
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('generated folds are seeded, disjoint and cover the ids; each training part keeps a validation share', () => {
    const ids = Array.from({ length: 11 }, (_, i) => `id${i}`);
    const f = generateFolds(ids, 3, 5);
    assert.deepEqual(generateFolds([...ids].reverse(), 3, 5), f, 'independent of the input order');
    assert.notDeepEqual(generateFolds(ids, 3, 6), f);
    assert.deepEqual(f.flatMap((s) => s.heldOut).sort(), [...ids].sort());
    for (const s of f) {
      assert.deepEqual([...s.train, ...s.val, ...s.heldOut].sort(), [...ids].sort());
      assert.ok(s.val.length >= 1 && s.train.length >= 1);
    }
    assert.deepEqual(f.map((s) => s.heldOut.length).sort(), [3, 4, 4]);
    assert.throws(() => generateFolds(ids.slice(0, 3), 2, 0), /2 folds need at least 4 labelled images/);
    const ms = meanStd([{ dice: 0.5, iou: 1 }, { dice: 0.7, iou: 1 }, { dice: 0.9, iou: 1 }]);
    assert.ok(Math.abs(ms.dice.mean - 0.7) < 1e-12 && Math.abs(ms.dice.std - 0.2) < 1e-12, 'sample std (n - 1)');
    assert.equal(ms.iou.std, 0);
  });

  it('trains 2 folds, evaluates each on its held-out part, reports mean ± sample std and the ensemble on the test split', async () => {
    const lines: string[] = [];
    const r = await crossValidate(tiny('cv', { data }), { folds: 2, ensemble: true, log: (l) => lines.push(l), hd95: false });
    const out = path.join(tmp, 'cv');
    assert.equal(r.source.kind, 'generated');
    assert.equal(r.folds.length, 2);
    const test = readList(path.join(data, 'test.txt'));
    const pool = [...readList(path.join(data, 'train.txt')), ...readList(path.join(data, 'val.txt'))].sort();
    const held: string[] = [];
    for (const f of r.folds) {
      const dir = path.join(out, `fold-${f.fold}`);
      assert.equal(f.dir, dir);
      assert.ok(fs.existsSync(path.join(dir, 'best.safetensors')));
      const [tr, va, ho] = ['train.txt', 'val.txt', 'heldout.txt'].map((n) => readList(path.join(dir, n)));
      assert.deepEqual([...tr, ...va, ...ho].sort(), pool, 'each fold splits the labelled pool');
      assert.ok(![...tr, ...va, ...ho].some((id) => test.includes(id)), 'the test split stays out of every fold');
      assert.deepEqual(f.counts, { train: tr.length, val: va.length, heldOut: ho.length });
      held.push(...ho);
      // The fold's metrics are its checkpoint's on its held-out images.
      const ev = await evaluate({ checkpoint: f.checkpoint, data, valList: path.join(dir, 'heldout.txt'), hd95: false, out: null, workers: 0 });
      assert.equal(ev.count, ho.length);
      assert.equal(f.metrics.dice, ev.summary.global.dice);
      assert.equal(f.metrics.recall, ev.summary.global.recall);
    }
    assert.deepEqual(held.sort(), pool, 'the held-out parts partition the pool');
    const [d1, d2] = r.folds.map((f) => f.metrics.dice);
    assert.ok(Math.abs(r.summary.dice.mean - (d1 + d2) / 2) < 1e-12);
    assert.ok(Math.abs(r.summary.dice.std - Math.abs(d1 - d2) / Math.SQRT2) < 1e-12);

    const j = JSON.parse(fs.readFileSync(path.join(out, 'cv.json'), 'utf8'));
    assert.equal(j.folds, 2);
    assert.match(j.std, /sample standard deviation/);
    for (const m of ['dice', 'iou', 'precision', 'recall']) {
      assert.equal(j.mean[m], r.summary[m].mean, m);
      assert.equal(j.stdev[m], r.summary[m].std, m);
      assert.equal(j.perFold[1].metrics[m], r.folds[1].metrics[m]);
    }
    const md = fs.readFileSync(path.join(out, 'cv.md'), 'utf8');
    assert.match(md, /\| fold \| train \/ val \/ held out \| Dice \| IoU \| precision \| recall \|/);
    assert.ok(md.includes(`| **mean ± std** | | ${r.summary.dice.mean.toFixed(4)} ± ${r.summary.dice.std.toFixed(4)} |`), md);
    assert.match(md, /sample standard deviation over the 2 folds \(n - 1/);

    // The ensemble: the two fold models' averaged probabilities on the 3 test images.
    assert.ok(r.ensemble && !('skipped' in r.ensemble));
    const e = r.ensemble as { test: number; metrics: Record<string, number>; memberMetrics: Record<string, number>[] };
    assert.equal(e.test, test.length);
    const ens = await evaluate({ checkpoint: r.folds.map((f) => f.checkpoint), data, valList: path.join(out, 'test.txt'), hd95: false, out: null, workers: 0 });
    assert.equal(e.metrics.dice, ens.summary.global.dice);
    const m1 = await evaluate({ checkpoint: r.folds[0].checkpoint, data, split: 'test', hd95: false, out: null, workers: 0 });
    assert.equal(e.memberMetrics[0].dice, m1.summary.global.dice);
    assert.match(md, /## Ensemble of the 2 fold models on the test split \(3 images\)/);
    assert.ok(lines.some((l) => /^dice\s+\d\.\d{4} ± \d\.\d{4} \(mean ± sample std over 2 folds\)/.test(l)), lines.join('\n'));
  });

  it("uses the dataset's fold CSV when it has one with --folds folds (held out = the fold's test rows)", async () => {
    const bus = path.join(tmp, 'bus');
    fs.cpSync(data, bus, { recursive: true });
    for (const f of ['train.txt', 'val.txt', 'test.txt']) fs.unlinkSync(path.join(bus, f));
    const ids = fs.readdirSync(path.join(bus, 'images')).map((n) => n.replace(/\.png$/, '')).sort();
    // Fold k: test rows are kFold = k; of the others, every third is validation.
    const rows = ids.map((id, i) => {
      const kFold = (i % 2) + 1;
      const cell = (k: number) => (kFold === k ? 'nan' : i % 3 === 0 ? '0' : '1');
      return `${id},${kFold},${cell(1)},${cell(2)}`;
    });
    fs.writeFileSync(path.join(bus, '2-fold-cv.csv'), ['ID,kFold,valid_1,valid_2', ...rows].join('\n') + '\n');
    const r = await crossValidate(tiny('cv-csv', { data: bus }), { folds: 2, ensemble: true, log: () => {}, hd95: false });
    assert.equal(r.source.kind, 'fold-csv');
    for (const f of r.folds) {
      assert.deepEqual(readList(path.join(f.dir, 'heldout.txt')), ids.filter((_, i) => (i % 2) + 1 === f.fold));
      assert.deepEqual(readList(path.join(f.dir, 'val.txt')), ids.filter((_, i) => (i % 2) + 1 !== f.fold && i % 3 === 0));
    }
    assert.ok(r.ensemble && 'skipped' in r.ensemble && /no common test split/.test(r.ensemble.skipped));
    await assert.rejects(crossValidate(tiny('cv-csv3', { data: bus }), { folds: 3, source: 'csv', log: () => {} }), /no 3-fold-cv\.csv \(found 2-fold-cv\.csv\)/);
  });

  it('folds the ids of --train-list and --val-list (CMUNeXt layout); --test-list is the ensemble\'s test split', async () => {
    const cm = path.join(tmp, 'cmunext');
    fs.mkdirSync(path.join(cm, 'masks', '0'), { recursive: true });
    fs.cpSync(path.join(data, 'images'), path.join(cm, 'images'), { recursive: true });
    const ids = fs.readdirSync(path.join(cm, 'images')).map((n) => n.replace(/\.png$/, '')).sort();
    // Names with spaces and parentheses; one image has no mask and is in no list.
    const names = ids.map((_, i) => `case (${i + 1})`);
    ids.forEach((id, i) => {
      fs.renameSync(path.join(cm, 'images', `${id}.png`), path.join(cm, 'images', `${names[i]}.png`));
      if (i < 11) fs.copyFileSync(path.join(data, 'masks', `${id}.png`), path.join(cm, 'masks', '0', `${names[i]}.png`));
    });
    fs.writeFileSync(path.join(cm, 'tr.txt'), names.slice(0, 5).map((n) => `${n}.png`).join('\n') + '\n');
    fs.writeFileSync(path.join(cm, 'va.txt'), names.slice(5, 8).join('\n') + '\n');
    fs.writeFileSync(path.join(cm, 'te.txt'), names.slice(8, 11).join('\n') + '\n');
    const r = await crossValidate(tiny('cv-lists', { data: cm, trainList: 'tr.txt', valList: 'va.txt' }), { folds: 2, testList: 'te.txt', ensemble: true, log: () => {}, hd95: false });
    assert.deepEqual(r.folds.flatMap((f) => readList(path.join(f.dir, 'heldout.txt'))).sort(), names.slice(0, 8).sort());
    assert.ok(r.ensemble && 'test' in r.ensemble && r.ensemble.test === 3);
  });

  it('bad options are clear errors before any training; the CLI documents and checks them', async () => {
    const err = (re: RegExp) => (e: Error) => e instanceof UserError && re.test(e.message);
    await assert.rejects(crossValidate(tiny('e1', { data }), { folds: 1 }), err(/--folds must be an integer from 2 to 100, got 1/));
    await assert.rejects(crossValidate(tiny('e2', { data, fold: 1 }), { folds: 2 }), err(/--fold is for train and evaluate/));
    await assert.rejects(crossValidate(tiny('e3', { data }), { folds: 2, tta: 'd8' as never }), err(/--tta: .*got 'd8'/));
    await assert.rejects(crossValidate(tiny('e4', { data }), { folds: 2, post: 'blur' }), err(/--post: unknown post-processing step 'blur'/));
    await assert.rejects(crossValidate(tiny('e5', { data }), { folds: 5 }), err(/5 folds need at least 10 labelled images/));
    assert.ok(!fs.existsSync(path.join(tmp, 'e3', 'fold-1')), 'nothing trained');

    const help = buildProgram().commands.find((c) => c.name() === 'cv')!.helpInformation();
    for (const flag of ['--folds <k>', '--fold-source <kind>', '--fold-seed <n>', '--ensemble', '--test-list <file>', '--train-list <file>', '--tta <mode>', '--post <spec>']) assert.ok(help.includes(flag), flag);
    const writes: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    (process.stderr as { write: unknown }).write = (s: string) => { writes.push(String(s)); return true; };
    let code: number;
    try {
      code = await main(['node', 'scalpel', 'cv', '--folds', '1', '--data', data]);
    } finally {
      (process.stderr as { write: unknown }).write = orig;
    }
    assert.equal(code, 2);
    assert.match(writes.join(''), /--folds must be at least 2 \(one part held out, the others trained on\), got '1'/);
    assert.equal(typeof sc.train.crossValidate, 'function');
  });

  it('scalpel cv runs the folds with --tta and --post in the evaluations', async () => {
    const out = path.join(tmp, 'cv-cli');
    const logs: string[] = [];
    const orig = console.log;
    console.log = (...a: unknown[]) => { logs.push(a.join(' ')); };
    let code: number;
    try {
      code = await main(['node', 'scalpel', 'cv', '--folds', '2', '--model', 'tiny', '--model-opts', '{"width":4}', '--data', data, '--size', String(SIZE), '--epochs', '1',
        '--batch', '4', '--workers', '0', '--overlays', '0', '--quiet', '--no-progress', '--out', out, '--ensemble', '--tta', 'flips', '--post', 'lcc', '--fold-seed', '9']);
    } finally {
      console.log = orig;
    }
    assert.equal(code, 0, logs.join('\n'));
    const j = JSON.parse(fs.readFileSync(path.join(out, 'cv.json'), 'utf8'));
    assert.equal(j.tta, 'flips');
    assert.equal(j.post, 'lcc');
    assert.deepEqual(j.source, { kind: 'generated', seed: 9, valFraction: 0.2 });
    const heldJson = JSON.parse(fs.readFileSync(path.join(out, 'fold-1', 'eval-heldout.json'), 'utf8'));
    assert.equal(heldJson.tta, 'flips');
    assert.equal(heldJson.post, 'lcc');
    assert.match(fs.readFileSync(path.join(out, 'cv.md'), 'utf8'), /TTA flips, post-processing lcc/);
    assert.ok(logs.some((l) => l.startsWith('cross-validation report: ')));
  });
});
