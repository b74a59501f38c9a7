// Gamma, CLAHE-like contrast, elastic deformation and the combined affine transform (src/data/augment.ts).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  AugmentOptions, DataLoader, Rng, STRONG_AUGMENT, affineCoords, augmentPair, elasticCoords, generateSyntheticDataset, localContrast,
  openDataset, sampleBilinear, sampleNearest, validateAugmentOptions,
} from '../src/data';

/** An h x w image (0.1 background) with a bright (1.0) square at rows/cols [y0, y0+s) x [x0, x0+s), and its mask. */
function square(h: number, w: number, y0: number, x0: number, s: number): { img: Float32Array; mask: Uint8Array } {
  const img = new Float32Array(h * w).fill(0.1);
  const mask = new Uint8Array(h * w);
  for (let y = y0; y < y0 + s; y++) for (let x = x0; x < x0 + s; x++) {
    img[y * w + x] = 1;
    mask[y * w + x] = 1;
  }
  return { img, mask };
}

describe('augment: gamma, CLAHE, elastic, affine', function () {
  this.timeout(20000);

  it('identity parameters give the input back exactly', () => {
    const h = 12, w = 10;
    const img = Float32Array.from({ length: h * w }, (_, i) => ((i * 37) % 101) / 100);
    const mask = Uint8Array.from(img, (v) => (v > 0.5 ? 1 : 0));
    const identity: AugmentOptions = {
      gamma: { range: [1, 1] }, affine: { scale: [1, 1], shift: 0, rotate: 0 }, elastic: { alpha: 0, sigma: 3 }, clahe: { clipLimit: 2, p: 0 },
    };
    const r = augmentPair(img, mask, h, w, 1, identity, new Rng(3));
    assert.deepEqual(Array.from(r.image), Array.from(img));
    assert.deepEqual(Array.from(r.mask), Array.from(mask));
    // The samplers themselves are exact at integer positions (identity transform sampled, not skipped).
    const id = affineCoords(h, w, {});
    assert.deepEqual(Array.from(sampleBilinear(img, h, w, 1, id)), Array.from(img));
    assert.deepEqual(Array.from(sampleNearest(mask, h, w, id)), Array.from(mask));
  });

  it('a pure 2 px shift moves a drawn square by 2 px in image and mask', () => {
    const h = 10, w = 10;
    const { img, mask } = square(h, w, 3, 3, 3);
    const right = affineCoords(h, w, { shiftX: 2 });
    const im = sampleBilinear(img, h, w, 1, right);
    const mk = sampleNearest(mask, h, w, right);
    const moved = square(h, w, 3, 5, 3);
    assert.deepEqual(Array.from(mk), Array.from(moved.mask));
    // The two leftmost columns came from outside the image: 0 there, the moved image elsewhere.
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) assert.equal(im[y * w + x], x < 2 ? 0 : moved.img[y * w + x], `(${y},${x})`);
    const up = sampleNearest(mask, h, w, affineCoords(h, w, { shiftY: -2 }));
    assert.deepEqual(Array.from(up), Array.from(square(h, w, 1, 3, 3).mask));
    // Scale 3 about the centre of a 9x9 image: the centre pixel becomes 3x3 (nearest: 3 -> 3.67 -> 4, 2 -> 3.33 -> 3).
    const c = square(9, 9, 4, 4, 1);
    assert.deepEqual(Array.from(sampleNearest(c.mask, 9, 9, affineCoords(9, 9, { scale: 3 }))), Array.from(square(9, 9, 3, 3, 3).mask));
  });

  it('keeps image and mask aligned under random affine + elastic transforms, deterministically per seed', () => {
    const h = 32, w = 32;
    const { img, mask } = square(h, w, 10, 8, 12);
    const opts: AugmentOptions = { affine: { scale: [0.8, 1.2], shift: 0.1, rotate: 30 }, elastic: { alpha: 3, sigma: 4 } };
    let changed = 0;
    for (let s = 0; s < 10; s++) {
      const r = augmentPair(img, mask, h, w, 1, opts, new Rng(s));
      let fg = 0;
      for (let i = 0; i < h * w; i++) {
        // Wherever the image is wholly inside the bright square, the mask is foreground; wherever the
        // mask is foreground, its nearest source pixel is bright, so the bilinear value is >= 1/4 of it
        // (affine and elastic are one resampling, not two).
        if (r.image[i] > 0.999) assert.equal(r.mask[i], 1, `seed ${s} pixel ${i}: bright image, background mask`);
        if (r.mask[i]) {
          fg++;
          assert.ok(r.image[i] >= 0.25, `seed ${s} pixel ${i}: foreground mask on a dark pixel (${r.image[i]})`);
        }
      }
      assert.ok(fg > 50, `seed ${s}: the square is still there (${fg} px)`);
      if (r.mask.some((v, i) => v !== mask[i])) changed++;
      const again = augmentPair(img, mask, h, w, 1, opts, new Rng(s));
      assert.deepEqual(Array.from(again.image), Array.from(r.image));
      assert.deepEqual(Array.from(again.mask), Array.from(r.mask));
    }
    assert.equal(changed, 10, 'every seed moved the square');
    const a = augmentPair(img, mask, h, w, 1, STRONG_AUGMENT, new Rng(1)).image;
    const b = augmentPair(img, mask, h, w, 1, STRONG_AUGMENT, new Rng(2)).image;
    assert.notDeepEqual(Array.from(a), Array.from(b));
  });

  it('elastic displacements are smooth and peak at alpha px', () => {
    const h = 24, w = 20;
    const c = elasticCoords(h, w, 3, 4, new Rng(7));
    let peak = 0, jump = 0;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const i = y * w + x;
      peak = Math.max(peak, Math.abs(c[2 * i] - x), Math.abs(c[2 * i + 1] - y));
      if (x > 0) jump = Math.max(jump, Math.abs(c[2 * i] - x - (c[2 * i - 2] - (x - 1))));
    }
    assert.ok(Math.abs(peak - 3) < 1e-9, `peak ${peak}`);
    assert.ok(jump < 1, `neighbouring displacements differ by < 1 px after smoothing (${jump})`);
  });

  it('gamma raises values to the drawn power; CLAHE stretches a low-contrast image, monotonically', () => {
    const img = new Float32Array([0, 0.25, 0.5, 1, 1.5, -0.2]);
    const g = augmentPair(img, new Uint8Array(6), 1, 6, 1, { gamma: { range: [2, 2] } }, new Rng(0)).image;
    assert.deepEqual(Array.from(g), [0, 0.0625, 0.25, 1, 1, 0]);
    // A ramp over 0.4..0.6 (one tile): histogram equalisation spreads it over most of 0..1, keeping the order.
    const h = 16, w = 16;
    const ramp = Float32Array.from({ length: h * w }, (_, i) => 0.4 + (0.2 * i) / (h * w - 1));
    const out = localContrast(ramp, h, w, 1, 100, 1);
    for (let i = 1; i < out.length; i++) assert.ok(out[i] >= out[i - 1], `monotone at ${i}`);
    assert.ok(out[out.length - 1] - out[0] > 0.9, `range ${out[0]}..${out[out.length - 1]}`);
    // A low clip limit limits the stretch; 8x8 tiles blend smoothly (no value outside 0..1).
    const clipped = localContrast(ramp, h, w, 1, 1.5, 1);
    assert.ok(clipped[clipped.length - 1] - clipped[0] < out[out.length - 1] - out[0]);
    const tiled = localContrast(ramp, h, w, 1, 2, 8);
    assert.ok(tiled.every((v) => v >= 0 && v <= 1));
    // Three channels are equalised independently, as one channel would be.
    const three = new Float32Array([...ramp, ...ramp, ...ramp]);
    assert.deepEqual(Array.from(localContrast(three, h, w, 3, 2, 4).subarray(2 * h * w)), Array.from(localContrast(ramp, h, w, 1, 2, 4)));
  });

  it('rejects bad options with errors naming the option', () => {
    const bad: [unknown, RegExp][] = [
      [{ gama: {} }, /unknown option 'gama'/],
      [{ gamma: { range: [0, 1] } }, /gamma\.range must be \[lo, hi\] with 0 < lo <= hi, got \[0,1\]/],
      [{ gamma: { range: [2, 1] } }, /gamma\.range/],
      [{ gamma: { range: [1, 1], p: 2 } }, /gamma\.p must be a probability/],
      [{ clahe: { clipLimit: 0 } }, /clahe\.clipLimit must be a number > 0/],
      [{ clahe: { clipLimit: 2, tiles: 0 } }, /clahe\.tiles must be an integer in \[1, 64\]/],
      [{ elastic: { alpha: 2, sigma: 0 } }, /elastic\.sigma/],
      [{ elastic: { alpha: -1, sigma: 2 } }, /elastic\.alpha/],
      [{ affine: { shift: 1 } }, /affine\.shift must be a fraction of the side in \[0, 1\)/],
      [{ affine: { scale: [0, 2] } }, /affine\.scale/],
      [{ affine: { zoom: 1 } }, /unknown option 'affine\.zoom'/],
      [{ hflip: 1.5 }, /hflip must be a probability/],
      [[], /must be an object/],
    ];
    for (const [o, re] of bad) assert.throws(() => validateAugmentOptions(o), re, JSON.stringify(o));
    validateAugmentOptions(STRONG_AUGMENT);
  });

  describe('in the loader', () => {
    let root: string;
    before(async () => {
      root = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-augment-'));
      await generateSyntheticDataset(root, { count: 6, size: [32, 32], seed: 2 });
    });
    after(() => fs.rmSync(root, { recursive: true, force: true }));

    it('runs the strong preset in worker threads exactly as in-process, and rejects bad options up front', async () => {
      const ds = openDataset(root, { val: 0.2, seed: 1 });
      const opts = { batchSize: 3, size: [32, 32] as [number, number], channels: 1 as const, seed: 4, augment: STRONG_AUGMENT };
      const collect = async (workers: number) => {
        const l = new DataLoader(ds, ds.allIds, { ...opts, workers });
        const out: number[][] = [];
        try {
          for await (const b of l.epoch(0)) out.push(Array.from(b.images), Array.from(b.masks));
        } finally {
          await l.close();
        }
        return out;
      };
      assert.deepEqual(await collect(1), await collect(0));
      assert.throws(() => new DataLoader(ds, ds.allIds, { ...opts, augment: { elastic: { alpha: 1, sigma: -1 } } }), /elastic\.sigma/);
    });
  });
});
