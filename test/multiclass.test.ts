// Multi-class building blocks: one-hot / argmax, softmax cross-entropy and Dice by hand, per-class Dice / IoU.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp = require('sharp');
import * as sc from '../src';
import { gradcheck } from '../src/autograd/gradcheck';
import { DataError, MultiClassMetricAccumulator, argmaxClasses, oneHot, readClassMask } from '../src/data';
import { softmaxCrossEntropy, softmaxDiceLoss } from '../src/train';

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
