// The outer-product float32 weight gradient against the float64 reference path (cases and checks
// in test/scripts/conv-kernel-cases.ts), on this CPU's vector width and, in child processes, on
// the narrower ones this CPU also runs (SCALPEL_ISA=avx2, generic).
import { strict as assert } from 'node:assert';
import * as sc from '../src';
import { native } from '../src/native';
import { checkConvCase, ConvResult, outerCases } from './scripts/conv-kernel-cases';
import { runCasesInChild } from './scripts/conv-kernel-child';

// Float sums over up to 16 K pixels per weight, measured 1e-7 - 6e-7 of the largest value.
const TOL = 5e-6;

function assertOuter(r: ConvResult): void {
  assert.equal(r.algorithms.backwardWeight, 'outer', `${r.label}: weight gradient took ${r.algorithms.backwardWeight}`);
  assert.ok(r.weightGradient < TOL, `${r.label}: weight-gradient max error ${r.weightGradient}`);
  assert.ok(r.biasGradient < TOL, `${r.label}: bias-gradient max error ${r.biasGradient}`);
}

describe('conv2d outer-product weight gradient vs float64 reference path', () => {
  for (const c of outerCases) it(c.label, () => assertOuter(checkConvCase(c)));

  it('the AVX2 variants (8-float vectors) in a child process with SCALPEL_ISA=avx2', function () {
    if (native.gemmIsa() !== 'avx512') this.skip(); // this process already ran them (or has no AVX2)
    this.timeout(120000);
    runCasesInChild('outer', 'avx2', outerCases.length).forEach(assertOuter);
  });

  it('the portable variant (4-float vectors) in a child process with SCALPEL_ISA=generic', function () {
    if (native.gemmIsa() === 'generic') this.skip(); // this process already ran it
    this.timeout(120000);
    runCasesInChild('outer', 'generic', outerCases.length).forEach(assertOuter);
  });

  it('takes the weight gradients where one side has at most 64 channels per group, not stride 2 or depthwise', () => {
    const wgrad = (x: number[], w: number[], o = {}) => sc.convAlgorithms(x, w, o).backwardWeight;
    assert.equal(wgrad([8, 16, 128, 128], [32, 16, 1, 1]), 'outer');
    assert.equal(wgrad([8, 128, 64, 64], [64, 128, 1, 1]), 'outer');
    assert.equal(wgrad([8, 128, 32, 32], [256, 128, 1, 1]), 'gemm'); // both sides 128+: the packed GEMM
    assert.equal(wgrad([8, 64, 64, 64], [64, 64, 3, 3], { padding: 1 }), 'outer');
    assert.equal(wgrad([8, 64, 32, 32], [128, 64, 3, 3], { padding: 1 }), 'winograd'); // 64 against 128+
    assert.equal(wgrad([8, 128, 32, 32], [64, 128, 3, 3], { padding: 1 }), 'winograd');
    assert.equal(wgrad([8, 32, 32, 32], [64, 32, 3, 3], { padding: 1 }), 'outer');
    assert.equal(wgrad([8, 64, 64, 64], [64, 64, 3, 3], { padding: 1, stride: 2 }), 'gemm');
    assert.equal(wgrad([8, 64, 64, 64], [64, 1, 3, 3], { padding: 1, groups: 64 }), 'depthwise');
  });
});
