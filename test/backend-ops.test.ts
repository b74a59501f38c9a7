// Every op case on every backend against one reference (in the spirit of ggml's
// test-backend-ops): forward against the plain reference, gradients by finite differences in
// float64 on the CPU, and on other backends forward and backward against the CPU backend.
import { strict as assert } from 'node:assert';
import * as sc from '../src';
import { allCases } from './harness/cases';
import { hostValues, makeTensor, nmse, toRef } from './harness/inputs';
import type { OpCase } from './harness/case';

const devices = sc.availableDevices();

function runCase(c: OpCase, device: sc.Device, dtype: 'float32' | 'float64', withGrad: boolean) {
  return sc.tidy(() => {
    const vals = c.inputs.map((s, i) => hostValues(s, 1000 + i * 17));
    const xs = c.inputs.map((s, i) => makeTensor(s, vals[i], dtype, device, withGrad && s.grad !== false));
    const out = c.run(xs);
    const result = { out: Float64Array.from(out.toArray() as Float32Array), shape: out.shape.slice(), grads: [] as (Float64Array | null)[], vals };
    if (withGrad) {
      // Fixed random weights make the scalar objective sensitive to every output element.
      const g = new sc.Generator(99);
      const w = sc.tensor(Float64Array.from({ length: out.size }, () => g.next() * 2 - 1), out.shape, { dtype, device });
      out.mul(w).sum().backward();
      result.grads = xs.map((x) => (x.grad ? Float64Array.from(x.grad.toArray() as Float32Array) : null));
    }
    return result;
  });
}

describe('op table coverage', () => {
  it('every op in the table has at least one harness case', () => {
    const covered = new Set(allCases.flatMap((c) => c.ops));
    // Ops that are infrastructure rather than maths: exercised by every case.
    const infra = new Set(['fill', 'to_device']);
    const missing = [...sc.opTable().keys()].filter((n) => !covered.has(n) && !infra.has(n));
    assert.deepEqual(missing, [], `ops without a test case: ${missing.join(', ')}`);
  });
  it('case names are unique', () => {
    const names = allCases.map((c) => c.name);
    assert.equal(new Set(names).size, names.length);
  });
});

for (const device of devices) {
  describe(`ops on ${device}${device === 'cuda' && sc.cuda.isEmulated() ? ' (emulated)' : ''}`, function () {
    this.timeout(120000);
    for (const c of allCases) {
      it(c.name, function () {
        if (c.skipOn?.includes(device)) this.skip();
        const r = runCase(c, device, 'float32', false);
        if (c.ref) {
          const want = c.ref(c.inputs.map((s, i) => toRef(r.vals[i], s.shape, 'float32')));
          assert.deepEqual(r.shape, want.shape, `${c.name}: output shape`);
          const e = nmse(r.out, want.data);
          assert.ok(e <= (c.tol ?? 1e-10), `${c.name} on ${device}: NMSE ${e.toExponential(2)} against the reference`);
        }
        if (device !== 'cpu') {
          const cpu = runCase(c, 'cpu', 'float32', c.grad !== false);
          const dev = runCase(c, device, 'float32', c.grad !== false);
          const e = nmse(dev.out, cpu.out);
          assert.ok(e <= Math.max(c.tol ?? 1e-10, 1e-9), `${c.name}: ${device} vs cpu forward NMSE ${e.toExponential(2)}`);
          cpu.grads.forEach((g, i) => {
            if (!g) return;
            const eg = nmse(dev.grads[i]!, g);
            // Gradients that are zero in exact arithmetic (e.g. a key bias under softmax) are
            // float32 rounding noise on both backends: compare those absolutely.
            const scale = Math.max(1, ...Array.from(g, Math.abs));
            const maxDiff = Math.max(0, ...Array.from(g, (v, j) => Math.abs(v - dev.grads[i]![j])));
            assert.ok(eg <= 1e-8 || maxDiff <= 1e-5 * scale, `${c.name}: ${device} vs cpu gradient of input ${i}: NMSE ${eg.toExponential(2)}, max abs diff ${maxDiff.toExponential(2)}`);
          });
        }
      });
      if (device === 'cpu' && c.grad !== false) {
        // The float64 gradients pass the gradcheck below; the float32 ones take the CPU's
        // vectorised backward kernels (separate code from the double paths) and are checked
        // against them here.
        it(`${c.name} (float32 gradients against float64)`, () => {
          const f32 = runCase(c, 'cpu', 'float32', true);
          const f64 = runCase(c, 'cpu', 'float64', true);
          f64.grads.forEach((g, i) => {
            if (!g) return;
            const e = nmse(f32.grads[i]!, g);
            const scale = Math.max(1, ...Array.from(g, Math.abs));
            const maxDiff = Math.max(0, ...Array.from(g, (v, j) => Math.abs(v - f32.grads[i]![j])));
            assert.ok(e <= 1e-8 || maxDiff <= 1e-4 * scale, `${c.name}: float32 gradient of input ${i} against float64: NMSE ${e.toExponential(2)}, max abs diff ${maxDiff.toExponential(2)}`);
          });
        });
        it(`${c.name} (gradcheck, float64)`, () => {
          sc.tidy(() => {
            const xs = c.inputs.map((s, i) => makeTensor({ ...s, noncontig: false }, hostValues(s, 1000 + i * 17), 'float64', 'cpu', s.grad !== false));
            const res = sc.gradcheck((...ys) => c.run(ys), xs, { maxElements: 60, ...c.gradTol });
            assert.ok(res.ok, `${c.name}: gradient mismatch (max abs error ${res.maxAbsError.toExponential(2)}; ${res.worst})`);
          });
        });
      }
    }
  });
}
