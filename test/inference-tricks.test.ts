// evaluate / predict with post-processing (--post) and test-time augmentation (--tta), through
// the API and the CLI, on a tiny random model saved as a checkpoint.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { manualSeed, tensor, Tensor } from '../src/tensor';
import { noGrad } from '../src/autograd/engine';
import { DataLoader, MetricAccumulator, binarize, openDataset, postprocessMask, readImage, readMask } from '../src/data';
import { createModel, ensureSyntheticData, evaluate, predict, UserError } from '../src/train';
import { loadModelCheckpoint, loadModelFile, saveModelOnly, ModelMeta } from '../src/train/checkpoint';
import { ttaProbabilities } from '../src/train/tta';
import { Module } from '../src/nn';

const root = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-tricks-'));
const SIZE = 32;

function scalpel(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('npx', ['tsx', 'src/cli/main.ts', ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, SCALPEL_DEBUG: '' } });
  const stderr = (r.stderr ?? '').split('\n').filter((l) => l && !l.startsWith('npm warn')).join('\n');
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr };
}

describe('inference tricks: evaluate / predict', function () {
  this.timeout(60000);
  const data = path.join(tmp, 'data');
  const ckpt = path.join(tmp, 'model.safetensors');
  const meta: ModelMeta = { model: 'tiny', modelOptions: { width: 4, inChannels: 1 }, size: SIZE, channels: 1, normalize: null, epoch: 1, task: 'segmentation', tag: 'test' };
  before(async () => {
    await ensureSyntheticData(data, 8, SIZE);
    manualSeed(3);
    const model = createModel('tiny', meta.modelOptions);
    // A random net's output is nearly constant (its biases dominate): shift the head's bias by the
    // median logit of one image so that about half the pixels are foreground, in speckles.
    const img = await readImage(path.join(data, 'images', 'syn_0000.png'), { channels: 1, size: [SIZE, SIZE] });
    const logits = noGrad(() => (model.forward(tensor(img.data, [1, 1, SIZE, SIZE])) as Tensor).toArray() as Float32Array);
    const median = [...logits].sort((p, q) => p - q)[logits.length >> 1];
    const sd = model.stateDict();
    const biasKey = Object.keys(sd).filter((k) => k.endsWith('bias')).pop()!;
    const bias = sd[biasKey].toArray() as Float32Array;
    model.loadStateDict({ ...sd, [biasKey]: tensor(bias.map((v) => v - median), sd[biasKey].shape) });
    saveModelOnly(ckpt, model, meta);
    model.dispose();
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** Metrics of the checkpoint on the val split computed here, with `maskOf` turning a batch's images into masks. */
  async function referenceSummaryOf(maskOf: (model: Module, images: Float32Array, n: number) => Uint8Array) {
    const model = createModel('tiny', meta.modelOptions);
    const { weights } = loadModelFile(ckpt);
    model.loadStateDict(weights);
    model.eval();
    const ds = openDataset(data, { val: 0.2, seed: 0 });
    const loader = new DataLoader(ds, ds.ids.val, { batchSize: 8, size: [SIZE, SIZE], channels: 1, shuffle: false, augment: null, workers: 0 });
    const acc = new MetricAccumulator({ hd95: false });
    for await (const b of loader.epoch(0)) acc.add(maskOf(model, b.images, b.size), b.masks, b.size, SIZE, SIZE);
    await loader.close();
    model.dispose();
    return acc.summary();
  }
  /** The same with a plain forward pass and `maskOf` turning each image's logits into a mask. */
  function referenceSummary(maskOf: (logits: Float32Array, h: number, w: number) => Uint8Array) {
    return referenceSummaryOf((model, images, n) => {
      const logits = noGrad(() => (model.forward(tensor(images, [n, 1, SIZE, SIZE])) as Tensor).toArray() as Float32Array);
      const hw = SIZE * SIZE;
      const out = new Uint8Array(n * hw);
      for (let k = 0; k < n; k++) out.set(maskOf(logits.subarray(k * hw, (k + 1) * hw), SIZE, SIZE), k * hw);
      return out;
    });
  }

  it('evaluate --post applies the steps to each thresholded mask before the metrics', async () => {
    const plain = await evaluate({ checkpoint: ckpt, data, split: 'val', hd95: false, out: null, workers: 0 });
    const post = await evaluate({ checkpoint: ckpt, data, split: 'val', hd95: false, out: null, workers: 0, post: 'lcc,fill' });
    assert.equal(post.post, 'lcc,fill');
    const refPlain = await referenceSummary((l) => binarize(l, true));
    const refPost = await referenceSummary((l, h, w) => postprocessMask(binarize(l, true), h, w, 'lcc,fill'));
    assert.deepEqual(plain.summary.global, refPlain.global);
    assert.deepEqual(post.summary.global, refPost.global);
    // The random model's masks are speckled, so keeping one component changes them.
    assert.notDeepEqual(refPost.global, refPlain.global);
  });

  it('predict --post writes post-processed masks at the original size', async () => {
    const a = path.join(tmp, 'pred-plain'), b = path.join(tmp, 'pred-post');
    await predict({ checkpoint: ckpt, input: path.join(data, 'images'), out: a });
    await predict({ checkpoint: ckpt, input: path.join(data, 'images'), out: b, post: 'min-area=4,fill' });
    let changed = 0;
    for (const f of fs.readdirSync(a).filter((n) => !n.includes('_overlay'))) {
      const plain = await readMask(path.join(a, f));
      const post = await readMask(path.join(b, f));
      const expected = postprocessMask(plain, SIZE, SIZE, 'min-area=4,fill');
      assert.deepEqual(post, expected, f);
      if (expected.some((v, i) => v !== plain[i])) changed++;
    }
    assert.ok(changed > 0, 'post-processing changed at least one mask');
  });

  it('evaluate --tta averages the probabilities of the transformed passes, then --post', async () => {
    const plain = await evaluate({ checkpoint: ckpt, data, split: 'val', hd95: false, out: null, workers: 0 });
    const jsonFile = path.join(tmp, 'eval-tta.json');
    const r = await evaluate({ checkpoint: ckpt, data, split: 'val', hd95: false, out: jsonFile, workers: 0, tta: 'd4', post: 'lcc' });
    assert.equal(r.tta, 'd4');
    const hw = SIZE * SIZE;
    const ref = await referenceSummaryOf((model, images, n) => {
      const prob = ttaProbabilities((t) => model.forward(t) as Tensor, images, [n, 1, SIZE, SIZE], 'd4').data;
      const out = new Uint8Array(n * hw);
      for (let k = 0; k < n; k++) out.set(postprocessMask(binarize(prob, false, k * hw, hw), SIZE, SIZE, 'lcc'), k * hw);
      return out;
    });
    assert.deepEqual(r.summary.global, ref.global);
    // TTA alone changes the masks of this speckled model.
    const ttaOnly = await evaluate({ checkpoint: ckpt, data, split: 'val', hd95: false, out: null, workers: 0, tta: 'd4' });
    assert.notDeepEqual(ttaOnly.summary.global, plain.summary.global);
    const j = JSON.parse(fs.readFileSync(jsonFile, 'utf8'));
    assert.equal(j.tta, 'd4');
    assert.equal(j.post, 'lcc');
  });

  it('predict --tta writes the thresholded averaged probabilities', async () => {
    const a = path.join(tmp, 'pred-tta');
    await predict({ checkpoint: ckpt, input: path.join(data, 'images'), out: a, tta: 'flips' });
    const { model } = loadModelCheckpoint(ckpt);
    let differs = 0;
    for (const f of fs.readdirSync(a).filter((n) => !n.includes('_overlay'))) {
      const img = await readImage(path.join(data, 'images', f), { channels: 1 });
      assert.deepEqual([img.height, img.width], [SIZE, SIZE]);
      const mean = ttaProbabilities((t) => model.forward(t) as Tensor, img.data, [1, 1, SIZE, SIZE], 'flips').data;
      const plain = ttaProbabilities((t) => model.forward(t) as Tensor, img.data, [1, 1, SIZE, SIZE], 'none').data;
      const got = await readMask(path.join(a, f));
      assert.deepEqual(got, binarize(mean), f);
      if (binarize(plain).some((v, i) => v !== got[i])) differs++;
    }
    model.dispose();
    assert.ok(differs > 0, 'TTA changed at least one mask');
  });

  it('bad --tta values: a clear error from the API and the CLI', async () => {
    await assert.rejects(evaluate({ checkpoint: ckpt, data, out: null, tta: 'rot' as never }), (e: Error) => e instanceof UserError && /--tta: test-time augmentation must be one of none, flips, d4, got 'rot'/.test(e.message));
    await assert.rejects(predict({ checkpoint: ckpt, input: path.join(data, 'images'), out: path.join(tmp, 'y'), tta: 'x' as never }), /must be one of none, flips, d4/);
    const r = scalpel('predict', '--checkpoint', ckpt, '--input', data, '--out', path.join(tmp, 'z'), '--tta', 'd8');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /option '--tta <mode>' argument 'd8' is invalid. Allowed choices are none, flips, d4/);
    assert.match(scalpel('evaluate', '--help').stdout, /--tta <mode>.*d4/s);
  });

  it('bad --post values: a clear error from the API and the CLI', async () => {
    await assert.rejects(evaluate({ checkpoint: ckpt, data, out: null, post: 'lcc,blur' }), (e: Error) => e instanceof UserError && /--post: unknown post-processing step 'blur'/.test(e.message));
    await assert.rejects(predict({ checkpoint: ckpt, input: path.join(data, 'images'), out: path.join(tmp, 'x'), post: 'min-area=0' }), /min-area must be a positive integer/);
    const r = scalpel('evaluate', '--checkpoint', ckpt, '--data', data, '--post', 'min-area=abc');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /option '--post <spec>' argument 'min-area=abc' is invalid.*min-area must be a positive integer/);
    const help = scalpel('predict', '--help');
    assert.match(help.stdout, /--post <spec>.*lcc/s);
  });
});
