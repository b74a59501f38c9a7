// The model part of scripts/gpu-check.sh, on the `cuda` backend (a real GPU, or the emulated
// flavour in the dry run):
//   --part compare   CMUNeXt-S and NExNet: one training step (forward, BCE + Dice, backward, SGD
//                    momentum 0.9 wd 1e-4) on cuda and on the cpu from the same seed; logits,
//                    loss, every gradient, every parameter after the step and the BatchNorm
//                    running means must agree (tolerances as test/cuda-model.test.ts).
//   --part timing    every model: inference (batch 1, eval, noGrad; plain and through
//                    sc.inference.optimize) and the training step (batch 8), ms per call.
// Timing: cuda.synchronize() before starting the clock and after the call, so the time is the
// device's work plus the host's launch time, as a user sees it (the addon exposes CUDA events
// per kernel only, through timeKernel; a whole step spans hundreds of launches, where the
// difference from events around it is one synchronisation, about 10 us). The PyTorch side
// (torch_bench.py) reports the same synchronised clock and torch.cuda.Event times.
//   tsx scripts/gpu-check/models.ts --part compare|timing --out FILE [--small] [--models a,b]
// --small: the dry run's sizes (32x32, batch 1-2, two timed runs). A deadline (epoch ms) in
// GPU_CHECK_DEADLINE_MS makes the remaining measurements report "skipped: time budget" instead
// of running past it. The output file is rewritten after every measurement.
import * as sc from '../../src';
import { writeFileAtomic } from '../../src/io/atomic';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const part = opt('part');
const out = opt('out');
const small = argv.includes('--small');
const deadline = Number(process.env.GPU_CHECK_DEADLINE_MS) || Infinity;
if ((part !== 'compare' && part !== 'timing') || !out) {
  console.error('usage: models.ts --part compare|timing --out FILE [--small] [--models a,b]');
  process.exit(2);
}

const left = () => deadline - Date.now();
const nowIso = () => new Date().toISOString();

function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (Number(a[i]) - Number(b[i])) ** 2;
    den += Number(b[i]) ** 2;
  }
  return num / Math.max(den, 1e-30);
}
const maxAbsDiff = (a: Float64Array, b: Float64Array) => {
  let m = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < b.length && i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const host = (t: sc.Tensor) => Float64Array.from(t.toArray() as Float32Array);
const finite = (x: number) => (Number.isFinite(x) ? x : null);

/** Input like the PyTorch scripts': float32(sin(0.37 i) * 0.5 + 0.5). */
function sinInput(shape: number[]): sc.Tensor {
  const n = shape.reduce((a, x) => a * x, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = Math.sin(0.37 * i) * 0.5 + 0.5;
  return sc.tensor(d, shape);
}
function targetFor(shape: number[]): sc.Tensor {
  const n = shape.reduce((a, x) => a * x, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = Math.sin(0.37 * i) * 0.5 + 0.5 > 0.8 ? 1 : 0;
  return sc.tensor(d, shape);
}

/** BCE + Dice for segmentation heads; the autoencoder (3-channel image out) learns its input by MSE. */
function lossOf(name: string, logits: sc.Tensor, target: sc.Tensor, input: sc.Tensor): sc.Tensor {
  if (name === 'nexnet-ae') return sc.F.mseLoss(logits, input);
  return sc.F.bceWithLogits(logits, target).add(sc.F.diceLoss(logits, target));
}

// ------------------------------------------------------------------------------ compare
interface CompareRow {
  model: string; size: number; batch: number; ok: boolean; checks: string[];
  logitsNmse: number | null; lossCpu: number | null; lossCuda: number | null; lossRelDiff: number | null;
  worstGradient: { name: string; nmse: number | null; maxAbsDiff: number | null } | null;
  worstParameter: { name: string; nmse: number | null; maxAbsDiff: number | null } | null;
  runningMeanNmse: number | null; cpuMs: number; cudaMs: number; error?: string; skipped?: string;
}

function trainStep(name: string, device: sc.Device, size: number, batch: number) {
  sc.manualSeed(11);
  const model = sc.models.create(name, { inChannels: 3, numClasses: 1 }).to(device);
  model.train();
  const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const x = sc.randn([batch, 3, size, size]).to(device);
  const t = sc.rand([batch, 1, size, size]).gt(0.6).to('float32').to(device);
  const t0 = performance.now();
  const names = model.namedParameters().map(([n]) => n);
  const res = sc.tidy(() => {
    const logits = model.forward(x) as sc.Tensor;
    const loss = lossOf(name, logits, t, x);
    loss.backward();
    // A parameter the loss does not reach (NExNet's unused heads) has no gradient on either backend.
    const grads = model.parameters().map((p) => (p.grad ? host(p.grad) : new Float64Array(0)));
    opt.step();
    return { logits: host(logits), loss: loss.item(), grads };
  });
  const after = model.parameters().map(host);
  const running = model.namedBuffers().filter(([n]) => n.endsWith('running_mean')).map(([, b]) => host(b));
  const ms = performance.now() - t0;
  model.dispose();
  opt.dispose();
  x.dispose();
  t.dispose();
  return { ...res, after, running, names, ms };
}

const emptyCompareRow = (model: string, size: number, batch: number): CompareRow => ({
  model, size, batch, ok: false, checks: [], logitsNmse: null, lossCpu: null, lossCuda: null, lossRelDiff: null,
  worstGradient: null, worstParameter: null, runningMeanNmse: null, cpuMs: 0, cudaMs: 0,
});

function compareModel(name: string, size: number, batch: number): CompareRow {
  const row = emptyCompareRow(name, size, batch);
  try {
    const cpu = trainStep(name, 'cpu', size, batch);
    const gpu = trainStep(name, 'cuda', size, batch);
    row.cpuMs = Math.round(cpu.ms);
    row.cudaMs = Math.round(gpu.ms);
    const fails: string[] = [];
    row.logitsNmse = finite(nmse(gpu.logits, cpu.logits));
    if (!(row.logitsNmse !== null && row.logitsNmse < 1e-8)) fails.push(`logits NMSE ${row.logitsNmse} (limit 1e-8)`);
    row.lossCpu = cpu.loss;
    row.lossCuda = gpu.loss;
    row.lossRelDiff = finite(Math.abs(gpu.loss - cpu.loss) / Math.max(Math.abs(cpu.loss), 1e-30));
    if (!(row.lossRelDiff !== null && row.lossRelDiff < 1e-4)) fails.push(`loss ${gpu.loss} vs ${cpu.loss} (limit 1e-4 relative)`);
    // Relative agreement, or absolute where the values are rounding noise (a conv bias right
    // before a BatchNorm has a zero gradient in exact arithmetic).
    const worst = (a: Float64Array[], b: Float64Array[], rel: number, abs: number, what: string) => {
      let w: { name: string; nmse: number | null; maxAbsDiff: number | null; score: number } | null = null;
      b.forEach((ref, i) => {
        const e = nmse(a[i], ref), d = maxAbsDiff(a[i], ref);
        const pass = e < rel || d < abs;
        const score = Math.min(e / rel, d / abs);
        if (!pass) fails.push(`${what} ${cpu.names[i]}: NMSE ${e.toExponential(2)}, max abs diff ${d.toExponential(2)}`);
        if (!w || score > w.score) w = { name: cpu.names[i], nmse: finite(e), maxAbsDiff: finite(d), score };
      });
      if (!w) return null;
      const { score: _s, ...rest } = w as { name: string; nmse: number | null; maxAbsDiff: number | null; score: number };
      return rest;
    };
    row.worstGradient = worst(gpu.grads, cpu.grads, 1e-6, 1e-6, 'gradient');
    row.worstParameter = worst(gpu.after, cpu.after, 1e-6, 1e-7, 'parameter after the step');
    row.runningMeanNmse = finite(Math.max(0, ...cpu.running.map((r, i) => nmse(gpu.running[i], r))));
    if (!(row.runningMeanNmse !== null && row.runningMeanNmse < 1e-8)) fails.push(`running mean NMSE ${row.runningMeanNmse} (limit 1e-8)`);
    row.checks = fails.slice(0, 20);
    row.ok = fails.length === 0;
  } catch (e) {
    row.error = String((e as Error).stack || e).slice(0, 2000);
  }
  return row;
}

// ------------------------------------------------------------------------------ timing
interface Meas { median_ms: number | null; min_ms: number | null; runs: number; loss?: number; error?: string; skipped?: string }
interface TimingRow { model: string; size: number; params: number; inference: Meas; inference_optimized: Meas; train_step: Meas & { batch: number } }

const median = (xs: number[]) => {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function timeIt(fn: () => void, warmup: number, minRuns: number, maxRuns: number, budgetMs: number): Meas {
  for (let i = 0; i < warmup; i++) fn();
  sc.cuda.synchronize();
  const ts: number[] = [];
  const start = performance.now();
  while (ts.length < minRuns || (ts.length < maxRuns && performance.now() - start < budgetMs)) {
    if (left() < 0 && ts.length >= 1) break;
    sc.cuda.synchronize();
    const t0 = performance.now();
    fn();
    sc.cuda.synchronize();
    ts.push(performance.now() - t0);
  }
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { median_ms: r(median(ts)), min_ms: r(Math.min(...ts)), runs: ts.length };
}

function measure(what: () => Meas, needMs: number): Meas {
  if (left() < needMs) return { median_ms: null, min_ms: null, runs: 0, skipped: 'time budget' };
  try {
    return what();
  } catch (e) {
    return { median_ms: null, min_ms: null, runs: 0, error: String((e as Error).message || e).slice(0, 1000) };
  }
}

function timeModel(name: string, size: number, trainBatch: number, runs: { warmup: number; min: number; max: number; budgetMs: number }): TimingRow {
  // A model whose input size is fixed at construction (TransUNet's position embedding) is built for this size.
  const takesSize = sc.models.list().find((e) => e.name === name)?.options.includes('imgSize');
  const model = sc.models.create(name, takesSize ? { imgSize: size } : {}).to('cuda');
  const params = model.parameters().reduce((a, p) => a + p.size, 0);
  const row: TimingRow = {
    model: name, size, params,
    inference: { median_ms: null, min_ms: null, runs: 0 },
    inference_optimized: { median_ms: null, min_ms: null, runs: 0 },
    train_step: { median_ms: null, min_ms: null, runs: 0, batch: trainBatch },
  };
  const need = small ? 1000 : 3000;
  try {
    const x = sinInput([1, 3, size, size]).to('cuda');
    model.eval();
    row.inference = measure(() => timeIt(() => sc.noGrad(() => sc.tidy(() => { model.forward(x); })), runs.warmup, runs.min, runs.max, runs.budgetMs), need);
    row.inference_optimized = measure(() => {
      sc.inference.optimize(model, [1, 3, size, size]);
      return timeIt(() => sc.noGrad(() => sc.tidy(() => { model.forward(x); })), runs.warmup, runs.min, runs.max, runs.budgetMs);
    }, need);
    x.dispose();
    model.train();  // leaves the inference plan (train() releases it)
    const xb = sinInput([trainBatch, 3, size, size]).to('cuda');
    const tb = targetFor([trainBatch, 1, size, size]).to('cuda');
    const opt = new sc.optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
    let loss = NaN;
    const step = () => {
      opt.zeroGrad();
      sc.tidy(() => {
        const l = lossOf(name, model.forward(xb) as sc.Tensor, tb, xb);
        l.backward();
        loss = l.item();
      });
      opt.step();
    };
    row.train_step = { ...measure(() => timeIt(step, Math.max(1, runs.warmup - 1), runs.min, runs.max, runs.budgetMs), need * 2), batch: trainBatch };
    if (Number.isFinite(loss)) row.train_step.loss = loss;
    opt.dispose();
    xb.dispose();
    tb.dispose();
  } finally {
    model.dispose();
    sc.emptyCache();
  }
  return row;
}

// ------------------------------------------------------------------------------ main
const info = {
  device: sc.cuda.isAvailable() ? sc.cuda.deviceName() : null,
  available: sc.cuda.isAvailable(),
  emulated: sc.cuda.isAvailable() && sc.cuda.isEmulated(),
  reason: sc.cuda.unavailableReason(),
  cpuThreads: sc.getNumThreads(),
  small,
  started: nowIso(),
};
const result: Record<string, unknown> = { ...info, part, complete: false };
const save = () => writeFileAtomic(out, JSON.stringify(result, null, 1) + '\n');
save();
if (!info.available) {
  result.error = `cuda is not available: ${info.reason}`;
  save();
  console.error(`[models] ${result.error}`);
  process.exit(1);
}

let failed = false;
if (part === 'compare') {
  const models = (opt('models') ?? 'cmunext-s,nexnet').split(',');
  // Batch 2 and 64 px at least: NExNet's bottleneck is 2x2 there and BatchNorm needs more than one value per channel.
  const size = small ? 64 : 128, batch = 2;
  const rows: CompareRow[] = [];
  result.compare = rows;
  for (const m of models) {
    if (left() < (small ? 2000 : 15000)) {
      rows.push({ ...emptyCompareRow(m, size, batch), skipped: 'time budget' });
      failed = true;
      continue;
    }
    const r = compareModel(m, size, batch);
    rows.push(r);
    failed ||= !r.ok;
    console.log(`[models] ${m} ${size}x${size} batch ${batch}: cuda vs cpu training step ${r.ok ? 'agrees' : 'DIFFERS'}` +
      ` (logits NMSE ${r.logitsNmse?.toExponential(2)}, loss ${r.lossCuda} vs ${r.lossCpu}; cpu ${r.cpuMs} ms, cuda ${r.cudaMs} ms)` +
      (r.error ? `\n  error: ${r.error}` : '') + (r.checks.length ? `\n  ${r.checks.join('\n  ')}` : ''));
    save();
  }
} else {
  const models = (opt('models') ?? sc.models.list().map((m) => m.name).join(',')).split(',');
  const rows: TimingRow[] = [];
  result.timing = rows;
  const runs = small ? { warmup: 1, min: 2, max: 2, budgetMs: 0 } : { warmup: 3, min: 5, max: 50, budgetMs: 1500 };
  for (const m of models) {
    const entry = sc.models.list().find((e) => e.name === m);
    const size = small ? 32 : entry?.inputSize[1] ?? 256;
    const batch = small ? 2 : 8;
    let r: TimingRow;
    try {
      r = timeModel(m, size, batch, runs);
    } catch (e) {
      const err = String((e as Error).message || e).slice(0, 1000);
      const none = { median_ms: null, min_ms: null, runs: 0, error: err };
      r = { model: m, size, params: 0, inference: none, inference_optimized: none, train_step: { ...none, batch } };
    }
    rows.push(r);
    const show = (x: Meas) => (x.median_ms !== null ? `${x.median_ms} ms` : x.skipped ? `skipped (${x.skipped})` : `error: ${x.error}`);
    console.log(`[models] ${m} @${size}: inference ${show(r.inference)}, optimized ${show(r.inference_optimized)}, train step (batch ${batch}) ${show(r.train_step)}`);
    failed ||= [r.inference, r.inference_optimized, r.train_step].some((x) => x.error !== undefined);
    save();
  }
}
result.complete = true;
result.finished = nowIso();
save();
process.exit(failed ? 1 : 0);
