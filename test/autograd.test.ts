// Autograd: accumulation, given gradients, noGrad/detach, graph release, gradcheck itself.
import { strict as assert } from 'node:assert';
import * as sc from '../src';

describe('autograd', () => {
  it('accumulates into .grad across backward calls and through shared inputs', () => {
    const x = sc.tensor([1, 2, 3], { requiresGrad: true });
    x.mul(x).sum().backward();
    assert.deepEqual(Array.from(x.grad!.toArray()), [2, 4, 6]);
    x.mul(3).sum().backward();
    assert.deepEqual(Array.from(x.grad!.toArray()), [5, 7, 9]);
    x.zeroGrad();
    assert.equal(x.grad, null);
  });
  it('backward with an explicit gradient for non-scalar outputs', () => {
    const x = sc.tensor([1, 2], { requiresGrad: true });
    x.mul(x).backward(sc.tensor([1, 10]));
    assert.deepEqual(Array.from(x.grad!.toArray()), [2, 40]);
  });
  it('noGrad records nothing; detach cuts the graph; retainGraph allows a second pass', () => {
    const x = sc.tensor([2], { requiresGrad: true });
    const y = sc.noGrad(() => x.mul(3));
    assert.equal(y.requiresGrad, false);
    const d = x.mul(2).detach();
    assert.equal(d.requiresGrad, false);
    const l = x.mul(x).sum();
    l.backward(undefined, { retainGraph: true });
    l.backward();
    assert.deepEqual(Array.from(x.grad!.toArray()), [8]);
  });
  it('gradients of leaves are contiguous tensors of their own (even from broadcasts)', () => {
    const b = sc.tensor([1, 2, 3], { requiresGrad: true });
    sc.ones([4, 3]).add(b).sum().backward();
    assert.ok(b.grad!.isContiguous());
    assert.deepEqual(Array.from(b.grad!.toArray()), [4, 4, 4]);
  });
  it('gradcheck catches a wrong derivative', () => {
    const bad = sc.defineOp({
      name: 'test_bad_square',
      forward: ([x]) => [x.square()],
      backward: ({ inputs: [x] }, [g]) => [g ? g.mul(x) : null], // should be 2x
    });
    const x = sc.randn([5], { dtype: 'float64', requiresGrad: true });
    const res = sc.gradcheck((t) => sc.apply1(bad, [t], {}), [x]);
    assert.equal(res.ok, false);
    assert.match(res.worst, /analytic .* numeric/);
    (sc.opTable() as Map<string, unknown>).delete('test_bad_square');
  });
  it('a whole small model passes gradcheck in float64', () => {
    sc.manualSeed(3);
    const w1 = sc.randn([4, 2, 3, 3], { dtype: 'float64', requiresGrad: true });
    const w2 = sc.randn([1, 4, 1, 1], { dtype: 'float64', requiresGrad: true });
    const x = sc.randn([1, 2, 6, 6], { dtype: 'float64', requiresGrad: true });
    const res = sc.gradcheck((a, b, c) => sc.F.conv2d(sc.F.conv2d(a, b, null, { padding: 1 }).gelu(), c).sigmoid(), [x, w1, w2], { maxElements: 40 });
    assert.ok(res.ok, res.worst);
  });
});
