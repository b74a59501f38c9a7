// MedNeXt UpKern: a large-kernel network initialised from a small-kernel one (kernels resampled
// bilinearly with align_corners false, everything else copied), by API and by `train --upkern`.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as sc from '../src';
import { fit, ensureSyntheticData } from '../src/train';

/** PyTorch's bilinear resize (align_corners false) of a k x k plane to n x n, in float64. */
function resize(plane: number[], k: number, n: number): number[] {
  const coord = (i: number) => {
    const s = Math.max(0, ((i + 0.5) * k) / n - 0.5);
    const i0 = Math.min(Math.floor(s), k - 1);
    return [i0, Math.min(i0 + 1, k - 1), s - i0];
  };
  const out: number[] = [];
  for (let y = 0; y < n; y++) {
    const [y0, y1, wy] = coord(y);
    for (let x = 0; x < n; x++) {
      const [x0, x1, wx] = coord(x);
      const at = (r: number, c: number) => plane[r * k + c];
      out.push((1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) + wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1)));
    }
  }
  return out;
}

describe('MedNeXt UpKern', function () {
  this.timeout(120000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-upkern-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('copies every entry whose shape matches and resamples the depthwise kernels bilinearly', () => {
    sc.manualSeed(3);
    const small = sc.models.create('mednext-s', { kernelSize: 3 });
    const large = sc.models.create('mednext-s', { kernelSize: 5 });
    const r = sc.models.upkern(large, small);
    const s = small.stateDict(), l = large.stateDict();
    assert.equal(r.copied.length + r.resampled.length, Object.keys(l).length);
    assert.ok(r.resampled.includes('enc_block_0.0.conv1.weight') && r.resampled.includes('up_3.conv1.weight'));
    for (const k of r.copied) assert.deepEqual(Array.from(l[k].toArray() as Float32Array), Array.from(s[k].toArray() as Float32Array), k);
    for (const k of ['enc_block_0.0.conv1.weight', 'up_0.conv1.weight']) {
      const src = s[k].toArray() as Float32Array, dst = l[k].toArray() as Float32Array;
      for (const plane of [0, 7]) {
        const want = resize(Array.from(src.subarray(plane * 9, plane * 9 + 9)), 3, 5);
        const got = Array.from(dst.subarray(plane * 25, plane * 25 + 25));
        got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-6, `${k} plane ${plane} [${i}]: ${g} vs ${want[i]}`));
      }
    }
    small.dispose();
    large.dispose();
  });

  it('refuses networks of another layout, naming the entry', () => {
    const s = sc.models.create('mednext-s'), b = sc.models.create('mednext-b', { kernelSize: 5 });
    assert.throws(() => sc.models.upkern(b, s), /upkern: 'down_0.conv2.weight' is \[64, 32, 1, 1\] in the source and \[96, 32, 1, 1\] in the target; only convolution kernel sizes may differ/);
    assert.throws(() => sc.models.upkern(b, sc.models.create('cmunext-s')), /upkern: the networks differ in layout \(missing in the source: dummy_tensor/);
    s.dispose();
    b.dispose();
  });

  it('train --upkern starts a kernel-5 run from a kernel-3 checkpoint', async () => {
    const data = await ensureSyntheticData(path.join(tmp, 'data'), 8, 32);
    const base = { model: 'mednext-s', data, size: 32, batch: 4, epochs: 1, workers: 0, overlays: 0, verbose: true, progress: false } as const;
    await fit({ ...base, out: path.join(tmp, 'k3'), verbose: false });
    const lines: string[] = [];
    await fit({ ...base, modelOptions: { kernelSize: 5 }, upkern: path.join(tmp, 'k3', 'best.safetensors'), out: path.join(tmp, 'k5'), log: (l) => lines.push(l) });
    // 18 blocks + 4 down + 4 up depthwise kernels in MedNeXt-S.
    assert.ok(lines.some((l) => /upkern: initialised mednext-s from mednext-s \(epoch 1\): 26 kernels resampled/.test(l)), lines.join('\n'));
    await assert.rejects(fit({ ...base, model: 'cmunext-s', upkern: path.join(tmp, 'k3', 'best.safetensors'), out: path.join(tmp, 'bad') }), /best\.safetensors: upkern: the networks differ in layout/);
  });
});
