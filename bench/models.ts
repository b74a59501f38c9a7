// npm run bench:models [-- --threads N --models cmunext-s,unet --sizes 128,224,256 --batches 1,4,8,16 --train-batch 8 --runs 10 --train-runs 3 --no-train --no-torch --no-ort]
//
// Per model (each measurement in its own child process, so peak RSS is per model and mode):
//   scalpel inference (batch 1, eval, noGrad) and training step (batch 8: forward, BCE + Dice,
//   backward, SGD momentum 0.9 wd 1e-4), PyTorch (bench/pytorch/bench_models.py, same threads),
//   ONNX Runtime for Node inference on the ONNX files bench_models.py exports (cached in
//   .bench-cache/onnx, one file per input shape). Rows are measured model by model and size by
//   size, interleaved, so the ratios compare numbers taken under the same machine load. --sizes
//   (default: each model's own, 256 or 224 for NExNet) and --batches (inference batch sizes,
//   default 1) multiply the rows; training runs once per model and size at --train-batch.
//   Missing torch / ORT / models: printed, skipped.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { arg, fmt, loadavg, machine, mdTable, median, ROOT, writeResults } from './common';
import { native } from '../src/native';
// Only src/train/models (nn and the model list), not sc.train: the child's RSS stays the model's.
import { withImageSize } from '../src/train/models';

const PY = '/usr/bin/python3';
const TORCH_SCRIPT = path.join(ROOT, 'bench', 'pytorch', 'bench_models.py');
const ONNX_DIR = path.join(ROOT, '.bench-cache', 'onnx');
export const SIZE: Record<string, number> = { nexnet: 224, 'nexnet-ssl': 224, 'nexnet-ae': 224 };
const sizeOf = (m: string) => SIZE[m] ?? 256;

type Mode = 'inference' | 'train_step';
interface Meas { median_ms: number; min_ms: number; runs: number; peak_rss_mb: number; loss?: number; gmac?: number; error?: string; skipped?: string; loadavg?: number[] }

// ------------------------------------------------------------------------------- children
function loadScalpelModel(sc: any, name: string, size: number): any {
  if (!sc.models || typeof sc.models.create !== 'function') throw Object.assign(new Error('sc.models.create is not in this build (branch models not merged yet)'), { skip: true });
  // Models whose size is fixed at construction (TransUNet's position embedding) are built for it.
  return sc.models.create(name, withImageSize(name, {}, size));
}

function timed(fn: () => void, runs: number, warmup: number): number[] {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return ts;
}

const rssMb = () => process.resourceUsage().maxRSS / 1024;

function childScalpel(name: string, mode: Mode, threads: number, runs: number, batch: number, s: number): Meas {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const sc = require('../src');
  sc.setNumThreads(threads);
  const model = loadScalpelModel(sc, name, s);
  const sinInput = (shape: number[]) => {
    const n = shape.reduce((a, x) => a * x, 1), d = new Float32Array(n);
    for (let i = 0; i < n; i++) d[i] = Math.sin(0.37 * i) * 0.5 + 0.5;
    return sc.tensor(d, shape);
  };
  let ts: number[];
  let loss: number | undefined;
  let gmac: number | undefined;
  if (mode === 'inference') {
    model.eval();
    const x = sinInput([batch, 3, s, s]);
    // The inference path users are told to take (README): fused conv -> BN -> activation plans.
    if (process.env.SCALPEL_BENCH_PLAIN !== '1') sc.inference.optimize(model, [batch, 3, s, s]);
    ts = timed(() => { sc.noGrad(() => sc.tidy(() => { model.forward(x); })); sc.synchronize(); }, runs, 2);
  } else {
    // The forward's multiply-accumulates per image (the engine's count, batch 1, before training
    // starts): the step's arithmetic is about 3x the forward's (input and weight gradients each
    // cost about one forward), which the table turns into GF/s for both engines.
    gmac = sc.summary(model, [1, 3, s, s]).totals.gmac;
    model.train();
    const xb = sinInput([batch, 3, s, s]);
    // target: 1 where the input pattern > 0.8 (as the PyTorch script), built on the host
    const tbData = new Float32Array(batch * s * s);
    for (let i = 0; i < tbData.length; i++) tbData[i] = Math.sin(0.37 * i) * 0.5 + 0.5 > 0.8 ? 1 : 0;
    const target = sc.tensor(tbData, [batch, 1, s, s]);
    const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
    const step = () => {
      opt.zeroGrad();
      sc.tidy(() => {
        const logits = model.forward(xb);
        const l = sc.F.add(sc.F.bceWithLogits(logits, target), sc.F.diceLoss(logits, target));
        l.backward(null, { freeActivations: true });
        loss = l.item();
      });
      opt.step();
      sc.synchronize();
    };
    ts = timed(step, runs, 1);
  }
  return { median_ms: median(ts), min_ms: Math.min(...ts), runs: ts.length, peak_rss_mb: rssMb(), loss, gmac };
}

const onnxFile = (name: string, b: number, s: number) => path.join(ONNX_DIR, `${name}-b${b}-s${s}.onnx`);

async function childOrt(name: string, threads: number, runs: number, b: number, s: number): Promise<Meas> {
  let ort: any;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    ort = require('onnxruntime-node');
  } catch (e) {
    return { skipped: `onnxruntime-node not installed (${(e as Error).message.split('\n')[0]})` } as Meas;
  }
  const file = onnxFile(name, b, s);
  if (!fs.existsSync(file)) return { skipped: `no ONNX file ${path.relative(ROOT, file)}` } as Meas;
  const sess = await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1, executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  const d = new Float32Array(b * 3 * s * s);
  for (let i = 0; i < d.length; i++) d[i] = Math.sin(0.37 * i) * 0.5 + 0.5;
  const feeds = { [sess.inputNames[0]]: new ort.Tensor('float32', d, [b, 3, s, s]) };
  for (let i = 0; i < 2; i++) await sess.run(feeds);
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await sess.run(feeds);
    ts.push(performance.now() - t0);
  }
  return { median_ms: median(ts), min_ms: Math.min(...ts), runs, peak_rss_mb: rssMb() };
}

// ------------------------------------------------------------------------------- parent
function spawnChild(args: string[], timeoutMs: number): Meas {
  const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', __filename, ...args], { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 24 });
  const line = (r.stdout ?? '').split('\n').reverse().find((l) => l.startsWith('{"result"'));
  if (line) return JSON.parse(line).result;
  const why = r.error ? r.error.message : (r.stderr || '').trim().split('\n').slice(-3).join(' | ');
  return { error: `child failed (status ${r.status}): ${why}`.slice(0, 400) } as Meas;
}

function spawnTorch(name: string, threads: number, runs: number, trainRuns: number, batch: number, noTrain: boolean, timeoutMs: number, size: number, infBatches: number[]): { header?: any; rows: any[]; error?: string } {
  const args = [TORCH_SCRIPT, '--threads', String(threads), '--models', name, '--runs', String(runs), '--train-runs', String(trainRuns), '--train-batch', String(batch),
    '--size', String(size), '--inf-batches', infBatches.join(',')];
  if (noTrain) args.push('--no-train');
  const r = spawnSync(PY, args, { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 24 });
  const rows: any[] = [];
  let header: any;
  for (const l of (r.stdout ?? '').split('\n')) {
    if (!l.startsWith('{')) continue;
    let o: any;
    try {
      o = JSON.parse(l);
    } catch (e) {
      // One unparsable row (e.g. an older script's bare NaN) must not end the whole run.
      rows.push({ model: name, error: `unparsable PyTorch row: ${(e as Error).message}`.slice(0, 200) });
      continue;
    }
    if (o.header) header = o; else rows.push(o);
  }
  if (!rows.length) return { header, rows, error: (r.error ? r.error.message : (r.stderr || '').trim().split('\n').slice(-2).join(' | ')).slice(0, 300) };
  return { header, rows };
}

function torchAvailable(): string | null {
  const r = spawnSync(PY, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? null : `PyTorch not available (${PY} -c "import torch" failed)`;
}

function ensureOnnx(models: string[], sizesOf: (m: string) => number[], batches: number[]): string | null {
  const errors: string[] = [];
  fs.mkdirSync(ONNX_DIR, { recursive: true });
  for (const m of models) {
    for (const s of sizesOf(m)) {
      const missing = batches.filter((b) => !fs.existsSync(onnxFile(m, b, s)));
      if (!missing.length) continue;
      const r = spawnSync(PY, [TORCH_SCRIPT, '--no-bench', '--export-onnx', ONNX_DIR, '--models', m, '--size', String(s), '--inf-batches', missing.join(',')], { cwd: ROOT, encoding: 'utf8', timeout: 600_000 });
      const errs = (r.stdout ?? '').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((o) => o.mode === 'onnx_export' && !o.ok);
      errors.push(...errs.map((e) => `${e.model} ${JSON.stringify(e.input_shape)}: ${e.error}`));
    }
  }
  return errors.length ? errors.join('; ') : null;
}

async function parent() {
  const threads = Number(arg('threads', '2'));
  const models = (arg('models', 'cmunext-s,cmunext,cmunext-l,nexnet,unet') as string).split(',').filter(Boolean);
  const runs = Number(arg('runs', '10'));
  const trainRuns = Number(arg('train-runs', '3'));
  const batch = Number(arg('train-batch', '8'));
  const sizesArg = arg('sizes');
  const sizesOf = (m: string) => (sizesArg ? sizesArg.split(',').map(Number) : [sizeOf(m)]);
  const infBatches = (arg('batches', '1') as string).split(',').map(Number);
  if ([...infBatches, ...(sizesArg ? sizesArg.split(',').map(Number) : [])].some((v) => !Number.isInteger(v) || v < 1)) throw new Error(`--sizes / --batches: expected comma-separated positive integers`);
  const noTrain = arg('no-train') === 'true';
  const timeoutMs = Number(arg('timeout-s', '1200')) * 1000;
  // The ceiling for the GF/s columns: the addon's FMA calibration loop on as many threads.
  const info: any = { ...machine(), threads, runs, trainRuns, trainBatch: batch, fmaPeakGflops: native.fmaPeakGflops(threads) };
  console.log(`scalpel model benchmarks: ${threads} thread(s), models ${models.join(', ')}, loadavg ${loadavg().join(' ')}`);

  const torchSkip = arg('no-torch') === 'true' ? 'disabled (--no-torch)' : torchAvailable();
  if (torchSkip) console.log(`PyTorch columns skipped: ${torchSkip}`);
  let ortSkip: string | null = arg('no-ort') === 'true' ? 'disabled (--no-ort)' : null;
  if (!ortSkip) {
    try {
      require.resolve('onnxruntime-node');
    } catch {
      ortSkip = 'onnxruntime-node is not installed (optional dependency)';
    }
  }
  if (!ortSkip && torchSkip) ortSkip = 'no ONNX export without PyTorch';
  if (!ortSkip) {
    const e = ensureOnnx(models, sizesOf, infBatches);
    if (e) console.log(`ONNX export problems: ${e}`);
  }
  if (ortSkip) console.log(`ONNX Runtime column skipped: ${ortSkip}`);
  info.torchSkipped = torchSkip;
  info.ortSkipped = ortSkip;

  const rows: any[] = [];
  for (const m of models) for (const s of sizesOf(m)) {
    const la0 = loadavg();
    const common = ['--model', m, '--threads', String(threads), '--size', String(s)];
    const scInf = infBatches.map((b) => spawnChild(['--child', 'scalpel', ...common, '--mode', 'inference', '--runs', String(runs), '--batch', String(b)], timeoutMs));
    const scTr = noTrain ? null : spawnChild(['--child', 'scalpel', ...common, '--mode', 'train_step', '--runs', String(trainRuns), '--train-batch', String(batch)], timeoutMs);
    const ortInf = infBatches.map((b) => (ortSkip ? null : spawnChild(['--child', 'ort', ...common, '--runs', String(runs), '--batch', String(b)], timeoutMs)));
    let torchInf: any[] = [], torchTr: any = null, torchErr: string | undefined;
    if (!torchSkip) {
      const t = spawnTorch(m, threads, runs, trainRuns, batch, noTrain, timeoutMs, s, infBatches);
      if (t.header && !info.torchHeader) {
        info.torchHeader = t.header;
        console.log(`PyTorch ${t.header.torch}: threads ${t.header.threads}, oneDNN(mkldnn) available ${t.header.mkldnn_available}, MKL ${t.header.mkl_available}, ` +
          `BLAS ${t.header.build_flags?.BLAS_INFO ?? '?'} -> ${JSON.stringify(t.header.build_flags?.['libblas.so.3'] ?? null)}, USE_MKLDNN=${t.header.build_flags?.USE_MKLDNN ?? '?'}`);
      }
      torchInf = infBatches.map((b) => t.rows.find((r) => r.mode === 'inference' && r.batch === b) ?? null);
      torchTr = t.rows.find((r) => r.mode === 'train_step') ?? null;
      torchErr = t.error;
    }
    const la = loadavg();
    const measured: [Mode, number, Meas | null, any, Meas | null][] = infBatches.map((b, i) => ['inference', b, scInf[i], torchInf[i] ?? null, ortInf[i]]);
    if (!noTrain) measured.push(['train_step', batch, scTr, torchTr, null]);
    for (const [mode, b, sc, th, ort] of measured) {
      const row = {
        model: m, mode, batch: b, size: s,
        scalpel: sc, torch: th ?? (torchSkip ? { skipped: torchSkip } : { error: torchErr ?? 'no result' }),
        ort: mode === 'inference' ? (ort ?? { skipped: ortSkip }) : null,
        ratioTorch: sc?.median_ms && th?.median_ms ? sc.median_ms / th.median_ms : null,
        ratioOrt: sc?.median_ms && ort?.median_ms ? sc.median_ms / ort.median_ms : null,
        loadavgBefore: la0, loadavgAfter: la,
      };
      rows.push(row);
      const show = (x: any) => (x?.median_ms != null ? `${fmt(x.median_ms, 1)} ms (RSS ${fmt(x.peak_rss_mb, 0)} MB)` : x?.skipped ? 'skipped' : `error: ${x?.error ?? '?'}`);
      console.log(`${m} ${s}px ${mode} b${row.batch}: scalpel ${show(sc)} | torch ${show(row.torch)}${mode === 'inference' ? ` | ort ${show(row.ort)}` : ''} | ratio sc/torch ${fmt(row.ratioTorch)}${row.ratioOrt != null ? `, sc/ort ${fmt(row.ratioOrt)}` : ''} | loadavg ${la.join(' ')}`);
    }
  }

  const ips = (x: any, b: number) => (x?.median_ms ? (1000 * b) / x.median_ms : null);
  // Training rows: GFLOP per step = 2 (FLOP per MAC) x 3 (forward + two gradients) x batch x GMAC.
  const stepGflop = (r: any) => (r.mode === 'train_step' && r.scalpel?.gmac ? 6 * r.batch * r.scalpel.gmac : null);
  const gfs = (r: any, x: any) => (stepGflop(r) && x?.median_ms ? stepGflop(r)! / (x.median_ms / 1000) : null);
  const cell = (x: any) => (x?.median_ms != null ? fmt(x.median_ms, 1) : x?.skipped ? 'skip' : 'err');
  const h = info.torchHeader;
  const md = [
    '# scalpel model benchmarks', '',
    `${info.date}, ${info.cpu} (${info.logicalCpus} logical CPUs), ${info.node}, ${threads} thread(s) for every engine, loadavg at start ${info.loadavg.join(' ')}, at end ${loadavg().join(' ')}.`,
    h ? `PyTorch ${h.torch} (BLAS_INFO=${h.build_flags?.BLAS_INFO}, libblas -> ${JSON.stringify(h.build_flags?.['libblas.so.3'])}, USE_MKLDNN=${h.build_flags?.USE_MKLDNN}, mkldnn available ${h.mkldnn_available}).` : `PyTorch: ${torchSkip ?? 'no header'}.`,
    `ONNX Runtime: ${ortSkip ?? 'onnxruntime-node ' + (() => { try { return require('onnxruntime-node/package.json').version; } catch { return '?'; } })()}.`, '',
    'Inference: eval mode, no grad, the sc.inference.optimize plan (fused, and from the third call on its recorded kernel sequence replayed; SCALPEL_BENCH_PLAIN=1: the plain forward). Train step: batch ' + batch + ', forward + BCE-with-logits + soft Dice + backward + SGD (momentum 0.9, wd 1e-4). Median ms; ratio < 1 means scalpel is faster. Peak RSS per child process (one model and mode each; PyTorch runs inference then training in one process, so its train RSS includes the inference peak). Step GFLOP (train rows) = 6 x batch x the forward GMAC per image that scalpel counts (forward + input and weight gradients, ~3 forwards); GF/s = step GFLOP / median step time, against the FMA peak the addon measures in this run: ' + fmt(info.fmaPeakGflops, 1) + ' GF/s on ' + threads + ' thread(s).', '',
    mdTable(['model', 'mode', 'size', 'scalpel ms', 'img/s', 'RSS MB', 'PyTorch ms', 'img/s', 'RSS MB', 'ORT ms', 'RSS MB', 'scalpel/PyTorch', 'scalpel/ORT', 'step GFLOP', 'scalpel GF/s', 'PyTorch GF/s', 'loadavg (1 min)'],
      rows.map((r) => [r.model, r.mode === 'inference' ? `inference b${r.batch}` : `train b${r.batch}`, r.size,
        cell(r.scalpel), fmt(ips(r.scalpel, r.batch), 1), fmt(r.scalpel?.peak_rss_mb, 0),
        cell(r.torch), fmt(ips(r.torch, r.batch), 1), fmt(r.torch?.peak_rss_mb, 0),
        r.ort ? cell(r.ort) : '', r.ort ? fmt(r.ort?.peak_rss_mb, 0) : '',
        fmt(r.ratioTorch), fmt(r.ratioOrt), fmt(stepGflop(r), 1), fmt(gfs(r, r.scalpel), 1), fmt(gfs(r, r.torch), 1), r.loadavgAfter[0]])),
    '',
    ...rows.filter((r) => r.scalpel?.error || r.scalpel?.skipped).slice(0, 1).map((r) => `scalpel rows missing: ${r.scalpel.error ?? r.scalpel.skipped}`),
  ].join('\n');
  console.log('\n' + md);
  writeResults('models', { info: { ...info, loadavgEnd: loadavg() }, rows }, md);
}

async function child() {
  const kind = arg('child');
  const name = arg('model') as string;
  const threads = Number(arg('threads', '2'));
  const runs = Number(arg('runs', '5'));
  let result: Meas;
  try {
    const size = Number(arg('size', String(sizeOf(name))));
    const mode = arg('mode') as Mode;
    if (kind === 'ort') result = await childOrt(name, threads, runs, Number(arg('batch', '1')), size);
    else result = childScalpel(name, mode, threads, runs, mode === 'inference' ? Number(arg('batch', '1')) : Number(arg('train-batch', '8')), size);
  } catch (e) {
    const err = e as Error & { skip?: boolean };
    result = err.skip ? ({ skipped: err.message } as Meas) : ({ error: String(err.stack ?? err).split('\n').slice(0, 3).join(' | ') } as Meas);
  }
  result.loadavg = loadavg();
  console.log(JSON.stringify({ result }));
}

(arg('child') ? child() : parent()).catch((e) => {
  console.error(e);
  process.exit(1);
});
