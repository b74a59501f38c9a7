// The public API the issues and users rely on (PyTorch semantics, camelCase names).
import { strict as assert } from 'node:assert';
import * as sc from '../src';

describe('public API surface', () => {
  it('exposes tensors, scopes and memory', () => {
    for (const k of ['tensor', 'zeros', 'ones', 'randn', 'rand', 'arange', 'fullOf', 'fromNdarray', 'noGrad', 'tidy', 'keep', 'memory', 'manualSeed', 'gradcheck', 'saveSafetensors', 'loadSafetensors', 'summary', 'formatSummary', 'setNumThreads'] as const) {
      assert.equal(typeof (sc as Record<string, unknown>)[k], 'function', k);
    }
    assert.equal(typeof sc.cuda.isAvailable, 'function');
  });
  it('exposes the functional ops under sc.F', () => {
    for (const k of ['conv2d', 'convTranspose2d', 'maxPool2d', 'avgPool2d', 'adaptiveAvgPool2d', 'interpolate', 'batchNorm', 'layerNorm', 'relu', 'gelu', 'sigmoid', 'softmax', 'logSoftmax', 'linear', 'matmul', 'bceWithLogits', 'diceLoss', 'tverskyLoss', 'focalLoss', 'ohemBce', 'mseLoss', 'masa', 'tpen', 'dropout', 'dropout2d', 'cat', 'stack', 'split', 'pad']) {
      assert.equal(typeof (sc.F as Record<string, unknown>)[k], 'function', `F.${k}`);
    }
  });
  it('exposes modules, optimizers, schedules, models, training and data', () => {
    assert.equal(typeof sc.nn.Module, 'function');
    for (const k of ['SGD', 'Adam', 'AdamW', 'PolyLR', 'CosineLR', 'WarmupLR', 'ReduceLROnPlateau', 'clipGradNorm']) assert.equal(typeof (sc.optim as Record<string, unknown>)[k], 'function', k);
    assert.ok(sc.models.list().map((m) => m.name).includes('cmunext-s'));
    assert.equal(typeof sc.train.fit, 'function');
    assert.equal(typeof sc.train.evaluate, 'function');
    assert.equal(typeof sc.data.openDataset, 'function');
  });
  it('a Tensor has the methods the README uses', () => {
    const t = sc.ones([2, 2], { requiresGrad: true });
    for (const k of ['add', 'mul', 'sum', 'mean', 'matmul', 'reshape', 'permute', 'backward', 'toArray', 'item', 'dispose', 'to', 'detach']) {
      assert.equal(typeof (t as unknown as Record<string, unknown>)[k], 'function', k);
    }
  });
});
