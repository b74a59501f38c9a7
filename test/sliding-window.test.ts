// Sliding-window inference (predict --window / --overlap): window placement, Gaussian blending,
// equality with the plain path when one window covers the image, masks at the original size.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { manualSeed, tensor, Tensor } from '../src/tensor';
import { noGrad } from '../src/autograd/engine';
import { binarize, readImage, readMask, writePng } from '../src/data';
import { createModel, ensureSyntheticData, gaussianWeights, loadEnsemble, ensembleProbabilities, predict, slidingWindowProbabilities, windowPositions, UserError } from '../src/train';
import { saveModelOnly, ModelMeta } from '../src/train/checkpoint';
import { buildProgram } from '../src/cli/main';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-window-'));
const SIZE = 32;

/** A deterministic test image: a smooth pattern plus a step, c x h x w in 0..1. */
function pattern(c: number, h: number, w: number): Float32Array {
  const x = new Float32Array(c * h * w);
  for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) for (let i = 0; i < w; i++) x[(ch * h + y) * w + i] = 0.5 + 0.4 * Math.sin(0.3 * y + 0.17 * i + ch) * (i > w / 3 ? 1 : -0.5);
  return x;
}

describe('sliding-window inference', function () {
  this.timeout(60000);
  const data = path.join(tmp, 'data');
  const ckpt = path.join(tmp, 'model.safetensors');
  const meta: ModelMeta = { model: 'tiny', modelOptions: { width: 4, inChannels: 1 }, size: SIZE, channels: 1, normalize: { mean: [0.45], std: [0.2] }, epoch: 1, task: 'segmentation', tag: 'test' };
  before(async () => {
    await ensureSyntheticData(data, 4, SIZE);
    manualSeed(11);
    const model = createModel('tiny', meta.modelOptions);
    // Shift the head bias to the median logit so the random net's masks are speckled, not empty.
    const img = await readImage(path.join(data, 'images', 'syn_0000.png'), { channels: 1 });
    const x = img.data.map((v) => (v - 0.45) / 0.2);
    const logits = noGrad(() => (model.forward(tensor(x, [1, 1, SIZE, SIZE])) as Tensor).toArray() as Float32Array);
    const median = [...logits].sort((p, q) => p - q)[logits.length >> 1];
    const sd = model.stateDict();
    const biasKey = Object.keys(sd).filter((k) => k.endsWith('bias')).pop()!;
    model.loadStateDict({ ...sd, [biasKey]: tensor((sd[biasKey].toArray() as Float32Array).map((v) => v - median), sd[biasKey].shape) });
    saveModelOnly(ckpt, model, meta);
    model.dispose();
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('places windows evenly from edge to edge with at most window * (1 - overlap) between them', () => {
    assert.deepEqual(windowPositions(32, 32, 0.5), [0]);
    assert.deepEqual(windowPositions(20, 32, 0.5), [0]);
    assert.deepEqual(windowPositions(64, 32, 0), [0, 32]);
    const p = windowPositions(100, 32, 0.5);
    assert.equal(p[0], 0);
    assert.equal(p[p.length - 1], 68);
    for (let i = 1; i < p.length; i++) assert.ok(p[i] - p[i - 1] <= 16 && p[i] > p[i - 1], String(p));
    const g = gaussianWeights(33);
    assert.equal(g[16 * 33 + 16], 1);
    // Corner: 16 pixels from the centre on both axes, sigma = 33 / 8.
    assert.ok(Math.abs(g[0] - Math.exp(-(16 * 16 + 16 * 16) / (2 * (33 / 8) ** 2))) < 1e-15);
    assert.equal(g[3 * 33 + 5], g[5 * 33 + 3]);
    assert.equal(g[3 * 33 + 5], g[(32 - 3) * 33 + (32 - 5)]);
  });

  it('blending a constant model gives that constant everywhere, and a pointwise model gives its value at every pixel', () => {
    for (const [h, w, win, ov] of [[70, 45, 32, 0.5], [20, 20, 32, 0.5], [64, 96, 32, 0.25], [41, 33, 16, 0.75]]) {
      const img = pattern(2, h, w);
      const constant = (x: Float32Array, shape: [number, number, number, number]) => {
        const [n, , hh, ww] = shape;
        const out = new Float32Array(n * 2 * hh * ww);
        for (let i = 0; i < out.length; i++) out[i] = Math.floor(i / (hh * ww)) % 2 ? 0.3 : 0.7;
        return { data: out, channels: 2 };
      };
      const c = slidingWindowProbabilities(constant, img, 2, h, w, { window: win, overlap: ov });
      assert.equal(c.channels, 2);
      assert.equal(c.data.length, 2 * h * w);
      for (let i = 0; i < h * w; i++) {
        assert.equal(c.data[i], Math.fround(0.7), `${h}x${w} pixel ${i}`);
        assert.equal(c.data[h * w + i], Math.fround(0.3), `${h}x${w} pixel ${i}`);
      }
      // A model that looks at one pixel: every window agrees on it, so the blend must be exactly
      // the value at that pixel (a misplaced window or weight would show here).
      const f = (v: number, u: number) => 1 / (1 + Math.exp(-(3 * v - 2 * u)));
      const pointwise = (x: Float32Array, shape: [number, number, number, number]) => {
        const [n, , hh, ww] = shape;
        const hw = hh * ww;
        const out = new Float32Array(n * hw);
        for (let b = 0; b < n; b++) for (let i = 0; i < hw; i++) out[b * hw + i] = f(x[(b * 2) * hw + i], x[(b * 2 + 1) * hw + i]);
        return { data: out, channels: 1 };
      };
      const p = slidingWindowProbabilities(pointwise, img, 2, h, w, { window: win, overlap: ov });
      for (let i = 0; i < h * w; i++) assert.ok(Math.abs(p.data[i] - f(img[i], img[h * w + i])) < 1e-6, `${h}x${w} pixel ${i}`);
    }
  });

  it('predict --window equal to the image size equals the plain path (also with TTA and an ensemble)', async () => {
    for (const [checkpoint, tta] of [[ckpt, 'none'], [[ckpt, ckpt], 'flips']] as const) {
      const a = path.join(tmp, `plain-${tta}`), b = path.join(tmp, `window-${tta}`);
      await predict({ checkpoint: checkpoint as string | string[], input: path.join(data, 'images'), out: a, tta });
      await predict({ checkpoint: checkpoint as string | string[], input: path.join(data, 'images'), out: b, tta, window: SIZE, overlap: 0.5 });
      const masks = fs.readdirSync(a).filter((n) => !n.includes('_overlay'));
      assert.equal(masks.length, 4);
      for (const f of masks) assert.deepEqual(await readMask(path.join(b, f)), await readMask(path.join(a, f)), f);
    }
  });

  it('predict on a larger image writes masks at its original size, windowed = blended window probabilities', async () => {
    const big = path.join(tmp, 'big');
    fs.mkdirSync(big);
    const H = 70, W = 50;
    await writePng(path.join(big, 'wide (1).png'), pattern(1, H, W), { width: W, height: H, channels: 1 });
    const plain = path.join(tmp, 'big-plain'), win = path.join(tmp, 'big-window');
    await predict({ checkpoint: ckpt, input: big, out: plain });
    await predict({ checkpoint: ckpt, input: big, out: win, window: SIZE, overlap: 0.5 });
    for (const dir of [plain, win]) {
      const img = await readImage(path.join(dir, 'wide (1).png'));
      assert.deepEqual([img.height, img.width], [H, W], dir);
    }
    const img = await readImage(path.join(big, 'wide (1).png'), { channels: 1 });
    const ens = loadEnsemble(ckpt);
    const ref = slidingWindowProbabilities((x, shape) => ensembleProbabilities(ens, x, shape, 'none'), img.data, 1, H, W, { window: SIZE, overlap: 0.5 });
    ens.dispose();
    const got = await readMask(path.join(win, 'wide (1).png'));
    assert.deepEqual(got, binarize(ref.data));
    assert.notDeepEqual(got, await readMask(path.join(plain, 'wide (1).png')), 'windows at full resolution differ from the resized pass');
  });

  it('bad --window / --overlap: clear errors; --help documents them', async () => {
    const input = path.join(data, 'images');
    const err = (re: RegExp) => (e: Error) => e instanceof UserError && re.test(e.message);
    await assert.rejects(predict({ checkpoint: ckpt, input, out: path.join(tmp, 'e1'), window: 0 }), err(/--window\/--overlap: window must be an integer from 1 to 8192 pixels, got 0/));
    await assert.rejects(predict({ checkpoint: ckpt, input, out: path.join(tmp, 'e2'), window: 32, overlap: 1 }), err(/overlap must be a fraction in \[0, 1\), got 1/));
    await assert.rejects(predict({ checkpoint: ckpt, input, out: path.join(tmp, 'e3'), overlap: 0.5 }), err(/--overlap needs --window/));
    const help = buildProgram().commands.find((c) => c.name() === 'predict')!.helpInformation();
    assert.match(help, /--window <px>.*Gaussian/s);
    assert.match(help, /--overlap <fraction>/);
  });
});
