// TransUNet R50-ViT-B/16: the published parameter count, the authors' state-dict names, input-size
// and option errors, grey inputs, dropout in training, backward through every parameter, and a
// short overfit behind SCALPEL_HEAVY_TESTS=1. The PyTorch forward fixture is checked in
// models.test.ts, the inference plan in inference.test.ts, ONNX in onnx.test.ts and the CUDA
// training step in cuda-transunet.test.ts.
import { strict as assert } from 'node:assert';
import * as fs from 'fs';
import * as path from 'path';
import * as sc from '../src';

const FIX = path.resolve(__dirname, 'fixtures');
const HEAVY = process.env.SCALPEL_HEAVY_TESTS === '1';

/** "name [d0, d1, ...]" lines after the "# transunet: N trainable parameters" header. */
function readParamsList(file: string): { total: number; entries: [string, number[]][] } {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const total = Number(/(\d+) trainable parameters/.exec(lines[0])![1]);
  const entries = lines.slice(1).filter((l) => l.trim()).map((l): [string, number[]] => {
    const m = /^(\S+) \[(.*)\]$/.exec(l.trim());
    assert.ok(m, `cannot parse '${l}'`);
    return [m[1], m[2].trim() ? m[2].split(',').map(Number) : []];
  });
  return { total, entries };
}

describe('transunet', function () {
  this.timeout(120000);

  it('105,322,001 parameters at 256 px (the CMUNeXt benchmark: 105.32 M), names/shapes/order as the authors\' module', () => {
    const m = sc.models.create('transunet');
    try {
      assert.equal(m.numParameters(), 105322001);
      const want = readParamsList(path.join(FIX, 'params', 'transunet.params.txt'));
      assert.equal(want.total, 105322001);
      const got = Object.entries(m.stateDict()).map(([k, t]): [string, number[]] => [k, t.shape.slice()]);
      assert.deepEqual(got, want.entries);
      assert.equal(got[0][0], 'transformer.embeddings.position_embeddings');
      for (const [k, t] of Object.entries(m.stateDict())) assert.equal(t.dtype, k.endsWith('num_batches_tracked') ? 'int64' : 'float32', k);
      // The authors' initialisation: zero position embedding, xavier-uniform MLP weights, ~0 MLP biases.
      const sd = m.stateDict();
      assert.equal(sd['transformer.embeddings.position_embeddings'].abs().max().item(), 0);
      const fc1 = sd['transformer.encoder.layer.0.ffn.fc1.weight'];
      const bound = Math.sqrt(6 / (768 + 3072));
      assert.ok(fc1.abs().max().item() <= bound && fc1.abs().max().item() > 0.9 * bound, 'xavier bound');
      assert.ok(sd['transformer.encoder.layer.0.ffn.fc1.bias'].abs().max().item() < 1e-5);
    } finally {
      m.dispose();
    }
  });

  it('sc.summary at 256 px: 38.384 GMAC (the CMUNeXt benchmark: 38.52), as a PyTorch hook count of the reference', function () {
    const m = sc.models.create('transunet');
    try {
      const s = sc.summary(m, [3, 256, 256]);
      console.log(`      transunet at 3x256x256: ${s.totals.gmac.toFixed(3)} GMAC`);
      // Convolutions (StdConv2d 5.106 G + Conv2d 10.327 G) + linear layers (21.743 G) + attention
      // products (12 layers x 2 x 12 heads x 256 x 256 x 64 = 1.208 G), counted by forward hooks
      // on tools/pytorch/models.py TransUNet; the published 38.52 G is 0.35 % above (a counter
      // that also counts biases, norms or upsampling).
      assert.equal(s.totals.macs, 38384418816);
      assert.equal(s.totals.params, 105322001);
      assert.deepEqual(s.outputShape, [1, 1, 256, 256]);
      const att = s.rows.find((r) => r.path === 'transformer.encoder.layer.0.attn')!;
      // Its own ops are the two attention products; with the four projections below it:
      assert.equal(att.macs, 2 * 12 * 256 * 256 * 64);
      assert.equal(att.totalMacs, 4 * 256 * 768 * 768 + 2 * 12 * 256 * 256 * 64);
    } finally {
      m.dispose();
    }
  });

  it('imgSize sizes the position embedding; bad sizes and options are clear errors', () => {
    const m = sc.models.create('transunet', { imgSize: 32, inChannels: 1, numClasses: 3 }) as sc.models.TransUNet;
    try {
      // 256 px has 16 x 16 tokens, 32 px 2 x 2: 252 fewer rows of 768.
      assert.equal(m.numParameters(), 105322001 - 252 * 768 + 2 * (16 * 9 + 1));
      assert.deepEqual(m.stateDict()['transformer.embeddings.position_embeddings'].shape, [1, 4, 768]);
      assert.deepEqual(m.stateDict()['segmentation_head.0.weight'].shape, [3, 16, 3, 3]);
      m.eval();
      for (const shape of [[1, 3, 64, 64], [1, 3, 32, 48], [1, 2, 32, 32], [3, 32, 32]]) {
        assert.throws(() => sc.tidy(() => m.forward(sc.zeros(shape))), new RegExp(`TransUNet: built for inputs \\[N, 3 \\(or 1\\), 32, 32\\] \\(its position embedding holds 4 tokens of the 2x2 grid\\), got \\[${shape.join(', ')}\\]; create it with the option imgSize`));
      }
      // A grey image is repeated to RGB, as in the authors' forward.
      sc.tidy(() => sc.noGrad(() => {
        const g = sc.rand([2, 1, 32, 32]);
        const a = m.forward(g), b = m.forward(sc.F.cat([g, g, g], 1));
        assert.deepEqual(a.shape, [2, 3, 32, 32]);
        assert.equal(a.sub(b).abs().max().item(), 0);
      }));
    } finally {
      m.dispose();
    }
    assert.throws(() => sc.models.create('transunet', { imgSize: 40 }), /models.create\('transunet'\): option 'imgSize' must be a positive multiple of 16, got 40/);
    assert.throws(() => sc.models.create('transunet', { imgSize: 0 }), /option 'imgSize' must be a positive multiple of 16/);
    assert.throws(() => sc.models.create('transunet', { inChannels: 4 }), /TransUNet: inChannels must be 3 or 1/);
    assert.throws(() => sc.models.create('unet', { imgSize: 64 }), /unknown option 'imgSize'/);
    assert.throws(() => new sc.models.TransUNet(3, 1, { config: { width: 48 } }), /config.width must be a multiple of 32/);
    assert.throws(() => new sc.models.TransUNet(3, 1, { config: { hidden: 100, heads: 12 } }), /config.hidden 100 is not divisible by config.heads 12/);
    assert.throws(() => new sc.models.TransUNet(3, 1, { config: { attentionDropout: 0.1 } }), /config.attentionDropout must be 0/);
    assert.throws(() => new sc.models.TransUNet(3, 1, { config: { nSkip: 4 } }), /config.nSkip must be 0..3/);
  });

  it('fewer skips (config.nSkip) drop the skip channels of the later decoder blocks, as the authors do', () => {
    const small = { hidden: 64, layers: 1, heads: 4, mlp: 128, resnetUnits: [1, 1, 1] as const, width: 32, headChannels: 64, decoderChannels: [32, 32, 32, 16] as const };
    for (const nSkip of [0, 1, 3]) {
      const m = new sc.models.TransUNet(3, 1, { imgSize: 32, config: { ...small, nSkip } });
      const inCh = [0, 1, 2, 3].map((i) => m.stateDict()[`decoder.blocks.${i}.conv1.0.weight`].shape[1]);
      // Skips of 8w, 4w, w channels (w = 32) on the first nSkip blocks.
      assert.deepEqual(inCh, [64 + (nSkip > 0 ? 256 : 0), 32 + (nSkip > 1 ? 128 : 0), 32 + (nSkip > 2 ? 32 : 0), 32]);
      m.eval();
      assert.deepEqual(sc.tidy(() => sc.noGrad(() => m.forward(sc.rand([1, 3, 32, 32])).shape)), [1, 1, 32, 32]);
      m.dispose();
    }
  });

  it('training and summary at --size N build it for N (withImageSize); other models are left alone', () => {
    assert.deepEqual(sc.train.withImageSize('transunet', { inChannels: 3 }, 64), { inChannels: 3, imgSize: 64 });
    assert.deepEqual(sc.train.withImageSize('transunet', { imgSize: 32 }, 64), { imgSize: 32 });
    assert.deepEqual(sc.train.withImageSize('unet', { inChannels: 1 }, 64), { inChannels: 1 });
    assert.deepEqual(sc.train.withImageSize('tiny', {}, 64), {});
  });

  it('weight standardisation: StdConv2d is a conv with (w - mean) / sqrt(var + 1e-5) per output channel; its gradient checks in float64', () => {
    sc.manualSeed(3);
    const conv = new sc.models.StdConv2d(4, 6, 3, { padding: 1, stride: 2 });
    const x = sc.randn([2, 4, 7, 7]);
    sc.tidy(() => {
      // The authors' formula (torch.var_mean, unbiased=False), in float64.
      const w64 = conv.weight.to('float64');
      const mean = w64.mean([1, 2, 3], true);
      const v = w64.sub(mean).square().mean([1, 2, 3], true);
      const ws = w64.sub(mean).div(v.add(1e-5).sqrt()).to('float32');
      const want = sc.F.conv2d(x, ws, null, { padding: 1, stride: 2 });
      const got = conv.forward(x);
      assert.deepEqual(got.shape, [2, 6, 4, 4]);
      const diff = got.sub(want).abs().max().item();
      assert.ok(diff < 1e-5 * want.abs().max().item(), `max difference ${diff}`);
      got.mul(sc.randn(got.shape)).sum().backward();
      assert.ok(conv.weight.grad && conv.weight.grad.abs().sum().item() > 0, 'gradient reaches the raw weight');
      // Shifting a channel's weights by a constant changes nothing: the gradient sums to 0 per channel.
      const g = conv.weight.grad!;
      assert.ok(g.sum([1, 2, 3]).abs().max().item() < 1e-6 * g.abs().sum().item());
    });
    const r = sc.gradcheck((xx, w) => sc.F.conv2d(xx, sc.models.standardizeWeight(w), null, { padding: 1 }), [
      sc.randn([1, 2, 4, 4], { dtype: 'float64' }),
      sc.randn([3, 2, 3, 3], { dtype: 'float64', requiresGrad: true }),
    ]);
    assert.ok(r.ok, `gradcheck: ${r.worst} (max abs error ${r.maxAbsError})`);
    conv.zeroGrad();
    conv.dispose();
    x.dispose();
  });

  it('training: dropout 0.1 active (seeded), eval deterministic; backward reaches every parameter with finite gradients', () => {
    sc.manualSeed(1);
    const m = sc.models.create('transunet', { imgSize: 32 });
    try {
      const x = sc.rand([2, 3, 32, 32]);
      m.eval();
      const e1 = sc.noGrad(() => m.forward(x) as sc.Tensor), e2 = sc.noGrad(() => m.forward(x) as sc.Tensor);
      assert.equal(e1.sub(e2).abs().max().item(), 0);
      m.train();
      sc.manualSeed(5);
      const t1 = sc.noGrad(() => m.forward(x) as sc.Tensor);
      sc.manualSeed(5);
      const t2 = sc.noGrad(() => m.forward(x) as sc.Tensor);
      sc.manualSeed(6);
      const t3 = sc.noGrad(() => m.forward(x) as sc.Tensor);
      assert.equal(t1.sub(t2).abs().max().item(), 0, 'same seed, same dropout masks');
      assert.ok(t1.sub(t3).abs().max().item() > 1e-4, 'another seed, other dropout masks');
      sc.dispose([e1, e2, t1, t2, t3]);
      sc.tidy(() => {
        const y = m.forward(x) as sc.Tensor;
        assert.deepEqual(y.shape, [2, 1, 32, 32]);
        const loss = sc.F.bceWithLogits(y, sc.zerosLike(y));
        loss.backward();
        assert.ok(Number.isFinite(loss.item()));
      });
      const missing = m.namedParameters().filter(([, p]) => !p.grad).map(([n]) => n);
      assert.deepEqual(missing, [], 'parameters without gradient');
      for (const [n, p] of m.namedParameters()) assert.ok(Number.isFinite(p.grad!.abs().sum().item()), `${n}: non-finite gradient`);
      // The position embedding starts at zero and still gets a gradient (it is added to the tokens).
      assert.ok(m.stateDict()['transformer.embeddings.position_embeddings'].grad!.abs().sum().item() > 0);
      x.dispose();
    } finally {
      m.zeroGrad();
      m.dispose();
    }
  });

  it('overfits two images at 32 px (Dice > 0.95; SCALPEL_HEAVY_TESTS=1)', function () {
    if (!HEAVY) this.skip();
    this.timeout(1800000);
    sc.manualSeed(0);
    const N = 2, S = 32;
    const xv = new Float32Array(N * 3 * S * S), tv = new Float32Array(N * S * S);
    for (let n = 0; n < N; n++) for (let yy = 0; yy < S; yy++) for (let xx = 0; xx < S; xx++) {
      const inside = n === 0 ? (yy - S * 0.45) ** 2 + (xx - S * 0.55) ** 2 < (S * 0.25) ** 2 : Math.abs(yy - S * 0.6) < S * 0.2 && Math.abs(xx - S * 0.4) < S * 0.15;
      tv[(n * S + yy) * S + xx] = inside ? 1 : 0;
      for (let c = 0; c < 3; c++) xv[((n * 3 + c) * S + yy) * S + xx] = (inside ? 0.7 : 0.3) + 0.15 * Math.sin(0.9 * xx + 1.7 * yy + c);
    }
    const x = sc.fromTyped(xv, [N, 3, S, S], 'float32', 'cpu'), t = sc.fromTyped(tv, [N, 1, S, S], 'float32', 'cpu');
    const m = sc.models.create('transunet', { imgSize: S });
    const opt = new sc.optim.Adam(m.parameters(), { lr: 1e-4 });
    let dice = 0, steps = 0;
    for (let step = 0; step < 300 && dice <= 0.97; step++) {
      m.train();
      sc.tidy(() => {
        const y = m.forward(x);
        const loss = sc.F.add(sc.F.bceWithLogits(y, t), sc.F.diceLoss(y, t));
        opt.zeroGrad();
        loss.backward();
        opt.step();
      });
      steps = step + 1;
      if (step % 10 === 9) {
        m.eval();
        dice = sc.tidy(() => sc.noGrad(() => {
          const p = m.forward(x).gt(0).to('float32');
          return (2 * p.mul(t).sum().item()) / (p.sum().item() + t.sum().item() + 1e-9);
        }));
      }
    }
    console.log(`      transunet: Dice ${dice.toFixed(4)} after ${steps} steps`);
    assert.ok(dice > 0.95, `Dice ${dice}`);
    sc.dispose([x, t]);
    m.dispose();
    opt.dispose();
  });
});
