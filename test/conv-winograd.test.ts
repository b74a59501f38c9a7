// The Winograd F(4x4, 3x3) float32 convolution against the float64 reference path (cases and
// checks in test/scripts/winograd-cases.ts), on this CPU's vector width and, in a child
// process, on AVX2's (SCALPEL_ISA=avx2) where this CPU has AVX-512.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as sc from '../src';
import { native } from '../src/native';
import { checkWinogradCase, winogradCases, WinogradResult } from './scripts/winograd-cases';

// F(4x4, 3x3)'s transforms (constants up to 8 and 1/24) cost about four bits against the direct
// sum: measured 2e-6 - 9e-6 of the largest output here, the direct kernel 2e-7 - 5e-7.
const TOL = 3e-5;

function assertWinograd(r: WinogradResult): void {
  assert.equal(r.algorithms.forward, 'winograd', `${r.label}: forward took ${r.algorithms.forward}`);
  assert.equal(r.algorithms.fused, 'winograd', `${r.label}: fused forward took ${r.algorithms.fused}`);
  assert.equal(r.algorithms.backwardInput, 'winograd', `${r.label}: input gradient took ${r.algorithms.backwardInput}`);
  assert.equal(r.algorithms.backwardWeight, r.expectedWeightGradient, `${r.label}: weight gradient took ${r.algorithms.backwardWeight}`);
  assert.ok(r.forward < TOL, `${r.label}: forward max error ${r.forward}`);
  assert.ok(r.inputGradient < TOL, `${r.label}: input-gradient max error ${r.inputGradient}`);
  assert.ok(r.weightGradient < TOL, `${r.label}: weight-gradient max error ${r.weightGradient}`);
  assert.ok(r.fused < TOL, `${r.label}: fused forward max error ${r.fused}`);
}

const hasWinograd = native.gemmIsa() !== 'generic';

describe('conv2d Winograd F(4x4, 3x3) kernel vs float64 reference path', () => {
  before(function () {
    if (!hasWinograd) this.skip(); // (no AVX2: convAlgorithms never says winograd; see the last test)
  });
  for (const c of winogradCases) it(c.label, () => assertWinograd(checkWinogradCase(c)));

  it('the AVX2 variant (8-float vectors) in a child process with SCALPEL_ISA=avx2', function () {
    if (native.gemmIsa() !== 'avx512') this.skip(); // this process already ran it
    this.timeout(120000);
    const root = path.resolve(__dirname, '..');
    const r = spawnSync('npx', ['tsx', 'test/scripts/winograd-cases.ts'], { cwd: root, encoding: 'utf8', env: { ...process.env, SCALPEL_ISA: 'avx2' } });
    assert.equal(r.status, 0, r.stderr);
    const line = r.stdout.trim().split('\n').pop()!;
    const out = JSON.parse(line) as { isa: string; results: WinogradResult[] };
    assert.equal(out.isa, 'avx2');
    assert.equal(out.results.length, winogradCases.length);
    out.results.forEach(assertWinograd);
  });
});

describe('convolution kernel choice (sc.convAlgorithms)', () => {
  it('takes Winograd only for 3x3, stride 1, undilated convolutions with enough channels and tiles', function () {
    if (!hasWinograd) this.skip();
    const algo = (x: number[], w: number[], o = {}) => sc.convAlgorithms(x, w, { padding: 1, ...o }).forward;
    assert.equal(algo([1, 64, 64, 64], [64, 64, 3, 3]), 'winograd');
    assert.equal(algo([1, 64, 64, 64], [64, 64, 3, 3], { stride: 2 }), 'gemm');
    assert.equal(algo([1, 64, 64, 64], [64, 64, 3, 3], { dilation: 2, padding: 2 }), 'direct');
    assert.equal(algo([1, 4, 64, 64], [64, 4, 3, 3]), 'direct'); // few input channels
    assert.equal(algo([8, 16, 128, 128], [8, 16, 3, 3]), 'winograd'); // 8 outputs over 8192 tiles
    assert.equal(algo([1, 8, 32, 32], [16, 8, 3, 3]), 'direct'); // 8 inputs over 64 tiles
    assert.equal(algo([1, 512, 16, 16], [512, 512, 3, 3]), 'direct'); // 16 tiles: the weights' transform would not pay
    assert.equal(algo([8, 512, 16, 16], [512, 512, 3, 3]), 'winograd');
    assert.equal(algo([1, 64, 64, 64], [64, 1, 3, 3], { groups: 64 }), 'depthwise');
    assert.equal(algo([1, 64, 64, 64], [64, 64, 5, 5], { padding: 2 }), 'direct');
    // The weight gradient: Winograd where both sides have more than 64 channels per group, 64
    // against 128 or more, or more than 128 outputs (the outer-product kernel below that).
    const wgrad = (x: number[], w: number[], groups = 1) => sc.convAlgorithms(x, w, { padding: 1, groups }).backwardWeight;
    assert.equal(wgrad([8, 32, 64, 64], [64, 32, 3, 3]), 'outer');
    assert.equal(wgrad([8, 16, 64, 64], [80, 16, 3, 3]), 'outer');
    assert.equal(wgrad([8, 128, 16, 16], [128, 128, 3, 3]), 'winograd');
    assert.equal(wgrad([8, 80, 32, 32], [80, 80, 3, 3]), 'winograd');
    assert.equal(wgrad([8, 64, 32, 32], [256, 64, 3, 3]), 'winograd'); // many more outputs than inputs
    assert.equal(wgrad([1, 80, 8, 8], [80, 80, 3, 3]), 'gemm'); // 4 tiles
  });

  it('sc.setWinograd(false) puts the same shapes on the direct kernel, at its precision', function () {
    if (!hasWinograd) this.skip();
    assert.equal(sc.getWinograd(), true);
    sc.setWinograd(false);
    try {
      const r = checkWinogradCase(winogradCases[0]);
      assert.equal(r.algorithms.forward, 'direct');
      assert.equal(r.algorithms.backwardInput, 'direct');
      assert.equal(r.algorithms.backwardWeight, 'outer');
      assert.ok(r.forward < 2e-6 && r.inputGradient < 2e-6 && r.weightGradient < 2e-6 && r.fused < 2e-6, JSON.stringify(r));
    } finally {
      sc.setWinograd(true);
    }
    assert.equal(sc.convAlgorithms([1, 64, 64, 64], [64, 64, 3, 3], { padding: 1 }).forward, 'winograd');
    assert.throws(() => sc.setWinograd(0 as unknown as boolean), /setWinograd: expected true or false/);
  });

  it('names the problem in a bad shape', () => {
    assert.throws(() => sc.convAlgorithms([1, 64, 32, 32], [64, 32, 3, 3]), /weight in-channels != C \/ groups/);
    assert.throws(() => sc.convAlgorithms([1, 64, 32], [64, 64, 3, 3]), /expected 4-D input and weight shapes/);
    assert.throws(() => sc.convAlgorithms([1, 64, 32, 32], [64, 64, 3, 3], { stride: 1.5 }), /stride must be an integer/);
  });
});
