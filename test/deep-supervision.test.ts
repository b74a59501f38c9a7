// Deep supervision (UNet++): nnU-Net-style weights, the weighted loss over the heads, and training with it.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sc from '../src';
import { UNetPlusPlus } from '../src/models';
import { fit, ensureSyntheticData, evaluate, loadModelCheckpoint, deepSupervisionLoss, deepSupervisionWeights, UserError } from '../src/train';
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

    it('rejects models without deep-supervision heads', async () => {
      await assert.rejects(fit({ model: 'tiny', data, size: 32, epochs: 1, workers: 0, progress: false, verbose: false, out: path.join(tmp, 'never'), deepSupervision: true }),
        (e: Error) => e instanceof UserError && /--deep-supervision: model 'tiny' has no deep-supervision heads \(models with them: unetpp\)/.test(e.message));
      assert.ok(!fs.existsSync(path.join(tmp, 'never', 'best.safetensors')));
    });
  });
});
