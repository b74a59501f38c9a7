// Ensembles in evaluate / predict: the probabilities of several checkpoints (each normalising with
// its own statistics, --tta inside each) averaged, then thresholded; the agreement checks.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { manualSeed, tensor, Tensor } from '../src/tensor';
import { noGrad } from '../src/autograd/engine';
import { DataLoader, MetricAccumulator, binarize, openDataset, postprocessMask, readImage, readMask } from '../src/data';
import { createModel, ensureSyntheticData, evaluate, predict, resolveCheckpoints, UserError } from '../src/train';
import { loadModelFile, saveModelOnly, ModelMeta } from '../src/train/checkpoint';
import { ttaProbabilities, TtaMode } from '../src/train/tta';

const root = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-ensemble-'));
const SIZE = 32;

const metaOf = (over: Partial<ModelMeta> = {}): ModelMeta => ({
  model: 'tiny', modelOptions: { width: 4, inChannels: 1 }, size: SIZE, channels: 1, normalize: null, epoch: 1, task: 'segmentation', tag: 'test', ...over,
});

/**
 * A random tiny net whose head bias is shifted by the median logit of one (normalised) image, so
 * that about half the pixels are foreground, in speckles that differ from seed to seed.
 */
async function makeCheckpoint(file: string, seed: number, meta: ModelMeta, image: string): Promise<void> {
  manualSeed(seed);
  const model = createModel('tiny', meta.modelOptions);
  const img = await readImage(image, { channels: meta.channels, size: [meta.size, meta.size] });
  const x = img.data.map((v) => (meta.normalize ? (v - meta.normalize.mean[0]) / meta.normalize.std[0] : v));
  const logits = noGrad(() => (model.forward(tensor(x, [1, meta.channels, meta.size, meta.size])) as Tensor).toArray() as Float32Array);
  const median = [...logits].sort((p, q) => p - q)[logits.length >> 1];
  const sd = model.stateDict();
  const biasKey = Object.keys(sd).filter((k) => k.endsWith('bias')).pop()!;
  const bias = sd[biasKey].toArray() as Float32Array;
  model.loadStateDict({ ...sd, [biasKey]: tensor(bias.map((v) => v - median), sd[biasKey].shape) });
  saveModelOnly(file, model, meta);
  model.dispose();
}

/** Probabilities of one checkpoint on un-normalised NCHW images, normalised here by hand. */
function probsOf(file: string, images: Float32Array, n: number, tta: TtaMode): Float32Array {
  const { weights, meta } = loadModelFile(file);
  const model = createModel(meta.model, meta.modelOptions);
  model.loadStateDict(weights);
  Object.values(weights).forEach((t) => t.dispose());
  model.eval();
  const x = meta.normalize ? images.map((v) => (v - meta.normalize!.mean[0]) / meta.normalize!.std[0]) : images;
  const p = ttaProbabilities((t) => model.forward(t) as Tensor, x, [n, 1, SIZE, SIZE], tta).data;
  model.dispose();
  return p;
}

describe('ensembles: evaluate / predict with several checkpoints', function () {
  this.timeout(60000);
  const data = path.join(tmp, 'data');
  const a = path.join(tmp, 'a.safetensors');
  const b = path.join(tmp, 'b.safetensors');
  before(async () => {
    await ensureSyntheticData(data, 10, SIZE);
    const img = path.join(data, 'images', 'syn_0000.png');
    await makeCheckpoint(a, 3, metaOf(), img);
    // Another seed and its own normalisation, as a model of another fold has.
    await makeCheckpoint(b, 4, metaOf({ normalize: { mean: [0.4], std: [0.25] } }), img);
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** Metrics on the val split of the masks `maskOf` makes from a batch of un-normalised images. */
  async function reference(maskOf: (images: Float32Array, n: number) => Uint8Array) {
    const ds = openDataset(data, { val: 0.2, seed: 0 });
    const loader = new DataLoader(ds, ds.ids.val, { batchSize: 8, size: [SIZE, SIZE], channels: 1, shuffle: false, augment: null, workers: 0 });
    const acc = new MetricAccumulator({ hd95: false });
    for await (const bt of loader.epoch(0)) acc.add(maskOf(bt.images, bt.size), bt.masks, bt.size, SIZE, SIZE);
    await loader.close();
    return acc.summary();
  }
  const ev = (checkpoint: string | string[], tta: TtaMode = 'none', post?: string) => evaluate({ checkpoint, data, split: 'val', hd95: false, out: null, workers: 0, tta, post });

  it('an ensemble of a model with itself equals the model (with and without TTA)', async () => {
    for (const tta of ['none', 'flips'] as TtaMode[]) {
      const single = await ev(a, tta);
      const twice = await ev([a, a], tta);
      assert.deepEqual(twice.checkpoints, [a, a]);
      assert.deepEqual(twice.summary, single.summary, tta);
    }
    for (const f of [b]) assert.deepEqual((await ev(`${f},${f}`)).summary, (await ev(f)).summary);
  });

  it('an ensemble of two models is the hand-averaged probabilities (each normalised its own way), then post', async () => {
    for (const tta of ['none', 'flips'] as TtaMode[]) {
      const r = await ev([a, b], tta, 'lcc');
      const ref = await reference((images, n) => {
        const pa = probsOf(a, images, n, tta), pb = probsOf(b, images, n, tta);
        const mean = pa.map((v, i) => (v + pb[i]) / 2);
        const hw = SIZE * SIZE;
        const out = new Uint8Array(n * hw);
        for (let k = 0; k < n; k++) out.set(postprocessMask(binarize(mean, false, k * hw, hw), SIZE, SIZE, 'lcc'), k * hw);
        return out;
      });
      assert.deepEqual(r.summary.global, ref.global, tta);
      // Not vacuous: the ensemble differs from each of its members.
      assert.notDeepEqual(r.summary.global, (await ev(a, tta, 'lcc')).summary.global);
      assert.notDeepEqual(r.summary.global, (await ev(b, tta, 'lcc')).summary.global);
    }
  });

  it('predict with an ensemble writes the thresholded mean probabilities; the CLI takes repeated --checkpoint', async () => {
    const out = path.join(tmp, 'pred');
    await predict({ checkpoint: `${a},${b}`, input: path.join(data, 'images'), out, tta: 'flips' });
    let differsFromA = 0;
    for (const f of fs.readdirSync(out).filter((n) => !n.includes('_overlay'))) {
      const img = await readImage(path.join(data, 'images', f), { channels: 1 });
      const pa = probsOf(a, img.data, 1, 'flips'), pb = probsOf(b, img.data, 1, 'flips');
      const got = await readMask(path.join(out, f));
      assert.deepEqual(got, binarize(pa.map((v, i) => (v + pb[i]) / 2)), f);
      if (binarize(pa).some((v, i) => v !== got[i])) differsFromA++;
    }
    assert.ok(differsFromA > 0);

    const json = path.join(tmp, 'ens.json');
    const r = spawnSync('npx', ['tsx', 'src/cli/main.ts', 'evaluate', '--checkpoint', a, '--checkpoint', b, '--data', data, '--split', 'val', '--no-hd95', '--workers', '0', '--json', json],
      { cwd: root, encoding: 'utf8', env: { ...process.env, SCALPEL_DEBUG: '' } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /ensemble of 2 checkpoints \(tiny\) on the val split/);
    const j = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.deepEqual(j.checkpoints, [a, b]);
    // Through JSON, as the file was written (metrics not computed, NaN in memory, are null there).
    assert.deepEqual(j.global, JSON.parse(JSON.stringify((await ev([a, b])).summary.global)));
  });

  it('checkpoints that differ in size, channels or task are an error naming the two', async () => {
    const img = path.join(data, 'images', 'syn_0000.png');
    const big = path.join(tmp, 'big.safetensors'), rgb = path.join(tmp, 'rgb.safetensors'), ae = path.join(tmp, 'ae.safetensors');
    await makeCheckpoint(big, 5, metaOf({ size: 64 }), img);
    await makeCheckpoint(rgb, 5, metaOf({ channels: 3, modelOptions: { width: 4, inChannels: 3 } }), img);
    await makeCheckpoint(ae, 5, metaOf({ task: 'autoencoder' }), img);
    const err = (re: RegExp) => (e: Error) => e instanceof UserError && re.test(e.message);
    await assert.rejects(ev([a, b, big]), err(new RegExp(`${a} and ${big} differ in input size \\(32 vs 64\\)`)));
    await assert.rejects(predict({ checkpoint: [a, rgb], input: path.join(data, 'images'), out: path.join(tmp, 'p2') }), err(/a\.safetensors and .*rgb\.safetensors differ in input channels \(1 vs 3\)/));
    await assert.rejects(ev([a, ae]), err(/differ in task \(segmentation vs autoencoder\)/));
    assert.throws(() => resolveCheckpoints([]), /no checkpoint given/);
    assert.throws(() => resolveCheckpoints(`${a},,${b}`), /empty path/);
    await assert.rejects(ev([a, path.join(tmp, 'nosuch.safetensors')]), /nosuch\.safetensors/);
  });
});
