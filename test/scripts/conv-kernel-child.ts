// Runs one list of test/scripts/conv-kernel-cases.ts in a child process under another SCALPEL_ISA
// (the kernels pick their vector width once per process) and returns its results.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'child_process';
import * as path from 'path';
import type { ConvResult } from './conv-kernel-cases';

export function runCasesInChild(list: string, isa: string, expected: number): ConvResult[] {
  const root = path.resolve(__dirname, '..', '..');
  const r = spawnSync('npx', ['tsx', 'test/scripts/conv-kernel-cases.ts', list], { cwd: root, encoding: 'utf8', env: { ...process.env, SCALPEL_ISA: isa } });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { isa: string; results: ConvResult[] };
  assert.equal(out.isa, isa);
  assert.equal(out.results.length, expected);
  return out.results;
}
