// Test-time augmentation: the dihedral transforms, their inverses, and the averaged probabilities.
import { strict as assert } from 'node:assert';
import { tensor, Tensor } from '../src/tensor';
import { conv2d } from '../src/tensor/ops/conv';
import { Generator } from '../src/tensor/random';
import { parseTtaMode, transformPlanes, ttaProbabilities, ttaTransforms, untransformPlanes } from '../src/train/tta';

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
function randomArray(n: number, seed: number): Float32Array {
  const g = new Generator(seed);
  return Float32Array.from({ length: n }, () => g.next() * 4 - 2);
}
function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

describe('test-time augmentation', () => {
  it('transforms a 2x3 plane as flips and numpy rot90 do, and undoes them', () => {
    // [[1 2 3], [4 5 6]]
    const x = [1, 2, 3, 4, 5, 6];
    const tf = (flip: boolean, quarter: 0 | 1 | 2 | 3) => transformPlanes(x, 1, 2, 3, { flip, quarter });
    assert.deepEqual(Array.from(tf(true, 0).data), [3, 2, 1, 6, 5, 4]);
    // np.rot90 (counter-clockwise): [[3 6], [2 5], [1 4]]
    const r1 = tf(false, 1);
    assert.deepEqual([r1.height, r1.width], [3, 2]);
    assert.deepEqual(Array.from(r1.data), [3, 6, 2, 5, 1, 4]);
    assert.deepEqual(Array.from(tf(false, 2).data), [6, 5, 4, 3, 2, 1]);
    assert.deepEqual(Array.from(tf(false, 3).data), [4, 1, 5, 2, 6, 3]);
    // Flip then a half turn = vertical flip.
    assert.deepEqual(Array.from(tf(true, 2).data), [4, 5, 6, 1, 2, 3]);
    // Flip then a quarter turn = transpose: [[1 4], [2 5], [3 6]]
    assert.deepEqual(Array.from(tf(true, 1).data), [1, 4, 2, 5, 3, 6]);
    for (const t of ttaTransforms('d4')) {
      const y = transformPlanes(x, 1, 2, 3, t);
      assert.deepEqual(Array.from(untransformPlanes(y.data, 1, 2, 3, t)), x, JSON.stringify(t));
    }
    // The 8 transforms of a plane with distinct values are all different.
    assert.equal(new Set(ttaTransforms('d4').map((t) => Array.from(transformPlanes(x, 1, 2, 3, t).data).join())).size, 8);
    assert.equal(ttaTransforms('flips').length, 4);
    assert.equal(ttaTransforms('none').length, 1);
  });

  it('an equivariant model (pointwise conv) gives the plain probabilities, sigmoid and softmax', () => {
    const w1 = tensor(randomArray(2, 1), [1, 2, 1, 1]);
    const w2 = tensor(randomArray(6, 2), [3, 2, 1, 1]);
    const b2 = tensor(randomArray(3, 3), [3]);
    for (const [h, w] of [[4, 4], [3, 5]]) {
      const x = randomArray(2 * 2 * h * w, 4);
      const plain1 = (conv2d(tensor(x, [2, 2, h, w]), w1).toArray() as Float32Array).map(sigmoid);
      const logits2 = conv2d(tensor(x, [2, 2, h, w]), w2, b2).toArray() as Float32Array;
      const hw = h * w;
      const plain2 = new Float32Array(logits2.length);
      for (let n = 0; n < 2; n++) for (let i = 0; i < hw; i++) {
        const e = [0, 1, 2].map((c) => Math.exp(logits2[(n * 3 + c) * hw + i]));
        const s = e[0] + e[1] + e[2];
        for (let c = 0; c < 3; c++) plain2[(n * 3 + c) * hw + i] = e[c] / s;
      }
      for (const mode of ['none', 'flips', 'd4'] as const) {
        const r1 = ttaProbabilities((t) => conv2d(t, w1), x, [2, 2, h, w], mode);
        assert.equal(r1.channels, 1);
        assertClose(r1.data, plain1, 1e-6, `sigmoid ${mode} ${h}x${w}`);
        const r2 = ttaProbabilities((t) => conv2d(t, w2, b2), x, [2, 2, h, w], mode);
        assert.equal(r2.channels, 3);
        assertClose(r2.data, plain2, 1e-6, `softmax ${mode} ${h}x${w}`);
      }
    }
  });

  it('a shifting model gives the average of the shifts its conjugates make', () => {
    // out[y][x] = in[y][x - 1] (zero padding): a 3x3 cross-correlation with one tap at (1, 0).
    const k = new Float32Array(9);
    k[3] = 1;
    const shiftModel = (t: Tensor) => conv2d(t, tensor(k, [1, 1, 3, 3]), null, { padding: 1 });
    for (const [h, w] of [[3, 5], [4, 4]]) {
      const x = randomArray(h * w, 9);
      const at = (y: number, xx: number) => (y >= 0 && y < h && xx >= 0 && xx < w ? x[y * w + xx] : 0);
      const plain = ttaProbabilities(shiftModel, x, [1, 1, h, w], 'none').data;
      const flips = ttaProbabilities(shiftModel, x, [1, 1, h, w], 'flips').data;
      const d4 = ttaProbabilities(shiftModel, x, [1, 1, h, w], 'd4').data;
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < w; xx++) {
          const i = y * w + xx;
          const fromLeft = sigmoid(at(y, xx - 1)), fromRight = sigmoid(at(y, xx + 1));
          const fromAbove = sigmoid(at(y - 1, xx)), fromBelow = sigmoid(at(y + 1, xx));
          assert.ok(Math.abs(plain[i] - fromLeft) < 1e-6, `plain ${y},${xx}`);
          // A horizontal flip turns the shift from the left into one from the right; a vertical flip keeps it.
          assert.ok(Math.abs(flips[i] - (fromLeft + fromRight) / 2) < 1e-6, `flips ${h}x${w} at ${y},${xx}: ${flips[i]}`);
          // Quarter turns add the vertical shifts; each direction appears twice among the 8.
          assert.ok(Math.abs(d4[i] - (fromLeft + fromRight + fromAbove + fromBelow) / 4) < 1e-6, `d4 ${h}x${w} at ${y},${xx}: ${d4[i]}`);
        }
      }
    }
  });

  it('bad modes and outputs of the wrong size: clear errors', () => {
    assert.throws(() => parseTtaMode('rot90'), /test-time augmentation must be one of none, flips, d4, got 'rot90'/);
    assert.throws(() => ttaProbabilities((t) => t, new Float32Array(4), [1, 1, 2, 2], 'hv' as never), /must be one of none, flips, d4, got 'hv'/);
    assert.throws(() => ttaProbabilities((t) => t, new Float32Array(5), [1, 1, 2, 2], 'flips'), /5 values, expected 1 planes of 2x2/);
    const w = tensor(new Float32Array(4).fill(0.25), [1, 1, 2, 2]);
    assert.throws(() => ttaProbabilities((t) => conv2d(t, w), new Float32Array(9), [1, 1, 3, 3], 'flips'), /output is \[1, K, 3, 3\].*got \[1, 1, 2, 2\]/);
  });
});
