// The CUDA backend's kernels against the CPU backend at sizes beyond the op harness (a larger
// bmm, CMUNeXt-like convolutions), the host/device round trip, and kernel parity with the CPU
// backend. Runs on a GPU when one is present and on the emulated flavour (SCALPEL_FLAVOUR=emu,
// run by `npm test` under the three schedules); skipped, with the reason, otherwise.
import { strict as assert } from 'node:assert';
import * as sc from '../src';
import { native } from '../src/native';

function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return num / Math.max(den, 1e-30);
}

function host(t: sc.Tensor): Float64Array {
  return Float64Array.from(t.toArray() as Float32Array);
}

// The core kernels of this backend (elementwise, reductions, GEMM, convolution), checked by name;
// full parity (every CPU kernel also on cuda) is asserted as well.
const MY_KERNELS = [
  'copy', 'fill', 'copy_strided', 'unary', 'binary', 'where', 'reduce', 'softmax',
  'softmax_backward', 'bmm', 'conv2d', 'conv2d_backward_input', 'conv2d_backward_weight',
];

describe('cuda backend', function () {
  this.timeout(600000);

  before(function () {
    if (!sc.cuda.isAvailable()) {
      console.log(`      [skipped] cuda backend not available: ${sc.cuda.unavailableReason()} ` +
        '(run with SCALPEL_FLAVOUR=emu for the emulated backend)');
      this.skip();
    }
  });

  it('kernel parity with the CPU backend (every CPU kernel is registered on cuda)', () => {
    const cpu = new Set(native.kernels(0));
    const cuda = new Set(native.kernels(1));
    const missing = [...cpu].filter((k) => !cuda.has(k)).sort();
    if (missing.length) console.log(`      kernels registered on cpu but not on cuda (${missing.length}): ${missing.join(', ')}`);
    const mine = MY_KERNELS.filter((k) => !cuda.has(k));
    assert.deepEqual(mine, [], `kernels missing on cuda: ${mine.join(', ')}`);
    for (const k of MY_KERNELS) assert.ok(cpu.has(k), `${k} is not a CPU kernel name`);
    assert.deepEqual(missing, [], `kernels registered on cpu but not on cuda: ${missing.join(', ')}`);
  });

  it('scaledDotProductAttention names mixed devices', () => {
    sc.tidy(() => {
      const q = sc.randn([1, 1, 4, 2]);
      assert.throws(() => sc.F.scaledDotProductAttention(q, q.to('cuda'), q), /q is on cpu but k is on cuda; move them to one device/);
      assert.throws(() => sc.F.scaledDotProductAttention(q.to('cuda'), q.to('cuda'), q), /q is on cuda but v is on cpu/);
    });
  });

  it('to(cuda) and back round-trips values, dtypes and strided views', () => {
    sc.tidy(() => {
      const vals = Float32Array.from({ length: 24 }, (_, i) => i * 0.5 - 3);
      const a = sc.tensor(vals, [2, 3, 4]);
      const d = a.to('cuda');
      assert.equal(d.device, 'cuda');
      const back = d.to('cpu');
      assert.equal(back.device, 'cpu');
      assert.deepEqual(Array.from(back.toArray() as Float32Array), Array.from(vals));
      // A transposed view copied on the device, then read back.
      const t = d.permute([2, 0, 1]).contiguous().to('cpu');
      const want = a.permute([2, 0, 1]).contiguous();
      assert.deepEqual(Array.from(t.toArray() as Float32Array), Array.from(want.toArray() as Float32Array));
      const f64 = sc.tensor(Float64Array.from([1.25, -2.5, 3]), [3], { dtype: 'float64' }).to('cuda').to('cpu');
      assert.equal(f64.dtype, 'float64');
      assert.deepEqual(Array.from(f64.toArray() as Float64Array), [1.25, -2.5, 3]);
    });
  });

  it('bmm 130x70x90 (batched, transposed operands) matches the CPU', () => {
    sc.tidy(() => {
      const g = new sc.Generator(7);
      const a = sc.randn([2, 130, 70], { generator: g });
      const b = sc.randn([2, 70, 90], { generator: g });
      const want = host(a.matmul(b));
      const got = host(a.to('cuda').matmul(b.to('cuda')));
      assert.ok(nmse(got, want) < 1e-10, `bmm NMSE ${nmse(got, want)}`);
      // Transposed operands (the views make matmul pass transA / transB).
      const at = sc.randn([70, 130], { generator: g });
      const bt = sc.randn([90, 70], { generator: g });
      const want2 = host(at.transpose(0, 1).matmul(bt.transpose(0, 1)));
      const got2 = host(at.to('cuda').transpose(0, 1).matmul(bt.to('cuda').transpose(0, 1)));
      assert.ok(nmse(got2, want2) < 1e-10, `bmm (transposed) NMSE ${nmse(got2, want2)}`);
    });
  });

  it('reductions and softmax in the block-per-row paths match the CPU', () => {
    sc.tidy(() => {
      const g = new sc.Generator(5);
      const x = sc.randn([3, 1500], { generator: g });
      const xd = x.to('cuda');
      const pairs: [sc.Tensor, sc.Tensor, string][] = [
        [x.sum(1), xd.sum(1), 'sum'],
        [x.max(1), xd.max(1), 'max'],
        [x.argmax(1), xd.argmax(1), 'argmax'],
        [x.softmax(1), xd.softmax(1), 'softmax'],
        [x.transpose(0, 1).softmax(1), xd.transpose(0, 1).softmax(1), 'softmax over a strided inner axis'],
        [x.mean(), xd.mean(), 'mean of all'],
      ];
      for (const [c, d, what] of pairs) {
        const e = nmse(host(d), host(c));
        assert.ok(e < 1e-10, `${what}: NMSE ${e.toExponential(2)}`);
      }
    });
  });

  const convCases: [string, number[], number[], number, number, number, number][] = [
    // name, x shape, w shape, padding, groups, stride, dilation
    ['3x3 dense 1x16x32x32', [1, 16, 32, 32], [16, 16, 3, 3], 1, 1, 1, 1],
    ['7x7 depthwise 1x16x32x32', [1, 16, 32, 32], [16, 1, 7, 7], 3, 16, 1, 1],
    // Depthwise with stride and dilation over several images (split weight-gradient reduction).
    ['5x5 depthwise stride 2 dilation 2 4x3x37x35', [4, 3, 37, 35], [3, 1, 5, 5], 4, 3, 2, 2],
    ['3x3 grouped stride 2 2x8x19x17', [2, 8, 19, 17], [12, 2, 3, 3], 1, 4, 2, 1],
  ];
  for (const [name, xs, ws, pad, groups, stride, dilation] of convCases) {
    it(`conv2d ${name}: forward and gradients match the CPU`, () => {
      sc.tidy(() => {
        const g = new sc.Generator(11);
        const x = sc.randn(xs, { generator: g });
        const w = sc.randn(ws, { generator: g }).mul(0.2);
        const b = sc.randn([ws[0]], { generator: g });
        const run = (device: sc.Device) => {
          const xd = x.to(device).requiresGrad_();
          const wd = w.to(device).requiresGrad_();
          const bd = b.to(device).requiresGrad_();
          const y = sc.F.conv2d(xd, wd, bd, { stride, padding: pad, dilation, groups });
          const gw = sc.tensor(Float32Array.from({ length: y.size }, (_, i) => Math.sin(i * 0.37)), y.shape).to(device);
          y.mul(gw).sum().backward();
          return { y: host(y), gx: host(xd.grad!), gw: host(wd.grad!), gb: host(bd.grad!) };
        };
        const cpu = run('cpu');
        const dev = run('cuda');
        for (const k of ['y', 'gx', 'gw', 'gb'] as const) {
          const e = nmse(dev[k], cpu[k]);
          assert.ok(e < 1e-10, `${name}: ${k} NMSE ${e.toExponential(2)}`);
        }
      });
    });
  }
});
