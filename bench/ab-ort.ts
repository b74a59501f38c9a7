// npx tsx bench/ab-ort.ts [--models cmunext-s,unet] [--runs 10] [--threads 2] [--gap-ms 20] [--by-op [--top 12]]
// Inference at batch 1, scalpel (sc.inference.optimize) against ONNX Runtime for Node on the
// ONNX files that `npm run bench:models` caches (.bench-cache/onnx, exported by PyTorch), with
// the two engines' runs interleaved in one process (A, B, A, B, ...) so that a change in the
// machine's load hits both alike: on a shared 2-core machine this gives steadier ratios than
// timing each engine in its own process one after the other (bench:models does that, for RSS).
// Each timed run follows an untimed run of the same engine: the other engine's run in between
// evicts caches and leaves its pool spinning, and a deployed model runs alone, back to back.
// --by-op: then where each engine's time goes, per run: ORT's own profiler (per node, summed by
// op type) beside scalpel's per-kernel times, the largest nodes / kernels with their output
// shapes, so a gap can be traced to the layers that make it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sc from '../src';
import { native } from '../src/native';
import { arg, loadavg, median } from './common';

interface OrtSession { run(feeds: unknown): Promise<unknown>; endProfiling(): void }

/** Per-run milliseconds by key, largest first. */
function table(acc: Map<string, number>, runs: number, top: number): string[] {
  return [...acc].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => `${(v / runs).toFixed(2).padStart(8)} ms  ${k}`);
}

async function byOp(ort: any, file: string, feeds: unknown, runSc: () => void, runs: number, threads: number, top: number): Promise<void> {
  const prefix = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'scalpel-ort-')), 'profile');
  const session: OrtSession = await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential', enableProfiling: true, profileFilePrefix: prefix });
  for (let i = 0; i < runs; i++) await session.run(feeds);
  session.endProfiling();
  const dir = path.dirname(prefix);
  const events = fs.readdirSync(dir).flatMap((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { cat: string; name: string; dur: number; args: { op_name?: string; output_type_shape?: unknown } }[]);
  fs.rmSync(dir, { recursive: true, force: true });
  const ortByType = new Map<string, number>(), ortByNode = new Map<string, number>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const type = e.args.op_name ?? '?';
    ortByType.set(type, (ortByType.get(type) ?? 0) + e.dur / 1000);
    const key = `${type} ${e.name.replace(/_kernel_time$/, '')} -> ${JSON.stringify(e.args.output_type_shape ?? '')}`;
    ortByNode.set(key, (ortByNode.get(key) ?? 0) + e.dur / 1000);
  }
  const scByKernel = new Map<string, number>(), scByCall = new Map<string, number>();
  // Per-kernel times need each kernel to run when it is called.
  const depth = sc.getKernelQueue();
  sc.setKernelQueue(0);
  const run = native.run;
  native.run = (kernel, be, ins, outs, attrs) => {
    const t0 = performance.now();
    run.call(native, kernel, be, ins, outs, attrs);
    const ms = performance.now() - t0;
    scByKernel.set(kernel, (scByKernel.get(kernel) ?? 0) + ms);
    const w = kernel.startsWith('conv2d') ? ` w${JSON.stringify(ins[1]?.[3])}` : '';
    const key = `${kernel} ${JSON.stringify(ins[0]?.[3])} -> ${JSON.stringify(outs[0]?.[3])}${w}`;
    scByCall.set(key, (scByCall.get(key) ?? 0) + ms);
  };
  try {
    for (let i = 0; i < runs; i++) runSc();
  } finally {
    native.run = run;
    sc.setKernelQueue(depth);
  }
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0) / runs;
  console.log(`\nORT by op type (${sum(ortByType).toFixed(1)} ms of node time per run):`);
  console.log(table(ortByType, runs, top).join('\n'));
  console.log(`ORT's largest nodes:\n${table(ortByNode, runs, top).join('\n')}`);
  console.log(`scalpel by kernel (${sum(scByKernel).toFixed(1)} ms of kernel time per run):`);
  console.log(table(scByKernel, runs, top).join('\n'));
  console.log(`scalpel's largest kernel calls:\n${table(scByCall, runs, top).join('\n')}\n`);
}

async function main() {
  const threads = Number(arg('threads', '2'));
  const runs = Number(arg('runs', '10'));
  // Idle gap before each timed run: both engines' pools spin for a while after a run, and a
  // run must not start while the other engine's threads still hold the cores.
  const gapMs = Number(arg('gap-ms', '20'));
  const gap = () => new Promise((r) => setTimeout(r, gapMs));
  // The time of the second of two back-to-back runs, after the idle gap.
  const timeAfterWarmUp = async (run: () => unknown) => {
    await gap();
    await run();
    const t0 = performance.now();
    await run();
    return performance.now() - t0;
  };
  const models = (arg('models', 'cmunext-s,cmunext,cmunext-l,nexnet,unet') as string).split(',');
  sc.setNumThreads(threads);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const ort = require('onnxruntime-node');
  console.log(`interleaved scalpel / ORT inference, batch 1, ${threads} threads, ${runs} runs each, loadavg ${loadavg().join(' ')}`);
  console.log('| model | size | scalpel ms | ORT ms | scalpel/ORT |\n| --- | --- | --- | --- | --- |');
  for (const name of models) {
    const s = name.startsWith('nexnet') ? 224 : 256;
    const file = path.join(__dirname, '..', '.bench-cache', 'onnx', `${name}-b1-s${s}.onnx`);
    if (!fs.existsSync(file)) {
      console.log(`| ${name} | ${s} | - | no ${path.relative(process.cwd(), file)} (run npm run bench:models once) | - |`);
      continue;
    }
    const session = await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' });
    const data = new Float32Array(3 * s * s).map((_, i) => Math.sin(0.37 * i) * 0.5 + 0.5);
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, [1, 3, s, s]) };
    const model = sc.models.create(name);
    model.eval();
    const x = sc.tensor(data, [1, 3, s, s]);
    sc.inference.optimize(model, [1, 3, s, s]);
    const runSc = () => {
      sc.noGrad(() => sc.tidy(() => { model.forward(x); }));
      sc.synchronize();
    };
    const runOrt = async () => { await session.run(feeds); };
    for (let i = 0; i < 2; i++) { runSc(); await runOrt(); }
    const a: number[] = [], b: number[] = [];
    for (let i = 0; i < runs; i++) {
      a.push(await timeAfterWarmUp(runSc));
      b.push(await timeAfterWarmUp(runOrt));
    }
    const ma = median(a), mb = median(b);
    console.log(`| ${name} | ${s} | ${ma.toFixed(1)} | ${mb.toFixed(1)} | ${(ma / mb).toFixed(2)} |`);
    if (arg('by-op') !== undefined) await byOp(ort, file, feeds, runSc, runs, threads, Number(arg('top', '12')));
    sc.inference.release(model);
    x.dispose();
  }
  console.log(`loadavg at end ${loadavg().join(' ')}`);
}
main().catch((e) => { console.error(e); process.exit(1); });
