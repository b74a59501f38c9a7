// Tensors: creation, dtypes, views sharing memory, printing, ndarray interop, devices.
import { strict as assert } from 'node:assert';
import ndarray from 'ndarray';
import * as sc from '../src';

describe('tensor creation', () => {
  it('from nested arrays, typed arrays and numbers', () => {
    const a = sc.tensor([[1, 2, 3], [4, 5, 6]]);
    assert.deepEqual(a.shape, [2, 3]);
    assert.equal(a.dtype, 'float32');
    assert.deepEqual(a.tolist(), [[1, 2, 3], [4, 5, 6]]);
    const b = sc.tensor(new Int32Array([1, 2, 3, 4]), [2, 2]);
    assert.equal(b.dtype, 'int32');
    assert.deepEqual(Array.from(b.toArray()), [1, 2, 3, 4]);
    const c = sc.tensor(2.5);
    assert.deepEqual(c.shape, []);
    assert.equal(c.item(), 2.5);
    const d = sc.tensor([1, 2], { dtype: 'float64' });
    assert.ok(d.toArray() instanceof Float64Array);
    assert.ok(sc.tensor([1, 0, 1], { dtype: 'uint8' }).toArray() instanceof Uint8Array);
  });
  it('zeros, ones, full, arange, likes', () => {
    assert.deepEqual(Array.from(sc.zeros([3]).toArray()), [0, 0, 0]);
    assert.deepEqual(Array.from(sc.ones([2], { dtype: 'int32' }).toArray()), [1, 1]);
    assert.deepEqual(Array.from(sc.fullOf([2], 7).toArray()), [7, 7]);
    assert.deepEqual(Array.from(sc.arange(5).toArray()), [0, 1, 2, 3, 4]);
    assert.deepEqual(Array.from(sc.arange(1, 2, 0.25).toArray()), [1, 1.25, 1.5, 1.75]);
    const l = sc.onesLike(sc.zeros([2, 2], { dtype: 'float64' }));
    assert.equal(l.dtype, 'float64');
    assert.deepEqual(l.shape, [2, 2]);
  });
  it('rand/randn are seedable and have the right statistics', () => {
    sc.manualSeed(42);
    const a = sc.randn([10000]).toArray();
    sc.manualSeed(42);
    const b = sc.randn([10000]).toArray();
    assert.deepEqual(a, b);
    const mean = a.reduce((s: number, v: number) => s + v, 0) / a.length;
    const varc = a.reduce((s: number, v: number) => s + (v - mean) ** 2, 0) / a.length;
    assert.ok(Math.abs(mean) < 0.05 && Math.abs(varc - 1) < 0.05, `mean ${mean} var ${varc}`);
    const u = sc.rand([10000]).toArray() as Float32Array;
    assert.ok(u.every((v) => v >= 0 && v < 1));
  });
  it('prints shape, dtype and values', () => {
    const s = String(sc.tensor([1.5, 2, 3]));
    assert.match(s, /Tensor\(shape=\[3\], dtype=float32, device=cpu,\n {2}\[1\.500, 2, 3\]\)/);
    assert.match(String(sc.arange(100)), /0, 1, 2, 3, 4, 5, \.\.\., 97, 98, 99/);
  });
});

describe('views', () => {
  it('reshape, permute, narrow and expand share memory with their base', () => {
    const a = sc.arange(12).reshape(3, 4);
    const t = a.transpose(0, 1);
    assert.equal(t.storage, a.storage);
    assert.ok(!t.isContiguous());
    assert.deepEqual(t.tolist(), [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]]);
    const n = a.narrow(1, 1, 2);
    assert.equal(n.storage, a.storage);
    assert.deepEqual(n.tolist(), [[1, 2], [5, 6], [9, 10]]);
    const e = sc.tensor([1, 2]).reshape(2, 1).expand(2, 3);
    assert.deepEqual(e.strides, [1, 0]);
    assert.deepEqual(e.tolist(), [[1, 1, 1], [2, 2, 2]]);
    assert.deepEqual(a.slice(0, -1).shape, [1, 4]);
    assert.deepEqual(a.unsqueeze(0).squeeze(0).shape, [3, 4]);
  });
  it('disposing a view keeps the base alive and vice versa', () => {
    const a = sc.arange(6);
    const v = a.reshape(2, 3);
    a.dispose();
    assert.deepEqual(Array.from(v.toArray()), [0, 1, 2, 3, 4, 5]);
    v.dispose();
    assert.throws(() => v.toArray(), /used after dispose/);
  });
  it('view() refuses non-contiguous tensors; reshape() copies', () => {
    const t = sc.arange(6).reshape(2, 3).transpose(0, 1);
    assert.throws(() => t.view(6), /not contiguous/);
    assert.deepEqual(Array.from(t.reshape(6).toArray()), [0, 3, 1, 4, 2, 5]);
  });
  it('casts between dtypes', () => {
    const t = sc.tensor([1.7, -2.2, 3.5]);
    assert.deepEqual(Array.from(t.to('int32').toArray()), [1, -2, 3]);
    assert.deepEqual(Array.from(t.to('float64').toArray()), Array.from(Float32Array.from([1.7, -2.2, 3.5])));
  });
});

describe('ndarray interop', () => {
  it('toNdarray is zero-copy on the CPU and respects strides', () => {
    const t = sc.arange(6).reshape(2, 3);
    const nd = t.toNdarray();
    assert.equal(nd.get(1, 2), 5);
    nd.set(0, 0, 42);
    assert.equal(t.toArray()[0], 42, 'writes through the ndarray reach the tensor');
    const tt = t.transpose(0, 1).toNdarray();
    assert.equal(tt.get(2, 1), 5);
  });
  it('fromNdarray shares a typed array\'s memory (any strides) without copying', () => {
    const buf = new Float32Array([1, 2, 3, 4, 5, 6]);
    const t = sc.fromNdarray(ndarray(buf, [2, 3]).transpose(1, 0));
    assert.deepEqual(t.tolist(), [[1, 4], [2, 5], [3, 6]]);
    buf[1] = 20;
    assert.deepEqual(t.tolist(), [[1, 4], [20, 5], [3, 6]], 'the tensor sees writes to the ndarray');
    assert.deepEqual(Array.from(t.mul(2).toArray()), [2, 8, 40, 10, 6, 12]);
    const sub = sc.fromNdarray(ndarray(buf, [2], [2], 3));
    assert.deepEqual(Array.from(sub.toArray()), [4, 6]);
  });
  it('fromNdarray copies when the dtype changes or the data is a plain array', () => {
    const t = sc.fromNdarray(ndarray([1, 2, 3, 4], [2, 2]));
    assert.equal(t.dtype, 'float32');
    assert.deepEqual(t.tolist(), [[1, 2], [3, 4]]);
  });
  it('fromNdarray copies any strided ndarray', () => {
    const nd = ndarray(new Float64Array([1, 2, 3, 4, 5, 6]), [2, 3]).transpose(1, 0);
    const t = sc.fromNdarray(nd, { dtype: 'float32' });
    assert.deepEqual(t.shape, [3, 2]);
    assert.equal(t.dtype, 'float32');
    assert.deepEqual(t.tolist(), [[1, 4], [2, 5], [3, 6]]);
  });
});

describe('devices', () => {
  it('reports the devices this process can use', () => {
    const devs = sc.availableDevices();
    assert.ok(devs.includes('cpu'));
    assert.equal(devs.includes('cuda'), sc.cuda.isAvailable());
  });
  it('moves tensors and gradients between devices when cuda is available', function () {
    if (!sc.cuda.isAvailable()) this.skip();
    const a = sc.tensor([1, 2, 3], { requiresGrad: true });
    const g = a.to('cuda').mul(2).to('cpu').sum();
    g.backward();
    assert.deepEqual(Array.from(a.grad!.toArray()), [2, 2, 2]);
  });
});
