// gpu-check.sh's last step: merges the step records (steps.jsonl, one JSON line per step) and the
// files the steps wrote (tests.json, fatbin.json, compare.json, timing.json, torch.json) into
// $OUT/gpu-check.json and a readable $OUT/gpu-check.md (the timing table puts scalpel beside
// PyTorch). Both files are written atomically (temp file + rename).
//   node report.js STEPS_JSONL OUT_DIR DRY(0|1) START_MS
'use strict';
const fs = require('fs');
const path = require('path');

const [stepsFile, outDir, dry, startMs] = process.argv.slice(2);
const readJson = (f) => { try { return JSON.parse(fs.readFileSync(f, 'utf8')); } catch { return null; } };
const steps = fs.readFileSync(stepsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
for (const s of steps) {
  s.detail = s.detailFile ? readJson(s.detailFile) : null;
  if (s.detailFile) s.detailFile = path.basename(s.detailFile);
}
const find = (prefix) => steps.find((s) => s.name.startsWith(prefix));
const timing = find('models: timing (scalpel')?.detail;
const torch = find('models: timing (PyTorch')?.detail;
const timingRows = (timing?.timing ?? []).map((r) => {
  const t = (torch?.rows ?? []).find((x) => x.model === r.model) ?? null;
  return {
    model: r.model, size: r.size, params: r.params,
    scalpel_inference_ms: r.inference?.median_ms ?? null,
    scalpel_inference_optimized_ms: r.inference_optimized?.median_ms ?? null,
    scalpel_train_step_ms: r.train_step?.median_ms ?? null, train_batch: r.train_step?.batch ?? null,
    torch_inference_ms: t?.inference?.median_ms ?? null, torch_inference_events_ms: t?.inference?.events_median_ms ?? null,
    torch_train_step_ms: t?.train_step?.median_ms ?? null, torch_train_step_events_ms: t?.train_step?.events_median_ms ?? null,
  };
});
const finished = Date.now();
const result = {
  mode: dry === '1' ? 'dry-run (emulated CUDA, small sizes)' : 'device',
  device: find('models: training')?.detail?.device ?? timing?.device ?? null,
  emulated: find('models: training')?.detail?.emulated ?? timing?.emulated ?? null,
  started: new Date(Number(startMs)).toISOString(), finished: new Date(finished).toISOString(),
  durationMs: finished - Number(startMs),
  summary: Object.fromEntries(['ok', 'failed', 'skipped'].map((k) => [k, steps.filter((s) => s.status === k).length])),
  steps, timingRows,
};
const atomic = (file, text) => { fs.writeFileSync(`${file}.tmp`, text); fs.renameSync(`${file}.tmp`, file); };
atomic(path.join(outDir, 'gpu-check.json'), JSON.stringify(result, null, 1) + '\n');

const f = (x) => (x === null || x === undefined ? '-' : String(x));
const md = [`# gpu-check: ${result.mode}`, '',
  `Device: ${f(result.device)}${result.emulated ? ' (emulated)' : ''}; ${result.started} to ${result.finished} (${(result.durationMs / 1000).toFixed(1)} s).`,
  `Steps: ${result.summary.ok} ok, ${result.summary.failed} failed, ${result.summary.skipped} skipped.`, '',
  '| step | status | duration | reason / summary |', '| --- | --- | --- | --- |'];
for (const s of steps) {
  let sum = s.reason || '';
  const d = s.detail;
  if (d && s.name.startsWith('harness')) sum += `${sum ? '; ' : ''}${d.passed} passed, ${d.failed} failed, ${d.pending} pending${d.complete ? '' : ' (incomplete)'}`;
  if (d && s.name.startsWith('fat-binary')) sum += `${sum ? '; ' : ''}ELF sm_${d.elfArchs.join(', sm_')}; PTX sm_${d.ptxArchs.join(', sm_')}${d.problems.length ? '; ' + d.problems.join('; ') : ''}`;
  if (d && d.compare) sum += `${sum ? '; ' : ''}${d.compare.map((r) => `${r.model}: ${r.ok ? 'agrees' : r.skipped ? 'skipped (' + r.skipped + ')' : 'DIFFERS'}`).join(', ')}`;
  md.push(`| ${s.name} | ${s.status} | ${(s.durationMs / 1000).toFixed(1)} s | ${sum.replace(/\|/g, '/').replace(/\n/g, ' ')} |`);
}
const failedTests = (find('harness')?.detail?.tests ?? []).filter((t) => t.state === 'failed');
if (failedTests.length) {
  md.push('', '## Failed tests', '');
  for (const t of failedTests.slice(0, 50)) md.push(`- ${t.title}: ${(t.error || '').split('\n')[0].slice(0, 300)}`);
}
for (const r of find('models: training')?.detail?.compare ?? []) {
  if (!r.ok) md.push('', `## ${r.model}: training step cuda vs cpu differs`, '', ...(r.error ? [r.error.split('\n')[0]] : []), ...r.checks.map((c) => `- ${c}`));
}
if (timingRows.length) {
  md.push('', '## Timing, fp32, median ms (scalpel: synchronised wall clock; PyTorch: the same, and CUDA events)', '',
    '| model | size | scalpel inference | scalpel optimized | PyTorch inference (events) | train batch | scalpel train step | PyTorch train step (events) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of timingRows) {
    md.push(`| ${r.model} | ${r.size} | ${f(r.scalpel_inference_ms)} | ${f(r.scalpel_inference_optimized_ms)} | ${f(r.torch_inference_ms)} (${f(r.torch_inference_events_ms)}) | ${f(r.train_batch)} | ${f(r.scalpel_train_step_ms)} | ${f(r.torch_train_step_ms)} (${f(r.torch_train_step_events_ms)}) |`);
  }
}
atomic(path.join(outDir, 'gpu-check.md'), md.join('\n') + '\n');
