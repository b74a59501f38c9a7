// Deep supervision (UNet++, MedNeXt): nnU-Net-style weights, the weighted loss over the heads, and training with it.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sc from '../src';
import { MedNeXt, UNetPlusPlus } from '../src/models';
import {
  fit, ensureSyntheticData, evaluate, predict, loadModelCheckpoint, deepSupervisionLoss, deepSupervisionWeights, nnunetDeepSupervisionWeights,
  deepSupervisionWeightsFor, downsampleTarget, UserError,
} from '../src/train';
import { bceDiceTerms, buildLoss } from '../src/train/losses';

const FILTERS = [4, 4, 4, 4, 4];

describe('deep supervision', function () {
  this.timeout(120000);

  it('weights halve per level from the final head and sum to 1', () => {
    assert.deepEqual(deepSupervisionWeights(4), [1 / 15, 2 / 15, 4 / 15, 8 / 15]);
    assert.deepEqual(deepSupervisionWeights(1), [1]);
    assert.deepEqual(deepSupervisionWeights(2), [1 / 3, 2 / 3]);
    assert.throws(() => deepSupervisionWeights(0), /positive number of outputs, got 0/);
  });

  it('the loss is the hand-weighted sum of the per-head losses', () => {
    sc.manualSeed(3);
    const net = new UNetPlusPlus(1, 1, { deepSupervision: true, filters: FILTERS });
    const x = sc.randn([2, 1, 16, 16]);
    const y = sc.rand([2, 1, 16, 16]).gt(0.5).to('float32');
    const loss = buildLoss(bceDiceTerms(1, 1), {});
    const outs = net.forwardAll(x);
    assert.equal(outs.length, 4);
    const per = outs.map((o) => loss(o, y).item());
    // Heads differ (distinct 1x1 convolutions on distinct nodes), so the weighting matters.
    assert.ok(new Set(per).size === 4, `per-head losses ${per}`);
    const hand = (8 * per[3] + 4 * per[2] + 2 * per[1] + per[0]) / 15;
    const ds = deepSupervisionLoss(outs, y, loss).item();
    assert.ok(Math.abs(ds - hand) < 1e-5, `${ds} vs ${hand}`);
    const mean = per.reduce((a, b) => a + b, 0) / 4;
    assert.ok(Math.abs(ds - mean) > 1e-6, 'not the plain mean');
    // Gradients reach every head.
    deepSupervisionLoss(net.forwardAll(x), y, loss).backward();
    for (const h of net.heads) assert.ok(h.weight.grad && h.weight.grad.abs().sum().item() > 0);
    assert.throws(() => deepSupervisionLoss(outs, y, loss, [1]), /1 weights for 4 outputs/);
    assert.throws(() => sc.models.create('unetpp', { filters: [4, 4] }), /option 'filters' must be an array of 5 positive integers, got \[4,4\]/);
  });

  it("MedNeXt: nnU-Net's weights (1/2^i from full resolution, the lowest zeroed, normalised)", () => {
    assert.deepEqual(nnunetDeepSupervisionWeights(5), [8 / 15, 4 / 15, 2 / 15, 1 / 15, 0]);
    assert.deepEqual(deepSupervisionWeightsFor('mednext-s', 5), [8 / 15, 4 / 15, 2 / 15, 1 / 15, 0]);
    assert.deepEqual(deepSupervisionWeightsFor('unetpp', 4), [1 / 15, 2 / 15, 4 / 15, 8 / 15]);
    // The formula for other counts: w_i = 2^-i for i < n-1, w_{n-1} = 0 (n > 1), divided by the sum.
    for (let n = 1; n <= 7; n++) {
      const raw = Array.from({ length: n }, (_, i) => (n > 1 && i === n - 1 ? 0 : 1 / 2 ** i));
      const sum = raw.reduce((a, b) => a + b, 0);
      const w = nnunetDeepSupervisionWeights(n);
      assert.deepEqual(w, raw.map((v) => v / sum), `n = ${n}`);
      assert.ok(Math.abs(w.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    }
    assert.throws(() => nnunetDeepSupervisionWeights(0), /positive number of outputs, got 0/);
  });

  it('targets are downsampled by nearest sampling (pixel s*i + s/2), labels kept', () => {
    // t[y, x] = 10 * y + x on an 8x8 grid, two channels (the second negated).
    const v = Array.from({ length: 64 }, (_, k) => 10 * Math.floor(k / 8) + (k % 8));
    const t = sc.tensor([...v, ...v.map((a) => -a)], [1, 2, 8, 8]);
    assert.deepEqual(Array.from(downsampleTarget(t, [4, 4]).toArray() as Float32Array).slice(0, 16), [11, 13, 15, 17, 31, 33, 35, 37, 51, 53, 55, 57, 71, 73, 75, 77]);
    assert.deepEqual(Array.from(downsampleTarget(t, [2, 2]).toArray() as Float32Array), [22, 26, 62, 66, -22, -26, -62, -66]);
    assert.deepEqual(Array.from(downsampleTarget(t, [1, 1]).toArray() as Float32Array), [44, -44]);
    assert.equal(downsampleTarget(t, [8, 8]), t);
    // A binary mask stays binary.
    const m = sc.rand([2, 1, 16, 16]).gt(0.5).to('float32');
    assert.ok(Array.from(downsampleTarget(m, [4, 4]).toArray() as Float32Array).every((x) => x === 0 || x === 1));
    assert.throws(() => downsampleTarget(t, [3, 3]), /an output of 3x3 is not the 8x8 target divided by one integer factor/);
    assert.throws(() => downsampleTarget(t, [4, 2]), /an output of 4x2 is not the 8x8 target/);
  });

  it('MedNeXt: one step trains heads 1 .. 1/8 against downsampled targets; the 1/16 head gets no gradient', () => {
    sc.manualSeed(5);
    const net = sc.models.create('mednext-s', { deepSupervision: true }) as MedNeXt;
    const x = sc.randn([2, 3, 64, 64]);
    const y = sc.rand([2, 1, 64, 64]).gt(0.6).to('float32');
    const loss = buildLoss(bceDiceTerms(1, 1), {});
    const outs = net.forwardAll(x);
    assert.deepEqual(outs.map((o) => o.shape[2]), [64, 32, 16, 8, 4]);
    const w = deepSupervisionWeightsFor('mednext-s', outs.length);
    const per = sc.noGrad(() => outs.map((o) => loss(o, downsampleTarget(y, [o.shape[2], o.shape[3]])).item()));
    const hand = per.reduce((a, l, i) => a + w[i] * l, 0);
    const total = deepSupervisionLoss(outs, y, loss, w);
    assert.ok(Math.abs(total.item() - hand) < 1e-5, `${total.item()} vs ${hand}`);
    assert.ok(Math.abs(total.item() - per[0]) > 1e-4, 'not the full-resolution loss alone');
    total.backward();
    net.heads.forEach((h, i) => {
      const g = h.conv_out.weight.grad;
      if (i < 4) assert.ok(g && g.abs().sum().item() > 0, `head out_${i} has a gradient`);
      else assert.ok(!g || g.abs().sum().item() === 0, 'out_4 (weight 0) has none');
    });
    // A target whose size is not an integer multiple of a head's is an error, not a silent crop.
    assert.throws(() => deepSupervisionLoss(net.forwardAll(sc.randn([1, 3, 32, 32])), sc.zeros([1, 1, 48, 48]), loss, w), /not the 48x48 target divided by one integer factor/);
    net.dispose();
  });

  describe('training', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-ds-'));
    const data = path.join(tmp, 'data');
    before(async () => {
      await ensureSyntheticData(data, 8, 32);
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it('one epoch with --deep-supervision trains every head, is kept in the state and evaluates', async () => {
      const opts = { model: 'unetpp', modelOptions: { filters: FILTERS }, data, size: 32, batch: 4, epochs: 1, workers: 0, overlays: 0, progress: false, verbose: false, channels: 1 as const };
      const r = await fit({ ...opts, out: path.join(tmp, 'ds'), deepSupervision: true });
      assert.ok(Number.isFinite(r.history[0].train_loss));
      assert.equal(r.config.deepSupervision, true);
      const state = JSON.parse(fs.readFileSync(path.join(tmp, 'ds', 'last.json'), 'utf8'));
      assert.equal(state.config.deepSupervision, true);
      const { model, meta } = loadModelCheckpoint(path.join(tmp, 'ds', 'best.safetensors'));
      assert.equal((meta.modelOptions as Record<string, unknown>).deepSupervision, true);
      assert.equal((model as UNetPlusPlus).heads.length, 4);
      const e = await evaluate({ checkpoint: path.join(tmp, 'ds'), data, split: 'val', workers: 0, out: null, csv: null });
      assert.ok(e.count > 0 && Number.isFinite(e.summary.global.dice));
      // The same four-headed model and seed trained on its forward (the mean of the heads) gives another loss.
      const plain = await fit({ ...opts, modelOptions: { filters: FILTERS, deepSupervision: true }, out: path.join(tmp, 'mean') });
      assert.notEqual(plain.history[0].train_loss, r.history[0].train_loss);
      // Resuming keeps it on without the flag.
      const more = await fit({ resume: path.join(tmp, 'ds'), epochs: 2, verbose: false, progress: false });
      assert.equal(more.config.deepSupervision, true);
    });

    it('mednext-s: one epoch with --deep-supervision, kept in the checkpoint, evaluated on the full-resolution head', async () => {
      const lines: string[] = [];
      const opts = { model: 'mednext-s', data, size: 64, batch: 2, epochs: 1, workers: 0, overlays: 0, progress: false, verbose: true, channels: 1 as const, log: (l: string) => lines.push(l) };
      const r = await fit({ ...opts, out: path.join(tmp, 'mednext'), deepSupervision: true });
      assert.ok(Number.isFinite(r.history[0].train_loss));
      assert.ok(lines.some((l) => /deep supervision: heads at 1, 1\/2, 1\/4, 1\/8, 1\/16 resolution weighted 8\/15, 4\/15, 2\/15, 1\/15, 0/.test(l)), lines.join('\n'));
      const { model, meta } = loadModelCheckpoint(path.join(tmp, 'mednext', 'best.safetensors'));
      assert.equal((meta.modelOptions as Record<string, unknown>).deepSupervision, true);
      assert.equal((model as MedNeXt).heads.length, 5);
      assert.deepEqual(sc.noGrad(() => (model.forward(sc.zeros([1, 1, 64, 64])) as sc.Tensor).shape), [1, 1, 64, 64]);
      model.dispose();
      const e = await evaluate({ checkpoint: path.join(tmp, 'mednext'), data, split: 'val', workers: 0, out: null, csv: null });
      assert.ok(e.count > 0 && Number.isFinite(e.summary.global.dice));
      const p = await predict({ checkpoint: path.join(tmp, 'mednext'), input: path.join(data, 'images'), out: path.join(tmp, 'pred') });
      assert.ok(p.count > 0);
    });

    it('bad combinations are clear errors', async () => {
      const base = { data, batch: 2, epochs: 1, workers: 0, progress: false, verbose: false, deepSupervision: true };
      await assert.rejects(fit({ ...base, model: 'mednext-s', size: 40, out: path.join(tmp, 'never1') }),
        (e: Error) => e instanceof UserError && /--size 40: mednext-s needs a multiple of 16 \(four halvings/.test(e.message));
      await assert.rejects(fit({ ...base, model: 'mednext-s', size: 32, modelOptions: { deepSupervision: false }, out: path.join(tmp, 'never2') }),
        (e: Error) => e instanceof UserError && /--deep-supervision contradicts the model option deepSupervision: false/.test(e.message));
      assert.ok(!fs.existsSync(path.join(tmp, 'never1', 'best.safetensors')) && !fs.existsSync(path.join(tmp, 'never2', 'best.safetensors')));
    });

    it('rejects models without deep-supervision heads', async () => {
      await assert.rejects(fit({ model: 'tiny', data, size: 32, epochs: 1, workers: 0, progress: false, verbose: false, out: path.join(tmp, 'never'), deepSupervision: true }),
        (e: Error) => e instanceof UserError && /--deep-supervision: model 'tiny' has no deep-supervision heads \(models with them: unetpp, mednext-s, mednext-b, mednext-m, mednext-l\)/.test(e.message));
      assert.ok(!fs.existsSync(path.join(tmp, 'never', 'best.safetensors')));
    });
  });
});
