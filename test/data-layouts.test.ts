// The CMUNeXt data layout as its README runs it: images/, masks/0/, and train/val list files given
// by name (--train-list busi_train.txt --val-list busi_val.txt), through openDataset, fit,
// evaluate and the CLI; file names with spaces and parentheses, ids with and without extensions,
// RGB and grey 0/255 masks, and the errors for bad lists.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DataError, openDataset, readMask, writePng } from '../src/data';
import { ensureSyntheticData, evaluate, fit, UserError } from '../src/train';

const root = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-layouts-'));
const SIZE = 32;

function scalpel(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('npx', ['tsx', 'src/cli/main.ts', ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SCALPEL_DEBUG: '' } });
  const stderr = (r.stderr ?? '').split('\n').filter((l) => l && !l.startsWith('npm warn')).join('\n');
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr };
}

/** BUSI-like names for the synthetic images: 'benign (1)' ... , 'malignant (1)' ... */
const NAMES = ['benign (1)', 'benign (2)', 'benign (10)', 'benign (11)', 'malignant (1)', 'malignant (2)', 'malignant (3)', 'normal (1)', 'normal (2)', 'normal (3)'];

/**
 * A CMUNeXt-layout copy of the synthetic set: images/<name>.png, masks/0/<name>.png (every other
 * mask stored as RGB 0/255, as many BUSI conversions are), plus one image without a mask that no
 * list names, which must not matter.
 */
async function makeCmunextData(src: string, dst: string): Promise<void> {
  fs.mkdirSync(path.join(dst, 'images'), { recursive: true });
  fs.mkdirSync(path.join(dst, 'masks', '0'), { recursive: true });
  for (let i = 0; i < NAMES.length; i++) {
    const syn = `syn_${String(i).padStart(4, '0')}.png`;
    fs.copyFileSync(path.join(src, 'images', syn), path.join(dst, 'images', `${NAMES[i]}.png`));
    const maskFile = path.join(dst, 'masks', '0', `${NAMES[i]}.png`);
    if (i % 2 === 0) fs.copyFileSync(path.join(src, 'masks', syn), maskFile);
    else {
      const m = await readMask(path.join(src, 'masks', syn));
      const rgb = new Uint8Array(3 * m.length);
      for (let c = 0; c < 3; c++) for (let k = 0; k < m.length; k++) rgb[c * m.length + k] = m[k] * 255;
      await writePng(maskFile, rgb, { width: SIZE, height: SIZE, channels: 3 });
    }
  }
  fs.copyFileSync(path.join(src, 'images', 'syn_0010.png'), path.join(dst, 'images', 'unlabelled (1).png'));
  // Ids with and without extensions, CRLF line ends, a comment and a blank line, as hand-made lists have.
  fs.writeFileSync(path.join(dst, 'busi_train.txt'), ['# BUSI train', 'benign (1)', 'benign (2).png', 'benign (11)', 'malignant (1).png', 'malignant (2)', '', 'normal (1)', 'normal (2).png'].join('\r\n') + '\r\n');
  fs.writeFileSync(path.join(dst, 'busi_val.txt'), 'benign (10).png\nmalignant (3)\nnormal (3)\n');
}

describe('data layouts: CMUNeXt images/ + masks/0/ with list files', function () {
  this.timeout(60000);
  const syn = path.join(tmp, 'syn');
  const data = path.join(tmp, 'busi');
  before(async () => {
    await ensureSyntheticData(syn, 12, SIZE);
    await makeCmunextData(syn, data);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('openDataset reads the named lists (order kept, extensions optional) and pairs masks/0/', async () => {
    const ds = openDataset(data, { trainList: 'busi_train.txt', valList: 'busi_val.txt' });
    assert.equal(ds.layout, 'cmunext');
    assert.equal(ds.splitSource, 'lists');
    assert.deepEqual(ds.ids, { train: ['benign (1)', 'benign (2)', 'benign (11)', 'malignant (1)', 'malignant (2)', 'normal (1)', 'normal (2)'], val: ['benign (10)', 'malignant (3)', 'normal (3)'] });
    assert.equal(ds.listFiles?.val, path.join(data, 'busi_val.txt'));
    assert.equal(ds.imagePath('benign (10)'), path.join(data, 'images', 'benign (10).png'));
    assert.equal(ds.maskPath('benign (10)'), path.join(data, 'masks', '0', 'benign (10).png'));
    // An RGB 0/255 mask reads as the same 0/1 mask as its grey original.
    assert.deepEqual(await readMask(ds.maskPath('benign (2)')), await readMask(path.join(syn, 'masks', 'syn_0001.png')));
    // Absolute list paths work too, and a single list gives that split alone.
    const v = openDataset(data, { valList: path.join(data, 'busi_val.txt') });
    assert.deepEqual(v.ids, { train: [], val: ['benign (10)', 'malignant (3)', 'normal (3)'] });
    // Without lists the unlabelled image is an error, as before.
    assert.throws(() => openDataset(data), /unlabelled \(1\)\.png: image without mask/);
  });

  it('bad lists: missing file, unknown id, id without mask, empty, duplicate, fold + lists', () => {
    const write = (name: string, text: string) => fs.writeFileSync(path.join(data, name), text);
    const open = (valList: string) => () => openDataset(data, { trainList: 'busi_train.txt', valList });
    const err = (re: RegExp) => (e: Error) => e instanceof DataError && re.test(e.message);
    assert.throws(open('nosuch_val.txt'), err(/nosuch_val\.txt: val list not found \(list paths are relative to the dataset folder .*busi\)/));
    write('bad1.txt', 'benign (10)\nbenign (99).png\n');
    assert.throws(open('bad1.txt'), err(/bad1\.txt:2: unknown id 'benign \(99\)\.png' \(no image of that name in .*images\)/));
    write('bad2.txt', 'malignant (3)\nunlabelled (1)\n');
    assert.throws(open('bad2.txt'), err(/bad2\.txt:2: 'unlabelled \(1\)' has an image \(unlabelled \(1\)\.png\) but no mask in .*masks\/0/));
    write('bad3.txt', '\n# nothing here\n\n');
    assert.throws(open('bad3.txt'), err(/bad3\.txt: empty val list \(no ids\)/));
    write('bad4.txt', 'normal (3)\nbenign (1).png\n');
    assert.throws(open('bad4.txt'), err(/bad4\.txt:2: 'benign \(1\)\.png' is listed twice \(also at busi_train\.txt:2\)/));
    write('bad5.txt', 'normal (3)\nnormal (3)\n');
    assert.throws(open('bad5.txt'), err(/bad5\.txt:2: 'normal \(3\)' is listed twice \(also at line 1\)/));
    assert.throws(() => openDataset(data, { fold: 1, valList: 'busi_val.txt' }), /both a fold \(1\) and split list files/);
    for (let i = 1; i <= 5; i++) fs.unlinkSync(path.join(data, `bad${i}.txt`));
  });

  it('fit trains on the train list and validates on the val list; evaluate --val-list evaluates that list', async () => {
    const lines: string[] = [];
    const out = path.join(tmp, 'run');
    const r = await fit({
      model: 'tiny', modelOptions: { width: 4 }, data, trainList: 'busi_train.txt', valList: 'busi_val.txt', size: SIZE, batch: 4, epochs: 1,
      workers: 0, seed: 1, out, overlays: 1, progress: false, log: (l) => lines.push(l),
    });
    assert.match(lines[0], /: 7 train \/ 3 val images .*\(lists busi_train\.txt, busi_val\.txt\)|\(lists busi_train\.txt, busi_val\.txt\): 7 train \/ 3 val images/);
    assert.deepEqual(fs.readdirSync(path.join(out, 'overlays')), ['benign (10).png']);
    assert.equal(r.config.trainList, 'busi_train.txt');

    fs.writeFileSync(path.join(data, 'one.txt'), 'benign (10).png\n');
    const e1 = await evaluate({ checkpoint: r.checkpoint, data, valList: 'one.txt', hd95: false, workers: 0 });
    assert.equal(e1.split, 'val');
    assert.equal(e1.count, 1);
    assert.equal(e1.file, path.join(out, 'eval-val-one.json'));
    assert.equal(JSON.parse(fs.readFileSync(e1.file!, 'utf8')).list, path.join(data, 'one.txt'));
    const e3 = await evaluate({ checkpoint: r.checkpoint, data, valList: 'busi_val.txt', hd95: false, workers: 0, out: null });
    assert.equal(e3.count, 3);
    assert.ok(e3.summary.global.dice >= 0 && e3.summary.global.dice <= 1);
    await assert.rejects(evaluate({ checkpoint: r.checkpoint, data, valList: 'busi_val.txt', split: 'test', out: null }), (e: Error) => e instanceof UserError && /--split test cannot be used with it/.test(e.message));
    await assert.rejects(fit({ model: 'tiny', data, trainList: 'busi_train.txt', out: path.join(tmp, 'r2'), verbose: false }), /--train-list needs --val-list too/);
    await assert.rejects(fit({ model: 'tiny', data, trainList: 'busi_train.txt', valList: 'busi_val.txt', fold: 2, out: path.join(tmp, 'r3'), verbose: false }), /--fold and --train-list\/--val-list both choose the split/);

    // The CLI: evaluate --val-list, a one-line error for a missing list, and the help.
    const ev = scalpel('evaluate', '--checkpoint', out, '--data', data, '--val-list', 'busi_val.txt', '--no-hd95', '--json', path.join(tmp, 'ev.json'));
    assert.equal(ev.code, 0, ev.stderr);
    assert.match(ev.stdout, /on the val split: 3 images/);
    const bad = scalpel('train', '--model', 'tiny', '--data', data, '--train-list', 'busi_train.txt', '--val-list', 'busi_vall.txt', '--out', path.join(tmp, 'r4'), '--workers', '0', '--no-progress');
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, /^scalpel: .*busi_vall\.txt: val list not found/);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.match(scalpel('train', '--help').stdout, /--train-list <file>.*--val-list <file>/s);
  });
});
