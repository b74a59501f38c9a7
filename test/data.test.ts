import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp = require('sharp');
import {
  assd,
  nsd,
  perCaseCsv,
  surfaceMetrics,
  DataError,
  DataLoader,
  MetricAccumulator,
  Rng,
  SampleCache,
  augmentPair,
  boundary,
  channelStats,
  decodeBmp,
  generateSyntheticDataset,
  hd95,
  normalize,
  openDataset,
  readFoldCsv,
  readImage,
  readMask,
  writeFileAtomic,
  writeMaskPng,
  writePng,
  resizeBilinear,
  resizeNearest,
  writeSplit,
} from '../src/data';
import { metricRecord } from '../src/train/fit';
import { evaluate } from '../src/train/evaluate';

const BUSBRA = path.resolve(__dirname, '../../shared/data/bus-bra');

function tmpDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `scalpel-${name}-`));
}

/** A 2-D ramp image so every pixel is distinct and geometric mix-ups are visible. */
function ramp(h: number, w: number): Float32Array {
  const a = new Float32Array(h * w);
  for (let i = 0; i < a.length; i++) a[i] = i / (a.length - 1);
  return a;
}

async function rejectsWith(p: Promise<unknown>, re: RegExp): Promise<DataError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error, 'expected an Error');
    assert.match(e.message, re);
    return e as DataError;
  }
  assert.fail(`expected rejection matching ${re}`);
}

/** 24-bit bottom-up BMP from RGB rows (hand-assembled so the reader is tested against the format, not itself). */
function makeBmp24(w: number, h: number, pixel: (x: number, y: number) => [number, number, number]): Buffer {
  const rowSize = Math.ceil((w * 3) / 4) * 4;
  const buf = Buffer.alloc(54 + rowSize * h);
  buf.write('BM', 0, 'ascii');
  buf.writeUInt32LE(buf.length, 2);
  buf.writeUInt32LE(54, 10);
  buf.writeUInt32LE(40, 14);
  buf.writeInt32LE(w, 18);
  buf.writeInt32LE(h, 22);
  buf.writeUInt16LE(1, 26);
  buf.writeUInt16LE(24, 28);
  for (let y = 0; y < h; y++) {
    const row = 54 + (h - 1 - y) * rowSize;
    for (let x = 0; x < w; x++) {
      const [r, g, b] = pixel(x, y);
      buf[row + x * 3] = b;
      buf[row + x * 3 + 1] = g;
      buf[row + x * 3 + 2] = r;
    }
  }
  return buf;
}

/** 8-bit palette top-down BMP with a grey palette. */
function makeBmp8(w: number, h: number, value: (x: number, y: number) => number): Buffer {
  const rowSize = Math.ceil(w / 4) * 4;
  const off = 54 + 256 * 4;
  const buf = Buffer.alloc(off + rowSize * h);
  buf.write('BM', 0, 'ascii');
  buf.writeUInt32LE(buf.length, 2);
  buf.writeUInt32LE(off, 10);
  buf.writeUInt32LE(40, 14);
  buf.writeInt32LE(w, 18);
  buf.writeInt32LE(-h, 22);
  buf.writeUInt16LE(1, 26);
  buf.writeUInt16LE(8, 28);
  for (let i = 0; i < 256; i++) buf.fill(i, 54 + i * 4, 54 + i * 4 + 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) buf[off + y * rowSize + x] = value(x, y);
  return buf;
}

describe('data: decode', function () {
  let dir: string;
  before(() => {
    dir = tmpDir('decode');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('round-trips grey and RGB PNGs (CHW, 0..1)', async () => {
    const h = 5, w = 7;
    const grey = ramp(h, w);
    await writePng(path.join(dir, 'g.png'), grey, { width: w, height: h, channels: 1 });
    const g = await readImage(path.join(dir, 'g.png'), { channels: 1 });
    assert.deepEqual([g.channels, g.height, g.width], [1, h, w]);
    for (let i = 0; i < grey.length; i++) assert.ok(Math.abs(g.data[i] - grey[i]) <= 0.5 / 255 + 1e-6);

    const rgb = new Float32Array(3 * h * w);
    for (let i = 0; i < h * w; i++) {
      rgb[i] = 1; // red plane
      rgb[h * w + i] = 0;
      rgb[2 * h * w + i] = i % 2;
    }
    await writePng(path.join(dir, 'c.png'), rgb, { width: w, height: h, channels: 3 });
    const c = await readImage(path.join(dir, 'c.png'), { channels: 3 });
    assert.deepEqual(Array.from(c.data), Array.from(rgb));
    // Grey from colour uses ITU-R 601 luma.
    const cg = await readImage(path.join(dir, 'c.png'), { channels: 1 });
    assert.ok(Math.abs(cg.data[0] - 0.299) < 1e-6);
    assert.ok(Math.abs(cg.data[1] - (0.299 + 0.114)) < 1e-6);
    // Grey to 3 channels replicates.
    const g3 = await readImage(path.join(dir, 'g.png'), { channels: 3 });
    assert.deepEqual(Array.from(g3.data.subarray(h * w, 2 * h * w)), Array.from(g.data));
  });

  it('resizes images bilinearly (half-pixel centres) and masks by nearest neighbour', async () => {
    // 1x2 image [0, 1] upsampled to 1x4: sample points at -0.25, 0.25, 0.75, 1.25 (clamped) -> 0, .25, .75, 1
    await writePng(path.join(dir, 'two.png'), new Uint8Array([0, 255]), { width: 2, height: 1, channels: 1 });
    const up = await readImage(path.join(dir, 'two.png'), { size: [1, 4] });
    assert.deepEqual(Array.from(up.data).map((v) => Math.round(v * 100) / 100), [0, 0.25, 0.75, 1]);
    // Mask: 0/127/128/255 -> threshold at 128.
    await writePng(path.join(dir, 'm.png'), new Uint8Array([0, 127, 128, 255]), { width: 4, height: 1, channels: 1 });
    assert.deepEqual(Array.from(await readMask(path.join(dir, 'm.png'))), [0, 0, 1, 1]);
    assert.deepEqual(Array.from(await readMask(path.join(dir, 'm.png'), [1, 8])), [0, 0, 0, 0, 1, 1, 1, 1]);
    assert.deepEqual(Array.from(await readMask(path.join(dir, 'm.png'), [2, 2])), [0, 1, 0, 1]);
    await writeMaskPng(path.join(dir, 'm2.png'), new Uint8Array([1, 0, 0, 1]), 2, 2);
    assert.deepEqual(Array.from(await readMask(path.join(dir, 'm2.png'))), [1, 0, 0, 1]);
  });

  it('decoding at a size gives exactly the full decode resized (grey and colour, 1 and 3 channels, masks)', async () => {
    // readImage(size) converts only the source pixels the resize reads: it must equal
    // resizeBilinear of the full-size planes bit for bit, shrinking and enlarging.
    const h = 23, w = 37;
    const grey = new Uint8Array(h * w).map((_, i) => (i * 37 + (i >> 3) * 11) % 256);
    const rgb = new Uint8Array(3 * h * w).map((_, i) => (i * 53 + (i >> 2) * 7) % 256);
    await writePng(path.join(dir, 'exact-g.png'), grey, { width: w, height: h, channels: 1 });
    await writePng(path.join(dir, 'exact-c.png'), new Float32Array(rgb).map((v) => v / 255), { width: w, height: h, channels: 3 });
    for (const f of ['exact-g.png', 'exact-c.png']) {
      for (const channels of [1, 3] as const) {
        const full = await readImage(path.join(dir, f), { channels });
        for (const [oh, ow] of [[8, 16], [5, 3], [40, 64], [h, w]] as [number, number][]) {
          const got = await readImage(path.join(dir, f), { channels, size: [oh, ow] });
          assert.deepEqual([got.height, got.width, got.sourceHeight, got.sourceWidth], [oh, ow, h, w]);
          assert.deepEqual(Array.from(got.data), Array.from(resizeBilinear(full.data, channels, h, w, oh, ow)), `${f} channels ${channels} to ${oh}x${ow}`);
        }
      }
    }
    const mask = new Uint8Array(h * w).map((_, i) => ((i * 29) % 7 < 3 ? 255 : (i * 13) % 200));
    await writePng(path.join(dir, 'exact-m.png'), mask, { width: w, height: h, channels: 1 });
    const fullMask = await readMask(path.join(dir, 'exact-m.png'));
    for (const [oh, ow] of [[8, 16], [40, 64]] as [number, number][]) {
      assert.deepEqual(Array.from(await readMask(path.join(dir, 'exact-m.png'), [oh, ow])), Array.from(resizeNearest(fullMask, h, w, oh, ow)));
    }
  });

  it('decodes JPEG and TIFF through sharp', async () => {
    const raw = Buffer.alloc(8 * 8, 200);
    await sharp(raw, { raw: { width: 8, height: 8, channels: 1 } }).jpeg({ quality: 100 }).toFile(path.join(dir, 'a.jpg'));
    await sharp(raw, { raw: { width: 8, height: 8, channels: 1 } }).tiff().toFile(path.join(dir, 'a.tif'));
    for (const f of ['a.jpg', 'a.tif']) {
      const im = await readImage(path.join(dir, f), { size: [4, 4] });
      assert.equal(im.data.length, 16);
      for (const v of im.data) assert.ok(Math.abs(v - 200 / 255) < 3 / 255, `${f}: ${v}`);
    }
  });

  it('decodes 24-bit and 8-bit palette BMP with its own reader', async () => {
    const b24 = makeBmp24(3, 2, (x, y) => [x * 100, y * 200, 7]);
    fs.writeFileSync(path.join(dir, 'a.bmp'), b24);
    const im = await readImage(path.join(dir, 'a.bmp'), { channels: 3 });
    assert.deepEqual([im.height, im.width], [2, 3]);
    assert.deepEqual(Array.from(im.data, (v) => Math.round(v * 255)), [0, 100, 200, 0, 100, 200, 0, 0, 0, 200, 200, 200, 7, 7, 7, 7, 7, 7]);
    const raw = decodeBmp(makeBmp8(5, 3, (x, y) => x + 10 * y));
    assert.equal(raw.channels, 3);
    assert.equal(raw.data[(2 * 5 + 4) * 3], 24);
    fs.writeFileSync(path.join(dir, 'm.bmp'), makeBmp8(2, 1, (x) => (x ? 255 : 0)));
    assert.deepEqual(Array.from(await readMask(path.join(dir, 'm.bmp'))), [0, 1]);
  });

  it('names the file for missing, corrupt and unsupported inputs', async () => {
    const bad = path.join(dir, 'garbage.png');
    fs.writeFileSync(bad, Buffer.from('this is definitely not a png file at all'));
    const e1 = await rejectsWith(readImage(bad), /garbage\.png.*(corrupt|decode)/);
    assert.equal(e1.code, 'corrupt');
    assert.equal(e1.file, bad);
    await rejectsWith(readMask(bad), /garbage\.png/);
    const e2 = await rejectsWith(readImage(path.join(dir, 'nope.png')), /nope\.png: file not found/);
    assert.equal(e2.code, 'missing');
    fs.writeFileSync(path.join(dir, 'x.gif'), 'GIF89a');
    const e3 = await rejectsWith(readImage(path.join(dir, 'x.gif')), /x\.gif: unsupported extension/);
    assert.equal(e3.code, 'unsupported');
    fs.writeFileSync(path.join(dir, 'empty.jpg'), '');
    await rejectsWith(readImage(path.join(dir, 'empty.jpg')), /empty\.jpg: empty file/);
    fs.writeFileSync(path.join(dir, 'fake.bmp'), 'BM\x00\x00');
    await rejectsWith(readImage(path.join(dir, 'fake.bmp')), /fake\.bmp: cannot decode BMP/);
  });

  it('writes atomically: no temp file left, existing file intact on failure', async () => {
    const target = path.join(dir, 'atomic.png');
    await writePng(target, new Float32Array(4).fill(1), { width: 2, height: 2, channels: 1 });
    const before = fs.readFileSync(target);
    // Wrong data length: fails before touching the target.
    await rejectsWith(writePng(target, new Float32Array(3), { width: 2, height: 2, channels: 1 }), /atomic\.png: data has 3 values/);
    assert.deepEqual(fs.readFileSync(target), before);
    // Rename onto a non-empty directory fails after the temp file was written: temp must be removed.
    const blocker = path.join(dir, 'blocker.png');
    fs.mkdirSync(blocker);
    fs.writeFileSync(path.join(blocker, 'keep'), 'x');
    await rejectsWith(writeFileAtomic(blocker, Buffer.from('data')), /blocker\.png: write failed/);
    await rejectsWith(writeFileAtomic(path.join(dir, 'no-such-dir', 'f.png'), Buffer.from('x')), /write failed/);
    const leftovers = fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'));
    assert.deepEqual(leftovers, []);
    assert.deepEqual(fs.readFileSync(target), before);
  });
});

describe('data: datasets and splits', function () {
  let dir: string;
  before(() => {
    dir = tmpDir('ds');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function makeFlat(root: string, ids: string[], maskName: (id: string) => string, maskSub = 'masks'): Promise<void> {
    fs.mkdirSync(path.join(root, 'images'), { recursive: true });
    fs.mkdirSync(path.join(root, maskSub), { recursive: true });
    for (const id of ids) {
      await writePng(path.join(root, 'images', `${id}.png`), ramp(4, 4), { width: 4, height: 4, channels: 1 });
      await writeMaskPng(path.join(root, maskSub, maskName(id)), new Uint8Array(16).fill(1), 4, 4);
    }
  }

  it('generates a deterministic synthetic dataset quickly', async function () {
    this.timeout(10000);
    const a = path.join(dir, 'synA');
    const b = path.join(dir, 'synB');
    const t0 = Date.now();
    const ids = await generateSyntheticDataset(a, { count: 96, size: 128, seed: 7 });
    const ms = Date.now() - t0;
    assert.equal(ids.length, 96);
    assert.ok(ms < 5000, `took ${ms} ms`);
    await generateSyntheticDataset(b, { count: 4, size: 128, seed: 7 });
    for (const sub of ['images', 'masks']) {
      assert.deepEqual(fs.readFileSync(path.join(a, sub, 'syn_0003.png')), fs.readFileSync(path.join(b, sub, 'syn_0003.png')));
    }
    const m = await readMask(path.join(a, 'masks', 'syn_0000.png'));
    const fg = m.reduce((s, v) => s + v, 0);
    assert.ok(fg > 50 && fg < 128 * 128 * 0.5, `lesion of ${fg} px`);
    // The image is darker or brighter inside the lesion than outside (it is learnable).
    const im = await readImage(path.join(a, 'images', 'syn_0000.png'));
    let inS = 0, outS = 0;
    for (let i = 0; i < m.length; i++) (m[i] ? (inS += im.data[i]) : (outS += im.data[i]));
    assert.ok(Math.abs(inS / fg - outS / (m.length - fg)) > 0.05);
  });

  it('opens the flat layout with a generated split, and writeSplit is reproducible', () => {
    const root = path.join(dir, 'synA');
    const ds = openDataset(root, { seed: 3 });
    assert.equal(ds.layout, 'flat');
    assert.equal(ds.splitSource, 'generated');
    assert.equal(ds.ids.train.length + ds.ids.val.length, 96);
    assert.equal(ds.ids.val.length, Math.round(96 * 0.2));
    assert.equal(ds.imagePath('syn_0001'), path.join(root, 'images', 'syn_0001.png'));
    assert.equal(ds.maskPath('syn_0001'), path.join(root, 'masks', 'syn_0001.png'));

    const s1 = writeSplit(root, { val: 0.2, test: 0.1, seed: 3 });
    const files1 = ['train.txt', 'val.txt', 'test.txt'].map((f) => fs.readFileSync(path.join(root, f), 'utf8'));
    const s2 = writeSplit(root, { val: 0.2, test: 0.1, seed: 3 });
    const files2 = ['train.txt', 'val.txt', 'test.txt'].map((f) => fs.readFileSync(path.join(root, f), 'utf8'));
    assert.deepEqual(s1, s2);
    assert.deepEqual(files1, files2);
    assert.equal(s1.test!.length, 10);
    assert.equal(new Set([...s1.train, ...s1.val, ...s1.test!]).size, 96);
    const s3 = writeSplit(root, { val: 0.2, test: 0.1, seed: 4 });
    assert.notDeepEqual(s3.val, s1.val);
    assert.deepEqual(fs.readdirSync(root).filter((f) => f.endsWith('.tmp')), []);

    const fromFiles = openDataset(root);
    assert.equal(fromFiles.splitSource, 'files');
    assert.deepEqual(fromFiles.ids, s3);
    // Without files, the generated split equals writeSplit's for the same seed and fractions.
    const s5 = writeSplit(root, { val: 0.2, seed: 5, name: 'five' });
    assert.deepEqual(openDataset(root, { splitName: 'five' }).ids, s5);
    assert.equal(fs.existsSync(path.join(root, 'five_test.txt')), false);
    for (const f of fs.readdirSync(root)) if (f.endsWith('.txt')) fs.unlinkSync(path.join(root, f));
    assert.deepEqual(openDataset(root, { seed: 5 }).ids, s5);
  });

  it('pairs <id>_mask masks, original BUS-BRA mask_ names, and the CMUNeXt layout with split files', async () => {
    const flat = path.join(dir, 'suffix');
    await makeFlat(flat, ['a', 'b', 'c', 'd', 'e'], (id) => `${id}_mask.png`);
    const ds = openDataset(flat);
    assert.equal(ds.maskPath('c'), path.join(flat, 'masks', 'c_mask.png'));

    const bus = path.join(dir, 'busnames');
    await makeFlat(bus, ['bus_0001-l', 'bus_0002-r'], (id) => `${id.replace('bus_', 'mask_')}.png`);
    assert.equal(openDataset(bus, { val: 0.5 }).maskPath('bus_0002-r'), path.join(bus, 'masks', 'mask_0002-r.png'));

    const cm = path.join(dir, 'cmunext');
    await makeFlat(cm, ['x1', 'x2', 'x3', 'x4'], (id) => `${id}.png`, path.join('masks', '0'));
    fs.writeFileSync(path.join(cm, 'busi_train.txt'), 'x1\nx2.png\n\nx3\n');
    fs.writeFileSync(path.join(cm, 'busi_val.txt'), 'x4\n');
    const c = openDataset(cm, { splitName: 'busi' });
    assert.equal(c.layout, 'cmunext');
    assert.deepEqual(c.ids, { train: ['x1', 'x2', 'x3'], val: ['x4'] });
    assert.equal(c.maskPath('x2'), path.join(cm, 'masks', '0', 'x2.png'));

    fs.writeFileSync(path.join(cm, 'train.txt'), 'x1\nzz\n');
    fs.writeFileSync(path.join(cm, 'val.txt'), 'x4\n');
    assert.throws(() => openDataset(cm), /train\.txt:2: unknown id 'zz'/);
    fs.writeFileSync(path.join(cm, 'train.txt'), 'x1\n');
    fs.writeFileSync(path.join(cm, 'val.txt'), '\n');
    assert.throws(() => openDataset(cm), /val\.txt: empty val split/);
    assert.throws(() => openDataset(cm, { splitName: 'nosuch' }), /nosuch_train\.txt: split files for 'nosuch' not found/);
  });

  it('reports missing folders, images without masks and ambiguous ids', async () => {
    assert.throws(() => openDataset(path.join(dir, 'does-not-exist')), /dataset folder not found/);
    const noImg = path.join(dir, 'noimg');
    fs.mkdirSync(path.join(noImg, 'masks'), { recursive: true });
    assert.throws(() => openDataset(noImg), /missing folder images\//);
    const lonely = path.join(dir, 'lonely');
    await makeFlat(lonely, ['p', 'q', 'r'], (id) => `${id}.png`);
    fs.unlinkSync(path.join(lonely, 'masks', 'q.png'));
    assert.throws(() => openDataset(lonely), (e: Error) => e instanceof DataError && /q\.png: image without mask/.test(e.message));
    assert.throws(() => writeSplit(lonely), /image without mask/);
    fs.writeFileSync(path.join(lonely, 'masks', 'q.png'), fs.readFileSync(path.join(lonely, 'masks', 'p.png')));
    fs.copyFileSync(path.join(lonely, 'images', 'p.png'), path.join(lonely, 'images', 'p.jpg'));
    assert.throws(() => openDataset(lonely), /ambiguous id 'p'/);
    fs.unlinkSync(path.join(lonely, 'images', 'p.jpg'));
    assert.throws(() => openDataset(lonely, { val: 0.01 }), /empty val split/);
  });

  it('reads a BUS-BRA-style fold CSV (train=1, val=0, test=NaN) and rejects unknown folds', async () => {
    const root = path.join(dir, 'minibus');
    const ids = ['bus_0001-l', 'bus_0001-r', 'bus_0002-l', 'bus_0003-l', 'bus_0004-r', 'bus_0005-l'];
    await makeFlat(root, ids, (id) => `${id}.png`);
    const csv = [
      'ID,Pathology,kFold,valid_1,valid_2',
      'bus_0001-l,benign,1,NaN,1',
      'bus_0001-r,benign,1,NaN,0',
      'bus_0002-l,malignant,2,1,NaN',
      'bus_0003-l,benign,2,0,NaN',
      'bus_0004-r,benign,1,NaN,1',
      'bus_0005-l,benign,2,1,NaN',
    ].join('\n');
    fs.writeFileSync(path.join(root, '5-fold-cv.csv'), csv + '\n');
    const ds = openDataset(root, { fold: 1 });
    assert.equal(ds.layout, 'busbra');
    assert.equal(ds.splitSource, 'fold-csv');
    assert.deepEqual(ds.ids, { train: ['bus_0002-l', 'bus_0005-l'], val: ['bus_0003-l'], test: ['bus_0001-l', 'bus_0001-r', 'bus_0004-r'] });
    assert.deepEqual(openDataset(root, { fold: 2 }).ids.val, ['bus_0001-r']);
    assert.throws(() => openDataset(root, { fold: 3 }), /unknown fold 3 \(this file has folds 1\.\.2\)/);
    assert.throws(() => openDataset(root, { fold: 1, foldFile: '10-fold-cv.csv' }), /10-fold-cv\.csv: fold CSV not found/);
    fs.writeFileSync(path.join(root, '5-fold-cv.csv'), csv.replace('bus_0001-l,benign,1,NaN,1', 'bus_0001-l,benign,1,NaN,1\nbus_9999-l,benign,1,NaN,1') + '\n');
    assert.throws(() => openDataset(root, { fold: 1 }), /1 ids have no image .*bus_9999-l/);
  });

  it('uses the real BUS-BRA folds (patient-wise, documented proportions)', function () {
    if (!fs.existsSync(path.join(BUSBRA, '5-fold-cv.csv'))) {
      this.skip(); // needs ../shared/data/bus-bra (the shared data checkout next to the repository)
    }
    const images = fs.readdirSync(path.join(BUSBRA, 'images'));
    for (const [file, k] of [['5-fold-cv.csv', 5], ['10-fold-cv.csv', 10]] as const) {
      const tests = new Set<string>();
      for (let fold = 1; fold <= k; fold++) {
        const ds = openDataset(BUSBRA, { fold, foldFile: file });
        const { train, val } = ds.ids;
        const test = ds.ids.test!;
        assert.equal(train.length + val.length + test.length, images.length);
        assert.equal(new Set([...train, ...val, ...test]).size, images.length);
        for (const id of test) tests.add(id);
        // Patient-wise: a case number never appears on both sides of train/test.
        const caseOf = (id: string): string => id.replace(/-[lr]$/, '');
        const trainCases = new Set(train.map(caseOf));
        assert.ok(test.every((id) => !trainCases.has(caseOf(id))), `${file} fold ${fold}: patient leak`);
        if (k === 5) {
          const n = images.length;
          assert.ok(Math.abs(train.length / n - 0.64) < 0.05 && Math.abs(val.length / n - 0.16) < 0.05, `${file} fold ${fold}: ${train.length}/${val.length}/${test.length}`);
        }
        assert.ok(fs.existsSync(ds.maskPath(test[0])));
      }
      assert.equal(tests.size, images.length, 'every image is in exactly one test fold');
      assert.throws(() => readFoldCsv(path.join(BUSBRA, file), k + 1), /unknown fold/);
    }
  });
});

describe('data: augmentation', function () {
  it('Rng is deterministic, bounded and restorable', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 20 }, () => a.next());
    assert.deepEqual(xs, Array.from({ length: 20 }, () => b.next()));
    assert.notDeepEqual(xs, Array.from({ length: 20 }, () => new Rng(43).next()));
    const st = a.getState();
    assert.deepEqual(JSON.parse(JSON.stringify(st)), st);
    const next = [a.next(), a.int(10), a.normal()];
    const c = new Rng(0);
    c.setState(st);
    assert.deepEqual([c.next(), c.int(10), c.normal()], next);
    let sum = 0, sq = 0;
    const r = new Rng(1);
    for (let i = 0; i < 20000; i++) {
      const k = r.int(7);
      assert.ok(k >= 0 && k < 7 && Number.isInteger(k));
      const z = r.normal();
      sum += z;
      sq += z * z;
    }
    assert.ok(Math.abs(sum / 20000) < 0.03 && Math.abs(sq / 20000 - 1) < 0.05);
    assert.equal(new Rng('train').next(), new Rng('train').next());
  });

  it('transforms image and mask identically (flips and rot90 exactly)', () => {
    const h = 9, w = 9;
    const img = ramp(h, w);
    // Mask = thresholded image; pairing holds iff the same permutation is applied.
    const mask = Uint8Array.from(img, (v) => (v > 0.37 ? 1 : 0));
    const seen = new Set<string>();
    for (let s = 0; s < 40; s++) {
      const { image, mask: m } = augmentPair(img, mask, h, w, 1, { hflip: 0.5, vflip: 0.5, rot90: 0.5 }, new Rng(s));
      assert.deepEqual(Array.from(m), Array.from(image, (v) => (v > 0.37 ? 1 : 0)));
      assert.deepEqual(Array.from(image).sort(), Array.from(img).sort(), 'a permutation of the pixels');
      seen.add(Array.from(image.subarray(0, 3)).join());
    }
    assert.ok(seen.size >= 6, `only ${seen.size} distinct transforms`);
    // Explicit hflip: first row reversed.
    const f = augmentPair(img, mask, h, w, 1, { hflip: 1 }, new Rng(0)).image;
    assert.deepEqual(Array.from(f.subarray(0, w)), Array.from(img.subarray(0, w)).reverse());
    // Multi-channel images get the same transform on each channel.
    const img3 = new Float32Array(3 * h * w);
    for (let c = 0; c < 3; c++) img3.set(img, c * h * w);
    const r3 = augmentPair(img3, mask, h, w, 3, { hflip: 0.5, vflip: 0.5, rot90: 0.5 }, new Rng(5));
    const r1 = augmentPair(img, mask, h, w, 1, { hflip: 0.5, vflip: 0.5, rot90: 0.5 }, new Rng(5));
    for (let c = 0; c < 3; c++) assert.deepEqual(Array.from(r3.image.subarray(c * h * w, (c + 1) * h * w)), Array.from(r1.image));
    // Non-square: shape preserved (rot90 restricted to 180 degrees).
    const ns = augmentPair(ramp(4, 6), new Uint8Array(24), 4, 6, 1, { rot90: 1 }, new Rng(1)).image;
    assert.equal(ns[0], 1);
    assert.equal(ns[23], 0);
  });

  it('keeps small rotations aligned and leaves the mask out of intensity jitter', () => {
    const h = 48, w = 48;
    const img = new Float32Array(h * w);
    const mask = new Uint8Array(h * w);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const inside = (x - 20) ** 2 / 150 + (y - 26) ** 2 / 60 < 1;
      img[y * w + x] = inside ? 0.9 : 0.1;
      mask[y * w + x] = inside ? 1 : 0;
    }
    for (let s = 0; s < 10; s++) {
      const r = augmentPair(img, mask, h, w, 1, { rotate: { maxDeg: 20 }, brightness: 0.05, contrast: 0.1 }, new Rng(s));
      let inter = 0, union = 0;
      for (let i = 0; i < h * w; i++) {
        const a = r.image[i] > 0.5 ? 1 : 0;
        inter += a & r.mask[i];
        union += a | r.mask[i];
        assert.ok(r.mask[i] === 0 || r.mask[i] === 1);
        assert.ok(r.image[i] >= 0 && r.image[i] <= 1);
      }
      assert.ok(inter / union > 0.9, `IoU ${inter / union}`);
    }
    const jit = augmentPair(img, mask, h, w, 1, { brightness: 0.2 }, new Rng(3));
    assert.deepEqual(Array.from(jit.mask), Array.from(mask));
    assert.notDeepEqual(Array.from(jit.image), Array.from(img));
    // Inputs are untouched.
    assert.equal(img[0], Math.fround(0.1));
  });

  it('normalises per channel', () => {
    const img = new Float32Array([0, 1, 2, 3, 10, 20, 30, 40]);
    const st = channelStats([img], 2);
    assert.deepEqual(st.mean, [1.5, 25]);
    normalize(img, 2, 2, 2, st.mean, st.std);
    assert.ok(Math.abs(img[0] + 1.5 / Math.sqrt(1.25)) < 1e-6);
    const n = augmentPair(new Float32Array([0.5, 0.5]), new Uint8Array(2), 1, 2, 1, { normalize: { mean: [0.25], std: [0.5] } }, new Rng(0));
    assert.deepEqual(Array.from(n.image), [0.5, 0.5]);
  });
});

describe('data: metrics', function () {
  it('computes confusion-based metrics per image and globally', () => {
    // Two 2x3 images. Image 0: target 1 1 0 / 0 0 0, pred(prob) 0.9 0.2 0.7 / 0.1 0.5 0
    //   -> pred 1 0 1 / 0 0 0 (0.5 is not > 0.5): tp=1 fp=1 fn=1 tn=3
    // Image 1: both empty: tp=0 fp=0 fn=0 tn=6
    const target = new Float32Array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const pred = new Float32Array([0.9, 0.2, 0.7, 0.1, 0.5, 0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
    const acc = new MetricAccumulator();
    const [m0, m1] = acc.add(pred, target, 2, 2, 3);
    assert.deepEqual([m0.tp, m0.fp, m0.fn, m0.tn], [1, 1, 1, 3]);
    assert.equal(m0.iou, 1 / 3);
    assert.equal(m0.dice, 0.5);
    assert.equal(m0.precision, 0.5);
    assert.equal(m0.recall, 0.5);
    assert.equal(m0.specificity, 0.75);
    assert.equal(m0.accuracy, 4 / 6);
    // Empty/empty is a perfect image.
    assert.deepEqual([m1.iou, m1.dice, m1.precision, m1.recall, m1.specificity, m1.accuracy, m1.hd95], [1, 1, 1, 1, 1, 1, 0]);
    const s = acc.summary();
    assert.equal(s.count, 2);
    assert.equal(s.perImage.iou, (1 / 3 + 1) / 2);
    assert.equal(s.perImage.dice, 0.75);
    assert.deepEqual([s.global.tp, s.global.fp, s.global.fn, s.global.tn], [1, 1, 1, 9]);
    assert.equal(s.global.iou, 1 / 3);
    assert.equal(s.global.specificity, 0.9);
    assert.equal(s.global.accuracy, 10 / 12);

    // Logits: threshold at 0.
    const lg = new MetricAccumulator({ logits: true });
    const [l0] = lg.add(new Float32Array([2, -1, 0.1, -3, 0, -9]), target.subarray(0, 6), 1, 2, 3);
    assert.deepEqual([l0.tp, l0.fp, l0.fn, l0.tn], [1, 1, 1, 3]);

    // Empty target with false positives; non-empty target with empty prediction.
    const e = new MetricAccumulator();
    const [fpOnly, missed] = e.add(new Float32Array([1, 0, 0, 0, 0, 0, 0, 0]), new Float32Array([0, 0, 0, 0, 0, 1, 0, 0]), 2, 2, 2);
    assert.deepEqual([fpOnly.iou, fpOnly.dice, fpOnly.recall, fpOnly.precision], [0, 0, 0, 0]);
    assert.equal(fpOnly.hd95, Math.hypot(2, 2));
    assert.deepEqual([missed.iou, missed.precision, missed.recall, missed.specificity], [0, 0, 0, 1]);
    assert.equal(e.summary().perImage.hd95EmptyCases, 2);
  });

  it('computes HD95 on tiny hand-worked examples', () => {
    // Single pixels at (0,0) and (3,4): distance 5 both ways.
    const a = new Uint8Array(4 * 5);
    const b = new Uint8Array(4 * 5);
    a[0] = 1;
    b[3 * 5 + 4] = 1;
    assert.equal(hd95(a, b, 4, 5), 5);
    // 1x6 row: A = {0,1}, B = {4,5}. Directed distances both [3,4]:
    // 95th percentile = 3 + 0.95 * (4 - 3) = 3.95.
    const r = (xs: number[]): Uint8Array => Uint8Array.from({ length: 6 }, (_, i) => (xs.includes(i) ? 1 : 0));
    assert.ok(Math.abs(hd95(r([0, 1]), r([4, 5]), 1, 6) - 3.95) < 1e-9);
    // A = {0}, B = {3,4,5}: A->B [3]; B->A [3,4,5] -> position 1.9 -> 4.9; symmetric = max = 4.9.
    assert.ok(Math.abs(hd95(r([0]), r([3, 4, 5]), 1, 6) - 4.9) < 1e-9);
    assert.equal(hd95(r([2]), r([2]), 1, 6), 0);
    assert.equal(hd95(r([]), r([]), 1, 6), 0);
    // Boundary excludes interior pixels: 3x3 block in 5x5 has 8 boundary pixels.
    const blk = new Uint8Array(25);
    for (let y = 1; y < 4; y++) for (let x = 1; x < 4; x++) blk[y * 5 + x] = 1;
    assert.equal(boundary(blk, 5, 5).reduce((s, v) => s + v, 0), 8);
    // Block vs block shifted right by 2 (cols 3..5 in a 5x7 image): every boundary
    // pixel of either lies 0 (shared column 3) or 1..2 px from the other's boundary.
    const sh = new Uint8Array(35);
    const bl = new Uint8Array(35);
    for (let y = 1; y < 4; y++) for (let x = 1; x < 4; x++) {
      bl[y * 7 + x] = 1;
      sh[y * 7 + x + 2] = 1;
    }
    // A's boundary: (1..3,1) column at distance 2 from column 3; (1,2),(3,2) top/bottom at distance 1;
    // (1..3,3) on B's boundary at 0. Sorted: [0,0,0,1,1,2,2,2] -> p95 at 6.65 -> 2.
    assert.equal(hd95(bl, sh, 5, 7), 2);
  });

  it('computes ASSD and NSD on two squares offset by k px, with the empty-mask conventions', () => {
    // 3x3 squares (8 boundary pixels each, the centre is interior) in a 6x6 image, rows 1..3,
    // A at cols 1..3, B = A shifted right by k.
    const sq = (x0: number): Uint8Array => {
      const m = new Uint8Array(36);
      for (let y = 1; y < 4; y++) for (let x = x0; x < x0 + 3; x++) m[y * 6 + x] = 1;
      return m;
    };
    const A = sq(1);
    // k = 1: A->B: col 1 at 1 (x3), (1,2),(3,2) at 0, (1,3),(3,3) at 0, (2,3) is B's interior: 1 from (1,3).
    //   [1,1,1,0,0,0,0,1]: sum 4; B->A the mirror image: sum 4. ASSD = 8 / 16.
    const s1 = surfaceMetrics(A, sq(2), 6, 6, 0);
    assert.equal(s1.assd, 0.5);
    assert.equal(s1.surfacePixels, 16);
    assert.equal(s1.surfaceDistanceSum, 8);
    assert.equal(s1.nsd, 0.5); // tolerance 0: only the 8 zero distances
    assert.equal(nsd(A, sq(2), 6, 6, 1), 1);
    // k = 2: A->B: col 1 at 2 (x3), (1,2),(3,2) at 1, col 3 on B's boundary at 0: sum 8; B->A the same.
    assert.equal(assd(A, sq(3), 6, 6), 1);
    assert.equal(nsd(A, sq(3), 6, 6), 1); // default tolerance 2 px: every distance is <= 2
    assert.equal(nsd(A, sq(3), 6, 6, 1.5), 10 / 16); // the six 2 px distances are outside
    assert.equal(assd(A, A, 6, 6), 0);
    assert.equal(nsd(A, A, 6, 6, 0), 1);
    // Empty masks: both empty is perfect; one empty is the image diagonal / 0.
    const E = new Uint8Array(36);
    assert.deepEqual([assd(E, E, 6, 6), nsd(E, E, 6, 6)], [0, 1]);
    assert.deepEqual([assd(A, E, 6, 6), nsd(A, E, 6, 6)], [Math.hypot(6, 6), 0]);
    assert.deepEqual([assd(E, A, 6, 6), nsd(E, A, 6, 6)], [Math.hypot(6, 6), 0]);
    assert.throws(() => nsd(A, A, 6, 6, -1), /NSD tolerance must be a finite number of pixels >= 0, got -1/);
  });

  it('reports ASSD / NSD per image and pooled, sample std per metric, and a per-case CSV', () => {
    const sq = (x0: number): number[] => Array.from({ length: 36 }, (_, i) => (Math.floor(i / 6) >= 1 && Math.floor(i / 6) <= 3 && i % 6 >= x0 && i % 6 < x0 + 3 ? 1 : 0));
    const fpOnly = Array.from({ length: 36 }, (_, i) => (i === 0 ? 1 : 0));
    const pred = new Float32Array([...sq(2), ...sq(3), ...fpOnly]);
    const target = new Float32Array([...sq(1), ...sq(1), ...new Array(36).fill(0)]);
    const acc = new MetricAccumulator({ nsdTolerance: 1 });
    const recs = acc.add(pred, target, 3, 6, 6, ['a', 'b, "2"', 'c']);
    const diag = Math.hypot(6, 6);
    assert.deepEqual(recs.map((r) => r.assd), [0.5, 1, diag]);
    assert.deepEqual(recs.map((r) => r.nsd), [1, 10 / 16, 0]);
    const s = acc.summary();
    assert.equal(s.nsdTolerance, 1);
    assert.ok(Math.abs(s.perImage.assd - (1.5 + diag) / 3) < 1e-12);
    // Pooled: 16 + 16 boundary pixels of the squares and the one false-positive pixel (at the diagonal).
    assert.ok(Math.abs(s.global.assd - (8 + 16 + diag) / 33) < 1e-12);
    assert.equal(s.global.nsd, (16 + 10) / 33);
    const m = (1.5 + diag) / 3;
    const std = Math.sqrt(((0.5 - m) ** 2 + (1 - m) ** 2 + (diag - m) ** 2) / 2);
    assert.ok(Math.abs(s.perImageStd.assd - std) < 1e-12);
    // Dice per image: 2*6/(9+9) = 2/3, 2*3/(9+9) = 1/3, 0.
    assert.ok(Math.abs(s.perImageStd.dice - Math.sqrt(((2 / 3 - 1 / 3) ** 2 + 0 + (0 - 1 / 3) ** 2) / 2)) < 1e-12);
    const csv = perCaseCsv(acc.records).trimEnd().split('\n');
    assert.equal(csv[0], 'id,dice,iou,precision,recall,hd95,assd,nsd');
    assert.equal(csv.length, 4);
    assert.match(csv[2], /^"b, ""2""",0\.333/);
    assert.equal(csv[3].split(',')[6], String(diag));
    // A single image has no sample std; without surface metrics the CSV cells are empty.
    const one = new MetricAccumulator({ hd95: false });
    one.add(pred.subarray(0, 36), target.subarray(0, 36), 1, 6, 6);
    assert.ok(Number.isNaN(one.summary().perImageStd.dice));
    assert.ok(Number.isNaN(one.summary().global.assd));
    assert.match(perCaseCsv(one.records), /\n0,0\.6+\d*,0\.5,0\.6+\d*,0\.6+\d*,,,\n$/);
    assert.throws(() => acc.add(pred, target, 3, 6, 6, ['x']), /1 ids for 3 images/);
    // The training logs / cv.json carry them with HD95 (pooled and per-image), not without.
    const rec = metricRecord(s);
    assert.deepEqual([rec.assd, rec.nsd, rec.assd_img, rec.nsd_img], [s.global.assd, s.global.nsd, s.perImage.assd, s.perImage.nsd]);
    assert.ok(!('assd' in metricRecord(one.summary())));
  });

  it('evaluate() rejects a bad NSD tolerance before loading anything', async () => {
    await assert.rejects(evaluate({ checkpoint: 'no-such-run', data: 'no-such-data', nsdTolerance: -1 }), /--nsd-tolerance must be a number of pixels >= 0, got -1/);
    await assert.rejects(evaluate({ checkpoint: 'no-such-run', data: 'no-such-data', nsdTolerance: NaN }), /--nsd-tolerance must be a number of pixels >= 0, got NaN/);
  });
});

describe('data: loader', function () {
  this.timeout(20000);
  let root: string;
  before(async () => {
    root = tmpDir('loader');
    await generateSyntheticDataset(root, { count: 22, size: [40, 48], seed: 11 });
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  async function collect(loader: DataLoader, epoch: number): Promise<{ images: Float32Array; masks: Float32Array; ids: string[] }[]> {
    const out = [];
    for await (const b of loader.epoch(epoch)) out.push({ images: b.images, masks: b.masks, ids: b.ids });
    return out;
  }

  it('assembles [B,C,H,W] batches, honours dropLast and is deterministic across worker counts', async () => {
    const ds = openDataset(root, { val: 0.2, seed: 1 });
    const ids = ds.allIds;
    const opts = { batchSize: 5, size: [32, 32] as [number, number], channels: 3 as const, seed: 9, augment: { hflip: 0.5, vflip: 0.5, rot90: 0.5, rotate: { maxDeg: 10, p: 0.5 }, brightness: 0.1 } };
    const inProc = new DataLoader(ds, ids, { ...opts, workers: 0 });
    const pooled = new DataLoader(ds, ids, { ...opts, workers: 2, prefetch: 3 });
    try {
      assert.equal(inProc.numBatches, 5);
      const a = await collect(inProc, 0);
      const b = await collect(pooled, 0);
      assert.deepEqual(a.map((x) => x.images.length), [5, 5, 5, 5, 2].map((n) => n * 3 * 32 * 32));
      assert.deepEqual(a.map((x) => x.masks.length), [5, 5, 5, 5, 2].map((n) => n * 32 * 32));
      for (let i = 0; i < a.length; i++) {
        assert.deepEqual(a[i].ids, b[i].ids);
        assert.deepEqual(a[i].images, b[i].images);
        assert.deepEqual(a[i].masks, b[i].masks);
      }
      assert.deepEqual(a.flatMap((x) => x.ids).sort(), [...ids].sort());
      for (const x of a) for (const v of x.masks) assert.ok(v === 0 || v === 1);
      const e1 = await collect(pooled, 1);
      assert.notDeepEqual(e1.map((x) => x.ids), a.map((x) => x.ids), 'epochs are shuffled differently');
      const again = await collect(pooled, 0);
      assert.deepEqual(again.map((x) => x.images), b.map((x) => x.images));
      assert.ok(pooled.waitMs >= 0);
      const dl = new DataLoader(ds, ids, { ...opts, dropLast: true, workers: 0 });
      assert.deepEqual((await collect(dl, 0)).map((x) => x.ids.length), [5, 5, 5, 5]);
    } finally {
      await pooled.close();
    }
  });

  it('caches decoded samples but still augments per epoch, matching the uncached loader', async () => {
    const ds = openDataset(root);
    const ids = ds.allIds.slice(0, 8);
    const opts = { batchSize: 4, size: [24, 24] as [number, number], seed: 2, augment: { hflip: 0.5, rot90: 0.5 }, normalize: { mean: [0.5], std: [0.25] } };
    const cached = new DataLoader(ds, ids, { ...opts, cache: true, workers: 1 });
    const plain = new DataLoader(ds, ids, { ...opts, workers: 0 });
    try {
      for (let e = 0; e < 3; e++) {
        const c = await collect(cached, e);
        const p = await collect(plain, e);
        assert.deepEqual(c, p);
        assert.equal(cached.cachedCount, 8);
      }
    } finally {
      await cached.close();
    }
    // Validation-style loader: no shuffle keeps the given order.
    const val = new DataLoader(ds, ids, { batchSize: 3, size: [24, 24], shuffle: false, workers: 0 });
    assert.deepEqual((await collect(val, 0)).flatMap((b) => b.ids), ids);
  });

  it('shares one SampleCache between loaders, so each file is decoded once between them', async () => {
    const dir = tmpDir('sharedcache');
    try {
      await generateSyntheticDataset(dir, { count: 6, size: 32, seed: 3 });
      const ds = openDataset(dir, { val: 0.5 });
      const ids = ds.allIds;
      const cache = new SampleCache();
      const stats = new DataLoader(ds, ids, { batchSize: 4, size: [24, 24], shuffle: false, workers: 1, cache });
      const plainOpts = { batchSize: 3, size: [24, 24] as [number, number], seed: 5, augment: { hflip: 0.5, rot90: 0.5 }, normalize: { mean: [0.5], std: [0.25] } };
      const expected = await collect(new DataLoader(ds, ids, { ...plainOpts, workers: 0 }), 0);
      try {
        await collect(stats, 0);
      } finally {
        await stats.close();
      }
      assert.equal(cache.size, ids.length);
      // The files are gone: the training loader can only be served from the shared cache.
      fs.rmSync(path.join(dir, 'images'), { recursive: true });
      fs.rmSync(path.join(dir, 'masks'), { recursive: true });
      const train = new DataLoader(ds, ids, { ...plainOpts, workers: 1, cache });
      try {
        assert.deepEqual(await collect(train, 0), expected);
      } finally {
        await train.close();
      }
      assert.throws(() => new DataLoader(ds, ids, { batchSize: 2, size: [32, 32], cache }), /SampleCache holds samples decoded with .*"size":\[24,24\].*this loader decodes with .*"size":\[32,32\]/);
      assert.throws(() => new DataLoader(ds, ids, { batchSize: 2, size: [24, 24], channels: 3, cache }), /"channels":1.*"channels":3/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('propagates decode errors from workers with the file name', async () => {
    const bad = tmpDir('badloader');
    try {
      await generateSyntheticDataset(bad, { count: 4, size: 32, seed: 1 });
      fs.writeFileSync(path.join(bad, 'images', 'syn_0002.png'), 'garbage bytes');
      const ds = openDataset(bad, { val: 0.25 });
      const loader = new DataLoader(ds, ds.allIds, { batchSize: 2, size: [32, 32], shuffle: false, workers: 1 });
      try {
        await assert.rejects(collect(loader, 0), (e: Error) => e instanceof DataError && /syn_0002\.png/.test(e.message) && e.code === 'corrupt');
      } finally {
        await loader.close();
      }
    } finally {
      fs.rmSync(bad, { recursive: true, force: true });
    }
  });
});
