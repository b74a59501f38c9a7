// sc.onnx.export: every model's ONNX file, run in onnxruntime-node, matches scalpel's eval forward;
// initializer names, bad input, and the `scalpel export` CLI command.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as sc from '../src';
import { Lambda } from '../src/nn/layers';
import { main } from '../src/cli/main';
import { ensureSyntheticData } from '../src/train';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-onnx-'));

let ort: any = null;
let ortMissing = '';
try {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  ort = require('onnxruntime-node');
} catch (e) {
  ortMissing = `onnxruntime-node cannot be loaded (${(e as Error).message.split('\n')[0]})`;
}

/** Non-trivial batch-norm statistics, so a swapped mean/var or a dropped affine would show. */
function randomizeBatchNorms(model: sc.nn.Module): void {
  const sd = model.stateDict();
  const dict: Record<string, sc.Tensor> = {};
  for (const [k, t] of Object.entries(sd)) {
    if (k.endsWith('running_mean')) dict[k] = sc.randn(t.shape).mul(0.2);
    else if (k.endsWith('running_var')) dict[k] = sc.randn(t.shape).abs().add(0.5);
    else dict[k] = t;
  }
  model.loadStateDict(dict);
}

async function runOrt(file: string, x: sc.Tensor): Promise<Record<string, any>> {
  const sess = await ort.InferenceSession.create(file, { intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: 'basic' });
  return sess.run({ input: new ort.Tensor('float32', x.toArray() as Float32Array, x.shape) });
}

/** max |a - b| relative to the range of b. */
function relDiff(got: Float32Array, want: Float32Array): number {
  assert.equal(got.length, want.length, 'output sizes');
  let md = 0, lo = Infinity, hi = -Infinity;
  for (let i = 0; i < want.length; i++) {
    md = Math.max(md, Math.abs(got[i] - want[i]));
    lo = Math.min(lo, want[i]);
    hi = Math.max(hi, want[i]);
  }
  assert.ok(hi > lo, 'the reference output is not constant');
  return md / (hi - lo);
}

describe('onnx export', function () {
  this.timeout(60000);
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  describe('every model runs in onnxruntime and matches scalpel', () => {
    for (const info of sc.models.list()) {
      it(info.name, async function () {
        if (!ort) {
          console.log(`      skipped: ${ortMissing}`);
          this.skip();
        }
        // A model whose input size is fixed at construction (TransUNet's position embedding) is built for 64 px.
        const model = sc.models.create(info.name, info.options.includes('imgSize') ? { imgSize: 64 } : {});
        // TransUNet's 105 M parameters make a 420 MB file to write and load (about 20 s here).
        if (model.numParameters() > 50e6) this.timeout(240000);
        try {
          randomizeBatchNorms(model);
          model.eval();
          const shape = [1, info.inputSize[0], 64, 64];
          const file = path.join(tmp, `${info.name}.onnx`);
          const r = sc.onnx.export(model, shape, file);
          assert.deepEqual(r.inputShape, shape);
          const x = sc.randn(shape);
          const want = sc.noGrad(() => model.forward(x)) as sc.Tensor;
          const out = await runOrt(file, x);
          assert.deepEqual(out.output.dims, want.shape);
          const d = relDiff(out.output.data as Float32Array, want.toArray() as Float32Array);
          assert.ok(d < 1e-4, `${info.name}: max abs diff / output range = ${d}`);
          fs.rmSync(file);
        } finally {
          model.dispose();
        }
      });
    }
  });

  it('NExNet with the full (non-decomposed) MaSA and a model with two outputs', async function () {
    if (!ort) {
      console.log(`      skipped: ${ortMissing}`);
      this.skip();
    }
    const full = sc.models.create('nexnet', { decomposed: false });
    const file = path.join(tmp, 'nexnet-full.onnx');
    try {
      full.eval();
      sc.onnx.export(full, [1, 3, 32, 32], file);
      const x = sc.randn([1, 3, 32, 32]);
      const want = sc.noGrad(() => full.forward(x)) as sc.Tensor;
      const out = await runOrt(file, x);
      assert.ok(relDiff(out.output.data, want.toArray() as Float32Array) < 1e-4);
    } finally {
      full.dispose();
    }
    // A forward that returns several tensors gives one graph output each.
    class TwoHeads extends sc.nn.Module {
      forward(x: sc.Tensor): sc.Tensor[] {
        return [x.sigmoid(), x.mul(x).add(1)];
      }
    }
    const two = new TwoHeads();
    const x = sc.randn([1, 3, 8, 8]);
    const r = sc.onnx.export(two, [1, 3, 8, 8], file);
    assert.deepEqual(r.outputShapes, [[1, 3, 8, 8], [1, 3, 8, 8]]);
    const out = await runOrt(file, x);
    two.forward(x).forEach((h, i) => assert.ok(relDiff(out[`output_${i}`].data, h.toArray() as Float32Array) < 1e-4, `head ${i}`));
  });

  it('the ops no built-in model uses map too: pools, pads, norms, softmax, resizes, slices, elementwise, attention', async function () {
    if (!ort) {
      console.log(`      skipped: ${ortMissing}`);
      this.skip();
    }
    class Mix extends sc.nn.Module {
      // Plain tensors, not parameters: they become unnamed constant initializers.
      readonly lnW = sc.randn([8]);
      readonly lnB = sc.randn([8]);
      forward(x: sc.Tensor): sc.Tensor {
        const crop = (t: sc.Tensor) => t.narrow(2, 0, 8).narrow(3, 0, 8);  // keeps the top and left padding
        const parts = [
          sc.F.avgPool2d(x, { kernelSize: 3, stride: 1, padding: 1 }),
          crop(sc.F.pad(x, [1, 1, 2, 0], { mode: 'reflect' })),
          crop(sc.F.pad(x, [1, 1, 1, 1], { mode: 'replicate' })),
          crop(sc.F.pad(x, [1, 1, 1, 1], { value: 0.5 })),
          sc.F.maxPool2d(sc.F.interpolate(x, { scaleFactor: 2, mode: 'nearest' }), { kernelSize: 2 }),
          sc.F.interpolate(sc.F.interpolate(x, { size: [12, 12], mode: 'bilinear' }), { size: [8, 8], mode: 'bilinear', alignCorners: true }),
          sc.F.layerNorm(x, [8], this.lnW, this.lnB),
          sc.F.layerNorm(x, [8, 8]),
          x.softmax(1),
          sc.F.logSoftmax(x, 3),
          x.clamp(-0.5, 0.5).pow(2).mul(3).add(1),
          x.abs().sqrt().exp().tanh().neg(),
          x.sigmoid().div(x.square().add(1)).sub(x.relu()).add(x.mul(sc.fullOf([1, 4, 1, 1], 0.25).mul(2))),
          sc.F.adaptiveAvgPool2d(x, 1).expand(1, 4, 8, 8),
          x.permute(0, 1, 3, 2).contiguous().reshape([1, 4, 8, 8]),
          // Attention with Lq 8 != Lk 3 and D 5 != Dv 8, an explicit scale: [1, 4, 8, 8].
          sc.F.scaledDotProductAttention(x.narrow(3, 0, 5), x.narrow(2, 0, 3).narrow(3, 2, 5), x.narrow(2, 4, 3), { scale: 0.6 }),
        ];
        return sc.F.cat(parts, 1);
      }
    }
    const m = new Mix();
    const file = path.join(tmp, 'mix.onnx');
    const x = sc.randn([1, 4, 8, 8]);
    sc.onnx.export(m, [1, 4, 8, 8], file);
    const want = sc.noGrad(() => m.forward(x));
    const got = (await runOrt(file, x)).output.data as Float32Array;
    const w = want.toArray() as Float32Array;
    const per = 4 * 64;
    for (let p = 0; p < want.shape[1] / 4; p++) {
      const d = relDiff(got.subarray(p * per, (p + 1) * per), w.subarray(p * per, (p + 1) * per));
      assert.ok(d < 1e-4, `part ${p}: max abs diff / range = ${d}`);
    }
  });

  it("the initializers of a CMUNeXt-S export are named by its state dict", () => {
    const model = sc.models.create('cmunext-s', {});
    try {
      const file = path.join(tmp, 'names.onnx');
      const r = sc.onnx.export(model, [1, 3, 64, 64], file);
      const decoded = sc.onnx.decodeModel(fs.readFileSync(file));
      const inFile = (decoded.graph.initializer as { name: string }[]).map((t) => t.name);
      assert.deepEqual(inFile, r.initializers);
      const named = inFile.filter((n) => !n.startsWith('const_'));
      // Every parameter and running statistic is an initializer under its state-dict name; only
      // the step counters, which an eval forward never reads, are left out.
      const used = Object.keys(model.stateDict()).filter((k) => !k.endsWith('num_batches_tracked'));
      assert.deepEqual([...named].sort(), [...used].sort());
      assert.equal(decoded.opsetImport[0].version, 17);
      assert.equal(decoded.graph.input[0].name, 'input');
    } finally {
      model.dispose();
    }
  });

  it('bad input gives clear errors', () => {
    const model = sc.models.create('cmunext-s', {});
    try {
      const file = path.join(tmp, 'bad.onnx');
      assert.throws(() => sc.onnx.export(model, [3, 64, 64], file), /input shape must have 4 dimensions \[N, C, H, W\], got 3/);
      assert.throws(() => sc.onnx.export(model, [1, 3, 0, 64], file), /input shape must be an array of positive integers/);
      assert.throws(() => sc.onnx.export(model, [1, 5, 64, 64], file), /forward failed at input shape \[1,5,64,64\]/);
      assert.throws(() => sc.onnx.export(model, [1, 3, 64, 64], file, { opset: 9 }), /opset must be an integer 13\.\.21/);
      const noDir = path.join(tmp, 'no-such-folder', 'm.onnx');
      assert.throws(() => sc.onnx.export(model, [1, 3, 64, 64], noDir), /cannot write .*m\.onnx: folder .*no-such-folder does not exist/);
      assert.ok(!fs.existsSync(file));
      // Tracing restores the training flag and leaves a fused inference plan released.
      model.train();
      sc.onnx.export(model, [1, 3, 32, 32], file);
      assert.equal(model.training, true);
      sc.inference.optimize(model, [1, 3, 32, 32]);
      assert.ok(sc.onnx.export(model, [1, 3, 32, 32], file).nodes > 0);
    } finally {
      model.dispose();
    }
    class WithSum extends sc.nn.Module {
      constructor() {
        super();
        this.add('head', new Lambda('sum', (x) => x.sum([2, 3], true)));
      }
      forward(x: sc.Tensor): sc.Tensor {
        return (this as unknown as { childMap: Map<string, sc.nn.Module> }).childMap.get('head')!.forward(x.relu()) as sc.Tensor;
      }
    }
    // A decay mask over 1 GiB (L = 16400 positions) is refused with the reason, not written.
    class LongAttention extends sc.nn.Module {
      forward(x: sc.Tensor): sc.Tensor {
        const seq = x.reshape([1, 16400, 1]);
        return sc.F.decayAttention(seq, seq, seq, { gamma: 0.9, height: 1, width: 16400 });
      }
    }
    assert.throws(() => sc.onnx.export(new LongAttention(), [1, 1, 100, 164], path.join(tmp, 'long.onnx')), /op 'decay_attention' in module '<root>' needs a 16400x16400 decay mask at this shape \(1\.0 GiB/);
    assert.throws(() => sc.onnx.export(new WithSum(), [1, 3, 8, 8], path.join(tmp, 'sum.onnx')), /op 'reduce' \(sum\) in module 'head' has no ONNX mapping/);
  });

  it('scalpel export writes an ONNX file from a checkpoint trained one epoch', async function () {
    const data = path.join(tmp, 'data'), run = path.join(tmp, 'run');
    await ensureSyntheticData(data, 16, 32);
    // In-process (main() is what the bin runs), which spares the test a tsx start per command.
    const cli = async (...args: string[]) => {
      const out: string[] = [], err: string[] = [];
      const log = console.log, write = process.stderr.write;
      console.log = (...a: unknown[]) => void out.push(a.join(' '));
      process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
      try {
        const code = await main(['node', 'scalpel', ...args]);
        return { code, stdout: out.join('\n'), stderr: err.join('') };
      } finally {
        console.log = log;
        process.stderr.write = write;
      }
    };
    const t = await cli('train', '--model', 'tiny', '--model-opts', '{"width":4}', '--data', data, '--size', '32', '--epochs', '1', '--batch', '4', '--workers', '0', '--out', run, '--no-progress');
    assert.equal(t.code, 0, t.stderr);
    const file = path.join(tmp, 'tiny.onnx');
    const e = await cli('export', '--checkpoint', run, '--onnx', file, '--size', '48');
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /wrote .*tiny\.onnx \(tiny, .* nodes, opset 17\): input 'input' \[1, \d, 48, 48\]/);
    const decoded = sc.onnx.decodeModel(fs.readFileSync(file));
    assert.deepEqual(decoded.graph.input[0].type.tensorType.shape.dim.map((d: { dimValue: number }) => d.dimValue).slice(2), [48, 48]);
    if (ort) {
      const { model, meta } = sc.train.loadModelCheckpoint(path.join(run, 'best.safetensors'));
      try {
        model.eval();
        const x = sc.randn([1, meta.channels, 48, 48]);
        const want = sc.noGrad(() => model.forward(x)) as sc.Tensor;
        const out = await runOrt(file, x);
        assert.ok(relDiff(out.output.data, want.toArray() as Float32Array) < 1e-4);
      } finally {
        model.dispose();
      }
    }
    const missing = await cli('export', '--checkpoint', path.join(tmp, 'nope'), '--onnx', file);
    assert.equal(missing.code === 0, false);
    assert.match(missing.stderr, /nope/);
    const badDir = await cli('export', '--checkpoint', run, '--onnx', path.join(tmp, 'no-dir', 'm.onnx'));
    assert.notEqual(badDir.code, 0);
    assert.match(badDir.stderr, /^scalpel: cannot write .*m\.onnx: folder .*no-dir does not exist$/m);
  });
});
