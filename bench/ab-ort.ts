// npx tsx bench/ab-ort.ts [--models cmunext-s,unet] [--runs 10] [--threads 2] [--gap-ms 20]
// Inference at batch 1, scalpel (sc.inference.optimize) against ONNX Runtime for Node on the
// ONNX files that `npm run bench:models` caches (.bench-cache/onnx, exported by PyTorch), with
// the two engines' runs interleaved in one process (A, B, A, B, ...) so that a change in the
// machine's load hits both alike: on a shared 2-core machine this gives steadier ratios than
// timing each engine in its own process one after the other (bench:models does that, for RSS).
// Each timed run follows an untimed run of the same engine: the other engine's run in between
// evicts caches and leaves its pool spinning, and a deployed model runs alone, back to back.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as sc from '../src';
import { arg, loadavg, median } from './common';

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
    const runSc = () => sc.noGrad(() => sc.tidy(() => { model.forward(x); }));
    const runOrt = async () => { await session.run(feeds); };
    for (let i = 0; i < 2; i++) { runSc(); await runOrt(); }
    const a: number[] = [], b: number[] = [];
    for (let i = 0; i < runs; i++) {
      a.push(await timeAfterWarmUp(runSc));
      b.push(await timeAfterWarmUp(runOrt));
    }
    const ma = median(a), mb = median(b);
    console.log(`| ${name} | ${s} | ${ma.toFixed(1)} | ${mb.toFixed(1)} | ${(ma / mb).toFixed(2)} |`);
    sc.inference.release(model);
    x.dispose();
  }
  console.log(`loadavg at end ${loadavg().join(' ')}`);
}
main().catch((e) => { console.error(e); process.exit(1); });
