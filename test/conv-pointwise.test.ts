// The 1x1 float32 forward and input gradient (native/kernels/conv_pointwise.cc) against the
// float64 reference path (cases and checks in test/scripts/conv-kernel-cases.ts), on this CPU's
// vector width and, in child processes, on the narrower ones this CPU also runs.
import { strict as assert } from 'node:assert';
import * as sc from '../src';
import { native } from '../src/native';
import { checkConvCase, ConvResult, pointwiseCases } from './scripts/conv-kernel-cases';
import { runCasesInChild } from './scripts/conv-kernel-child';

// Float sums over at most 130 channels: measured 1e-7 - 3e-7 of the largest value.
const TOL = 2e-6;

function assertPointwise(r: ConvResult): void {
  assert.equal(r.algorithms.forward, 'pointwise', `${r.label}: forward took ${r.algorithms.forward}`);
  assert.equal(r.algorithms.backwardInput, 'pointwise', `${r.label}: input gradient took ${r.algorithms.backwardInput}`);
  assert.ok(r.forward < TOL, `${r.label}: forward max error ${r.forward}`);
  assert.ok(r.inputGradient < TOL, `${r.label}: input-gradient max error ${r.inputGradient}`);
  assert.ok(r.weightGradient < 5e-6 && r.biasGradient < 5e-6, `${r.label}: parameter-gradient max errors ${r.weightGradient}, ${r.biasGradient}`);
}

describe('conv2d 1x1 pointwise kernel vs float64 reference path', () => {
  for (const c of pointwiseCases) it(c.label, () => assertPointwise(checkConvCase(c)));

  it('the AVX2 variant (8-float vectors) in a child process with SCALPEL_ISA=avx2', function () {
    if (native.gemmIsa() !== 'avx512') this.skip(); // this process already ran it (or has no AVX2)
    this.timeout(120000);
    runCasesInChild('pointwise', 'avx2', pointwiseCases.length).forEach(assertPointwise);
  });

  it('the portable variant (4-float vectors) in a child process with SCALPEL_ISA=generic', function () {
    if (native.gemmIsa() === 'generic') this.skip(); // this process already ran it
    this.timeout(120000);
    runCasesInChild('pointwise', 'generic', pointwiseCases.length).forEach(assertPointwise);
  });

  it('takes 1x1s from 1024 pixels or with at most 64 channels on one side; fused forwards keep the direct kernel', () => {
    const algos = (x: number[], w: number[], o = {}) => sc.convAlgorithms(x, w, o);
    assert.equal(algos([8, 32, 128, 128], [64, 32, 1, 1]).forward, 'pointwise');
    assert.equal(algos([8, 32, 128, 128], [64, 32, 1, 1]).backwardInput, 'pointwise');
    assert.equal(algos([8, 32, 128, 128], [64, 32, 1, 1]).fused, 'direct');
    assert.equal(algos([8, 512, 16, 16], [256, 512, 1, 1]).forward, 'gemm'); // 256 pixels, both sides 256+
    assert.equal(algos([8, 512, 32, 32], [256, 512, 1, 1]).forward, 'pointwise');
    assert.equal(algos([8, 32, 64, 64], [64, 32, 1, 1], { stride: 2 }).forward, 'gemm');
    assert.notEqual(algos([8, 32, 64, 64], [64, 32, 1, 1], { padding: 1 }).forward, 'pointwise');
  });
});
