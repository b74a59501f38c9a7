import { strict as assert } from 'node:assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as sc from '../src';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(Number(a[i]) - Number(b[i])) <= tol * (1 + Math.abs(Number(b[i]))), `element ${i}: ${a[i]} vs ${b[i]}`);
};

class Tiny extends sc.nn.Module {
  fc1 = this.add('fc1', new sc.nn.Linear(4, 3));
  act = this.add('act', sc.nn.ReLU());
  fc2 = this.add('fc2', new sc.nn.Linear(3, 2, { bias: false }));
  forward(x: sc.Tensor): sc.Tensor {
    return this.fc2.forward(this.act.forward(this.fc1.forward(x)));
  }
}

describe('nn.Module', () => {
  it('lists parameters and state dict entries in registration order with dotted names', () => {
    const m = new Tiny();
    assert.deepEqual(Object.keys(m.stateDict()), ['fc1.weight', 'fc1.bias', 'fc2.weight']);
    assert.equal(m.numParameters(), 4 * 3 + 3 + 3 * 2);
    assert.ok(m.parameters().every((p) => p.requiresGrad));
    m.dispose();
  });

  it('loadStateDict copies values and reports missing / unexpected / mis-shaped entries', () => {
    const a = new Tiny(), b = new Tiny();
    b.loadStateDict(a.stateDict());
    close(b.fc1.weight.toArray() as Float32Array, a.fc1.weight.toArray() as Float32Array, 0);
    const bad = { ...a.stateDict(), extra: sc.zeros([1]) } as Record<string, sc.Tensor>;
    delete bad['fc2.weight'];
    bad['fc1.bias'] = sc.zeros([5]);
    assert.throws(() => b.loadStateDict(bad), /missing: fc2\.weight.*unexpected: extra.*wrong shape: fc1\.bias: expected \[3\], got \[5\]/);
    const rep = b.loadStateDict(bad, { strict: false });
    assert.deepEqual(rep.missing, ['fc2.weight']);
    assert.deepEqual(rep.unexpected, ['extra']);
    assert.equal(rep.mismatched.length, 1);
    a.dispose();
    b.dispose();
  });

  it('BatchNorm2d continues num_batches_tracked from a loaded state dict', () => {
    const a = new sc.nn.BatchNorm2d(2), b = new sc.nn.BatchNorm2d(2);
    const x = sc.randn([3, 2, 4, 4]);
    a.forward(x);
    a.forward(x);
    b.loadStateDict(a.stateDict());
    b.forward(x);
    assert.equal(b.numBatchesTracked!.item(), 3);
  });

  it("to('float64') casts float parameters and buffers in place, keeping integer buffers and references", () => {
    const bn = new sc.nn.BatchNorm2d(2);
    const w = bn.weight!;
    const before = Array.from(w.toArray() as Float32Array);
    bn.to('float64');
    assert.equal(w, bn.weight, 'the parameter object is the same');
    assert.equal(w.dtype, 'float64');
    assert.deepEqual(Array.from(w.toArray() as Float64Array), before);
    const sd = bn.stateDict();
    assert.equal(sd.running_var.dtype, 'float64');
    assert.equal(sd.num_batches_tracked.dtype, 'int64');
    const y = sc.tidy(() => bn.forward(sc.randn([3, 2, 4, 4]).to('float64')));
    assert.equal(y.dtype, 'float64');
    bn.to('float32');
    assert.equal(w.dtype, 'float32');
    assert.throws(() => bn.to('int32'), /Module.to: parameters can be cast to 'float32' or 'float64', not 'int32'/);
    y.dispose();
    bn.dispose();
  });

  it('train/eval flags reach every child', () => {
    const m = new Tiny().eval();
    assert.ok(m.namedModules().every(([, c]) => !c.training));
    m.train();
    assert.ok(m.namedModules().every(([, c]) => c.training));
    m.dispose();
  });
});

describe('safetensors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-st-'));
  it('round-trips every dtype, shape and the metadata, keeping order', () => {
    const dict = {
      'a.weight': sc.tensor([1.5, -2, 3.25, 4], [2, 2]),
      'b.f64': sc.tensor([Math.PI], [1], { dtype: 'float64' }),
      'c.count': sc.tensor([7], [], { dtype: 'int64' }),
      'd.i32': sc.tensor([1, -2, 3], [3], { dtype: 'int32' }),
      'e.u8': sc.tensor([0, 255], [2], { dtype: 'uint8' }),
    };
    const file = path.join(dir, 'w.safetensors');
    sc.saveSafetensors(file, dict, { format: 'pt' });
    const { tensors, metadata } = sc.loadSafetensors(file);
    assert.deepEqual(Object.keys(tensors), Object.keys(dict));
    assert.deepEqual(metadata, { format: 'pt' });
    for (const [k, t] of Object.entries(dict)) {
      assert.deepEqual(tensors[k].shape, t.shape);
      assert.equal(tensors[k].dtype, t.dtype);
      assert.deepEqual(Array.from(tensors[k].toArray() as ArrayLike<unknown>), Array.from(t.toArray() as ArrayLike<unknown>));
    }
    // The header starts the data 8-byte aligned, as other readers expect.
    const buf = fs.readFileSync(file);
    assert.equal((8 + Number(buf.readBigUInt64LE(0))) % 8, 0);
  });
  it('rejects truncated and corrupt files with the file name', () => {
    const file = path.join(dir, 'w.safetensors');
    const bad = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(bad, fs.readFileSync(file).subarray(0, 40));
    assert.throws(() => sc.loadSafetensors(bad), /bad\.safetensors: not a valid safetensors file/);
    fs.writeFileSync(bad, Buffer.from('garbage!garbage!'));
    assert.throws(() => sc.loadSafetensors(bad), /bad\.safetensors/);
    assert.throws(() => sc.loadSafetensors(path.join(dir, 'none.safetensors')), /no such file/);
  });
  // Builds a file from a hand-written header, so each way of breaking the format is exact.
  function forge(entries: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>, dataBytes: number): Buffer {
    const json = Buffer.from(JSON.stringify(entries));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, Buffer.alloc(dataBytes, 1)]);
  }
  it('validates data offsets as the format specifies (non-negative, contiguous, covering the data exactly)', () => {
    const f32 = (b: number, n = 2) => ({ dtype: 'F32', shape: [n], data_offsets: [b, b + 4 * n] });
    const ok = sc.decodeSafetensors(forge({ b: f32(8), a: f32(0) }, 16));
    assert.deepEqual(Object.keys(ok.tensors).sort(), ['a', 'b']);
    sc.dispose(Object.values(ok.tensors));
    const cases: [string, Buffer, RegExp][] = [
      ['negative offset', forge({ a: { dtype: 'F32', shape: [2], data_offsets: [-8, 0] } }, 8), /entry 'a'.*data offsets \[-8, 0\]/],
      ['overlap', forge({ a: f32(0), b: f32(4) }, 12), /entry 'b' \[4, 12\] overlaps/],
      ['gap', forge({ a: f32(0), b: f32(12) }, 20), /entry 'b' starts at 12, leaving bytes 8\.\.12/],
      ['not starting at 0', forge({ a: f32(8) }, 16), /entry 'a' starts at 8/],
      ['trailing bytes', forge({ a: f32(0) }, 12), /cover 8 bytes of data but the data region holds 12/],
      ['past the end', forge({ a: f32(0, 4) }, 8), /entry 'a'.*data region \(8 bytes\)/],
      ['metadata not strings', Buffer.concat([(() => { const b = Buffer.alloc(8); b.writeBigUInt64LE(27n); return b; })(), Buffer.from('{"__metadata__":{"a":1}}   ')]), /__metadata__ must map names to strings/],
    ];
    for (const [what, buf, re] of cases) assert.throws(() => sc.decodeSafetensors(buf, { source: 'f.safetensors' }), (e: Error) => /^f\.safetensors: not a valid safetensors file/.test(e.message) && re.test(e.message), what);
  });
  it('loadStateDict takes what loadSafetensors returns, and names what it was given otherwise', () => {
    const m = new sc.nn.Linear(2, 3);
    const file = path.join(dir, 'lin.safetensors');
    sc.saveSafetensors(file, m.stateDict());
    const loaded = sc.loadSafetensors(file);
    const r = new sc.nn.Linear(2, 3).loadStateDict(loaded);
    assert.deepEqual(r.missing, []);
    assert.throws(() => m.loadStateDict(sc.ones([2]) as never), /expected a dict of name -> tensor .*got a tensor/);
    assert.throws(() => m.loadStateDict({ weight: [1, 2] } as never), /entries 'weight' are not tensors/);
    sc.dispose(Object.values(loaded.tensors));
  });
  it('refuses integer tensors for float parameters, naming the entry (float64 -> float32 is a cast)', () => {
    const m = new sc.nn.Linear(2, 3);
    const ints = { weight: sc.tensor([1e9, 2, 3, 4, 5, 6], [3, 2], { dtype: 'int32' }), bias: sc.zeros([3]) };
    assert.throws(() => m.loadStateDict(ints), /entry 'weight' is int32 but the model's float32 parameter needs floating-point values/);
    const f64 = { weight: sc.tensor([1, 2, 3, 4, 5, 6], [3, 2], { dtype: 'float64' }), bias: sc.zeros([3]) };
    m.loadStateDict(f64);
    assert.deepEqual(Array.from(m.weight.toArray() as Float32Array), [1, 2, 3, 4, 5, 6]);
    sc.dispose([...Object.values(ints), ...Object.values(f64)]);
  });
  it('writes atomically: a failed write leaves the previous file intact and no temp file', () => {
    const file = path.join(dir, 'keep.safetensors');
    sc.saveSafetensors(file, { x: sc.ones([3]) });
    const before = fs.readFileSync(file);
    const disposed = sc.ones([2]);
    disposed.dispose();
    assert.throws(() => sc.saveSafetensors(file, { x: sc.ones([3]), y: disposed }), /used after dispose/);
    assert.deepEqual(fs.readFileSync(file), before);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
  });
});

describe('GroupNorm (composite of layerNorm)', () => {
  it('matches a float64 reference for 1, 2 and C groups, and its gradients check', () => {
    const [n, c, h, w] = [2, 4, 3, 3];
    const x = sc.randn([n, c, h, w], { dtype: 'float64', generator: new sc.Generator(5) });
    const wt = sc.tensor([1.5, -0.5, 2, 0.25], [c], { dtype: 'float64' });
    const b = sc.tensor([0.1, 0.2, -0.3, 0], [c], { dtype: 'float64' });
    const xs = x.toArray() as Float64Array, ws = wt.toArray() as Float64Array, bs = b.toArray() as Float64Array;
    for (const g of [1, 2, 4]) {
      const y = sc.F.groupNorm(x, g, wt, b).toArray() as Float64Array;
      const per = (c / g) * h * w;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < g; j++) {
          const off = (i * c + j * (c / g)) * h * w;
          const seg = Array.from(xs.subarray(off, off + per));
          const mu = seg.reduce((a, v) => a + v, 0) / per;
          const v = seg.reduce((a, t) => a + (t - mu) ** 2, 0) / per;
          seg.forEach((t, k) => {
            const ch = j * (c / g) + Math.floor(k / (h * w));
            const want = ((t - mu) / Math.sqrt(v + 1e-5)) * ws[ch] + bs[ch];
            assert.ok(Math.abs(y[off + k] - want) < 1e-10, `groups ${g}: ${y[off + k]} vs ${want}`);
          });
        }
      }
    }
    const xg = x.clone().requiresGrad_(), wg = wt.clone().requiresGrad_(), bg = b.clone().requiresGrad_();
    assert.ok(sc.gradcheck((a, ww, bb) => sc.F.groupNorm(a, 2, ww, bb), [xg, wg, bg]).ok);
    assert.throws(() => sc.F.groupNorm(x, 3), /groupNorm: 4 channels cannot be split into 3 groups/);
    assert.throws(() => new sc.nn.GroupNorm(4, 6), /GroupNorm: 6 channels cannot be split into 4 groups/);
    sc.dispose([x, wt, b, xg, wg, bg]);
  });
});

describe('optimizers', () => {
  // Reference updates written out directly from PyTorch's documented algorithms.
  function refSgd(p: number[], grads: number[][], o: { lr: number; momentum: number; weightDecay: number; nesterov: boolean }) {
    let buf: number[] | null = null;
    for (const g0 of grads) {
      const d = g0.map((g, i) => g + o.weightDecay * p[i]);
      let step = d;
      if (o.momentum) {
        buf = buf ? buf.map((b, i) => o.momentum * b + d[i]) : d.slice();
        step = o.nesterov ? d.map((v, i) => v + o.momentum * buf![i]) : buf;
      }
      p = p.map((v, i) => v - o.lr * step[i]);
    }
    return p;
  }
  function refAdam(p: number[], grads: number[][], o: { lr: number; b1: number; b2: number; eps: number; wd: number; decoupled: boolean }) {
    let m = p.map(() => 0), v = p.map(() => 0);
    grads.forEach((g0, k) => {
      const t = k + 1;
      if (o.decoupled) p = p.map((x) => x * (1 - o.lr * o.wd));
      const g = o.decoupled ? g0 : g0.map((x, i) => x + o.wd * p[i]);
      m = m.map((x, i) => o.b1 * x + (1 - o.b1) * g[i]);
      v = v.map((x, i) => o.b2 * x + (1 - o.b2) * g[i] * g[i]);
      p = p.map((x, i) => x - (o.lr * (m[i] / (1 - o.b1 ** t))) / (Math.sqrt(v[i] / (1 - o.b2 ** t)) + o.eps));
    });
    return p;
  }
  const grads = [[0.5, -1, 2], [0.1, 0.3, -0.2], [-1, 0.5, 0.25]];
  const p0 = [1, 2, -3];
  // The parameter after one step per gradient in gs, from start.
  const run = (make: (ps: sc.Tensor[]) => sc.optim.Optimizer, start = p0, gs = grads, dtype: 'float32' | 'float64' = 'float64') => {
    const p = sc.tensor(start, { dtype, requiresGrad: true });
    const opt = make([p]);
    for (const g of gs) {
      p.grad = sc.keep(sc.tensor(g, { dtype }));
      opt.step();
      opt.zeroGrad();
    }
    const out = Array.from(p.toArray() as ArrayLike<number>);
    opt.dispose();
    p.dispose();
    return out;
  };
  for (const nesterov of [false, true]) {
    it(`SGD momentum weight decay nesterov=${nesterov} matches the reference`, () => {
      const o = { lr: 0.1, momentum: 0.9, weightDecay: 1e-2, nesterov };
      close(run((ps) => new sc.optim.SGD(ps, o)), refSgd(p0, grads, o), 1e-12);
    });
  }
  it('float32 updates of 1003 values (the vectorised loops and their tails) match the reference', () => {
    const n = 1003;
    const q0 = Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 0.7)));
    const gs = [0, 1, 2].map((k) => Array.from({ length: n }, (_, i) => Math.fround(Math.cos(i * 0.3 + k))));
    const runF32 = (make: (ps: sc.Tensor[]) => sc.optim.Optimizer) => run(make, q0, gs, 'float32');
    for (const nesterov of [false, true]) {
      const o = { lr: 0.1, momentum: 0.9, weightDecay: 1e-2, nesterov };
      close(runF32((ps) => new sc.optim.SGD(ps, o)), refSgd(q0, gs, o), 1e-5);
    }
    close(runF32((ps) => new sc.optim.SGD(ps, { lr: 0.5, weightDecay: 1e-2 })), refSgd(q0, gs, { lr: 0.5, momentum: 0, weightDecay: 1e-2, nesterov: false }), 1e-5);
    close(runF32((ps) => new sc.optim.Adam(ps, { lr: 0.01, weightDecay: 0.1 })), refAdam(q0, gs, { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1, decoupled: false }), 1e-5);
    close(runF32((ps) => new sc.optim.AdamW(ps, { lr: 0.01 })), refAdam(q0, gs, { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, decoupled: true }), 1e-5);
  });
  it('plain SGD', () => {
    close(run((ps) => new sc.optim.SGD(ps, { lr: 0.5 })), refSgd(p0, grads, { lr: 0.5, momentum: 0, weightDecay: 0, nesterov: false }), 1e-12);
  });
  it('Adam with L2 weight decay and AdamW with decoupled decay match the reference', () => {
    close(run((ps) => new sc.optim.Adam(ps, { lr: 0.01, weightDecay: 0.1 })), refAdam(p0, grads, { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1, decoupled: false }), 1e-12);
    close(run((ps) => new sc.optim.AdamW(ps, { lr: 0.01 })), refAdam(p0, grads, { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, decoupled: true }), 1e-12);
  });
  it('clipGradNorm scales gradients to the max norm and returns the original norm', () => {
    const a = sc.tensor([3, 0], { requiresGrad: true }), b = sc.tensor([4], { requiresGrad: true });
    a.grad = sc.keep(sc.tensor([3, 0]));
    b.grad = sc.keep(sc.tensor([4]));
    const n = sc.optim.clipGradNorm([a, b], 1);
    assert.ok(Math.abs(n - 5) < 1e-6);
    close(a.grad.toArray(), [0.6, 0], 1e-5);
    close(b.grad.toArray(), [0.8], 1e-5);
  });
  it('optimizer state round-trips through stateDict', () => {
    const p = sc.tensor([1, 2], { requiresGrad: true });
    const o1 = new sc.optim.Adam([p], { lr: 0.1 });
    p.grad = sc.keep(sc.tensor([1, -1]));
    o1.step();
    const sd = o1.stateDict();
    const o2 = new sc.optim.Adam([p], { lr: 0.1 });
    o2.loadStateDict(sd);
    assert.equal(o2.state.get(p)!.step, 1);
    close((o2.state.get(p)!.exp_avg as sc.Tensor).toArray(), (o1.state.get(p)!.exp_avg as sc.Tensor).toArray(), 0);
  });
});

describe('schedulers', () => {
  const opt = () => new sc.optim.SGD([sc.tensor([1], { requiresGrad: true })], { lr: 0.01 });
  it('poly decay follows base * (1 - t/T)^0.9', () => {
    const o = opt();
    const s = new sc.optim.PolyLR(o, 100);
    for (let i = 0; i < 30; i++) s.step();
    assert.ok(Math.abs(o.lr - 0.01 * Math.pow(0.7, 0.9)) < 1e-12);
  });
  it('cosine reaches the floor at maxSteps', () => {
    const o = opt();
    const s = new sc.optim.CosineLR(o, 10, 0.1);
    for (let i = 0; i < 10; i++) s.step();
    assert.ok(Math.abs(o.lr - 0.001) < 1e-12);
  });
  it('warm-up rises linearly then hands over', () => {
    const o = opt();
    const s = new sc.optim.WarmupLR(o, 4);
    assert.ok(Math.abs(o.lr - 0.002) < 1e-12);
    for (let i = 0; i < 4; i++) s.step();
    assert.ok(Math.abs(o.lr - 0.01) < 1e-12);
  });
  it('ReduceLROnPlateau halves after patience epochs without improvement', () => {
    const o = opt();
    const s = new sc.optim.ReduceLROnPlateau(o, { mode: 'max', factor: 0.5, patience: 2 });
    [0.5, 0.6, 0.6, 0.6].forEach((v) => s.step(v));
    assert.equal(o.lr, 0.01);
    s.step(0.6);
    assert.equal(o.lr, 0.005);
  });
});
