// Bad input gets an Error that names the problem; nothing aborts the process or reads out of
// bounds in native code.
import { strict as assert } from 'node:assert';
import * as sc from '../src';

const F = sc.F;
const x4 = () => sc.randn([1, 4, 8, 8]);

const bad: [string, () => unknown, RegExp][] = [
  ['conv2d channel mismatch', () => F.conv2d(x4(), sc.randn([2, 3, 3, 3])), /input has 4 channels but weight expects 3 \(groups=1\)/],
  ['conv2d 3-D input', () => F.conv2d(sc.randn([4, 8, 8]), sc.randn([2, 4, 3, 3])), /input must be 4-D/],
  ['conv2d groups not dividing', () => F.conv2d(x4(), sc.randn([3, 2, 3, 3]), null, { groups: 3 }), /not divisible by groups=3/],
  ['conv2d bias size', () => F.conv2d(x4(), sc.randn([2, 4, 3, 3]), sc.randn([3])), /bias must be \[2\]/],
  ['conv2d kernel too large', () => F.conv2d(x4(), sc.randn([2, 4, 11, 11])), /larger than the padded input/],
  ['conv2d negative padding', () => F.conv2d(x4(), sc.randn([2, 4, 3, 3]), null, { padding: -1 }), /padding must be >= 0/],
  ['conv2d zero stride', () => F.conv2d(x4(), sc.randn([2, 4, 3, 3]), null, { stride: 0 }), /stride must be >= 1/],
  ['conv2d dtype mix', () => F.conv2d(x4(), sc.randn([2, 4, 3, 3], { dtype: 'float64' })), /dtypes differ/],
  ['add shape mismatch', () => sc.ones([2, 3]).add(sc.ones([4])), /shapes \[2, 3\] and \[4\] cannot be broadcast/],
  ['add dtype mismatch', () => sc.ones([2]).add(sc.ones([2], { dtype: 'float64' })), /dtypes differ/],
  ['unary on int', () => sc.ones([2], { dtype: 'int32' }).exp(), /expected a float32 or float64 tensor, got int32/],
  ['matmul inner mismatch', () => sc.ones([2, 3]).matmul(sc.ones([4, 2])), /cannot be multiplied \(3 vs 4\)/],
  ['bmm rank', () => F.bmm(sc.ones([2, 3]), sc.ones([3, 2])), /expected 3-D tensors/],
  ['linear features', () => F.linear(sc.ones([2, 5]), sc.ones([3, 4])), /input has 5 features but weight expects 4/],
  ['reshape wrong size', () => sc.ones([2, 3]).reshape(4, 2), /cannot reshape \[2, 3\] \(6 elements\) into \[4, 2\]/],
  ['reshape two -1', () => sc.ones([2, 3]).reshape(-1, -1), /only one dimension can be -1/],
  ['permute wrong rank', () => sc.ones([2, 3]).permute(0), /expected 2 dimensions/],
  ['permute repeated', () => sc.ones([2, 3]).permute(0, 0), /repeated dimension/],
  ['sum axis out of range', () => sc.ones([2, 3]).sum(2), /dimension 2 is out of range/],
  ['softmax axis out of range', () => sc.ones([2, 3]).softmax(-3), /out of range/],
  ['narrow out of range', () => sc.ones([5]).narrow(0, 3, 4), /range \[3, 7\) is outside dimension 0 of size 5/],
  ['expand incompatible', () => sc.ones([3]).expand(2, 4), /cannot expand \[3\] to \[2, 4\]/],
  ['tensor ragged', () => sc.tensor([[1, 2], [3]]), /ragged/],
  ['tensor wrong count', () => sc.tensor([1, 2, 3], [2, 2]), /3 values do not fill shape \[2, 2\]/],
  ['tensor bad values', () => sc.tensor(['a' as unknown as number]), /values must be numbers/],
  ['unknown dtype', () => sc.zeros([2], { dtype: 'float16' as sc.DType }), /unknown dtype "float16"/],
  ['negative shape', () => sc.zeros([2, -1]), /non-negative integers/],
  ['too many dims', () => sc.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1]), /at most 8 dimensions/],
  ['unknown device', () => sc.zeros([2], { device: 'tpu' }), /unknown device "tpu"/],
  ['item on many', () => sc.ones([3]).item(), /item: tensor has 3 elements/],
  ['use after dispose', () => { const t = sc.ones([2]); t.dispose(); return t.add(1); }, /used after dispose/],
  ['toArray after dispose', () => { const t = sc.ones([2]); t.dispose(); return t.toArray(); }, /used after dispose/],
  ['backward non-scalar', () => sc.ones([2], { requiresGrad: true }).mul(2).backward(), /gradient is needed for a non-scalar output/],
  ['backward without grad', () => sc.ones([2]).sum().backward(), /does not require grad/],
  ['backward twice', () => { const a = sc.ones([2], { requiresGrad: true }); const l = a.mul(a).sum(); l.backward(); l.backward(); }, /already freed/],
  ['requiresGrad on int', () => sc.zeros([2], { dtype: 'int32', requiresGrad: true }), /requiresGrad needs a float dtype/],
  ['clipGradNorm bad max norm', () => sc.optim.clipGradNorm([sc.ones([1])], -1), /maxNorm must be positive/],
  ['clamp min > max', () => sc.ones([2]).clamp(2, 1), /min \(2\) is greater than max \(1\)/],
  ['setNumThreads bad', () => sc.setNumThreads(-2), /non-negative integer/],
  ['SGD no params', () => new sc.optim.SGD([], { lr: 0.1 }), /non-empty list of parameters/],
  ['SGD negative lr', () => new sc.optim.SGD([sc.ones([1], { requiresGrad: true })], { lr: -1 }), /lr must be a non-negative number/],
  ['tidy async', () => sc.tidy(() => Promise.resolve(1)), /returned a Promise/],
  ['manualSeed NaN', () => sc.manualSeed(NaN), /finite number/],
  ['arange zero step', () => sc.arange(0, 5, 0), /non-zero finite number/],
  ['input not a tensor', () => sc.F.relu(null as unknown as sc.Tensor), /must be a Tensor/],
];

describe('bad input gives clear errors', () => {
  it(`has at least 30 bad calls (${bad.length})`, () => assert.ok(bad.length >= 30));
  for (const [name, fn, re] of bad) {
    it(name, () => {
      assert.throws(fn, (e: unknown) => {
        assert.ok(e instanceof Error, 'an Error');
        assert.match((e as Error).message, re);
        return true;
      });
    });
  }
  it('cuda without a GPU is a clear error, not a crash', function () {
    if (sc.cuda.isAvailable()) this.skip();
    assert.throws(() => sc.zeros([2], { device: 'cuda' }), /device 'cuda' is not available: /);
    assert.equal(sc.cuda.isAvailable(), false);
  });
  it('the process survives many bad native calls (no abort)', () => {
    for (let i = 0; i < 100; i++) assert.throws(() => sc.ones([2, 3]).matmul(sc.ones([2, 3])));
  });
});
