// npm run bench:table [-- --threads N --runs 5 --models unet,cmunext-s,...]
//
// The papers' efficiency table reproduced: parameters (M) and GFLOPs counted by the engine
// (sc.summary; MACs, as the papers count FLOPs), inference time (batch 1, median) on every
// available device, printed beside the papers' own figures. Writes bench/results/table.{md,json}.
import * as sc from '../src';
import { observeOps } from '../src/tensor/op';
import { arg, fmt, loadavg, machine, mdTable, median } from './common';
import { writeResults } from './common';

const anySc: any = sc;
const threads = Number(arg('threads', String(sc.getNumThreads())));
sc.setNumThreads(threads);
const runs = Number(arg('runs', '5'));
// [name, label, input size, create options (default: 3 channels, 1 class)]
const MODELS: [string, string, number, Record<string, unknown>?][] = [
  ['unet', 'UNet', 256], ['unetpp', 'UNet++', 256], ['attunet', 'Attention U-Net', 256], ['unext', 'UNeXt', 256], ['cmunext-s', 'CMUNeXt-S', 256], ['cmunext', 'CMUNeXt', 256], ['cmunext-l', 'CMUNeXt-L', 256],
  ['transunet', 'TransUNet (R50-ViT-B/16)', 256],
  ['mednext-s', 'MedNeXt-S 2-D (k3)', 256], ['mednext-b', 'MedNeXt-B 2-D (k3)', 256], ['mednext-m', 'MedNeXt-M 2-D (k3)', 256], ['mednext-l', 'MedNeXt-L 2-D (k3)', 256],
  ['nexnet', 'NExNet Seg (no SSL)', 224], ['nexnet-ssl', 'NExNet Seg (SSL, AE attached)', 224],
  // SegFormer as its paper's Table 1 counts it: ADE20K, 150 classes, 512x512.
  ['segformer-b0', 'SegFormer-B0 (150 classes)', 512, { numClasses: 150 }], ['segformer-b1', 'SegFormer-B1 (150 classes)', 512, { numClasses: 150 }],
  ['segformer-b2', 'SegFormer-B2 (150 classes)', 512, { numClasses: 150 }],
];
const selected = arg('models')?.split(',');

// The papers' figures (/work/shared/design/models.md): NExNet Seg Table 4 (A100 GPU) and the
// CMUNeXt paper's count for the base model. A model quoted by two papers has one entry per source.
type Paper = { params?: number; gflops?: number; time?: string; source: string };
// The CMUNeXt benchmark's BUSI table (FengheTan9/Medical-Image-Segmentation-Benchmarks README, 256
// px, "GFLOPs" = GMACs, FPS on an RTX 4090). Its U-Net (34.52 M) and U-Net++ (26.90 M) are other
// configurations than scalpel's unet (31.04 M) and unetpp (9.16 M, filters 32..512); their rows
// are shown beside the nearest scalpel model for reference, not as a count to match.
const BENCH = 'CMUNeXt benchmark (BUSI table)';
const PAPER: Record<string, Paper | Paper[]> = {
  unet: [
    { params: 31.1, gflops: 68, time: '0.09 s (A100)', source: 'NExNet Seg Table 4' },
    { params: 34.52, gflops: 65.52, time: '139.32 FPS (RTX 4090)', source: `${BENCH}; its U-Net is a different configuration` },
  ],
  unetpp: { params: 26.90, gflops: 37.62, time: '125.50 FPS (RTX 4090)', source: `${BENCH}; its U-Net++ is a different configuration` },
  'nexnet-ssl': { params: 30.4, gflops: 18, time: '0.06 s (A100)', source: 'NExNet Seg Table 4' },
  cmunext: [
    { params: 3.14, gflops: 7.41, source: 'CMUNeXt paper' },
    { params: 3.14, gflops: 7.41, time: '471.43 FPS (RTX 4090)', source: BENCH },
  ],
  attunet: { params: 34.87, gflops: 66.63, time: '129.92 FPS (RTX 4090)', source: BENCH },
  unext: { params: 1.47, gflops: 0.58, time: '650.48 FPS (RTX 4090)', source: `UNeXt paper / ${BENCH}` },
  // SegFormer Table 1 (ADE20K, 512x512; its "Flops" are MACs as counted by mmcv).
  'segformer-b0': { params: 3.8, gflops: 8.4, source: 'SegFormer Table 1 (ADE20K 512x512)' },
  'segformer-b1': { params: 13.7, gflops: 15.9, source: 'SegFormer Table 1 (ADE20K 512x512)' },
  'segformer-b2': { params: 27.5, gflops: 62.4, source: 'SegFormer Table 1 (ADE20K 512x512)' },
  // TransUNet: the CMUNeXt benchmark's BUSI table at 256 (GMACs), and NExNet Seg Table 4, whose
  // 160 "GFLOPs" are counted differently (its input size is not stated beside the figure).
  transunet: [
    { params: 105.32, gflops: 38.52, time: '112.95 FPS (RTX 4090)', source: BENCH },
    { params: 105, gflops: 160, time: '0.30 s (A100)', source: 'NExNet Seg Table 4' },
  ],
};
const papersOf = (p: Paper | Paper[] | null | undefined): Paper[] => (p ? (Array.isArray(p) ? p : [p]) : []);
const paperCol = (p: Paper | Paper[] | null | undefined, k: keyof Paper) => {
  const v = papersOf(p).map((e) => e[k] ?? '-');
  return v.length ? v.join(' / ') : '-';
};

function summarize(model: any, shape: number[]): { params: number; gmac: number; via: string } {
  if (typeof anySc.summary === 'function') {
    try {
      const s = anySc.summary(model, shape);
      const t = s.totals ?? s;
      const params = t.params ?? t.totalParams;
      const gmac = t.gmac ?? (t.macs != null ? t.macs / 1e9 : undefined);
      if (typeof params === 'number' && typeof gmac === 'number') return { params, gmac, via: 'sc.summary' };
    } catch (e) {
      console.log(`sc.summary failed (${(e as Error).message}); counting with the op observer`);
    }
  }
  // Fallback: the engine's own per-op MAC counts (OpDef.macs), observed over one forward.
  let macs = 0;
  const off = observeOps((op, ins, outs, attrs) => { if (op.macs) macs += op.macs(ins, outs, attrs); });
  try {
    sc.noGrad(() => sc.tidy(() => { model.forward(sc.zeros(shape)); }));
  } finally {
    off();
  }
  return { params: model.numParameters(), gmac: macs / 1e9, via: 'op observer (OpDef.macs)' };
}

function main() {
  const devices = sc.availableDevices();
  const info = { ...machine(), threads, runs, devices };
  console.log(`efficiency table: devices ${devices.join(', ')}, ${threads} CPU thread(s), loadavg ${loadavg().join(' ')}`);
  if (!anySc.models?.create) console.log('sc.models.create is not in this build (branch models not merged yet): scalpel columns are empty');
  const rows: any[] = [];
  for (const [name, label, s, opts] of MODELS) {
    if (selected && !selected.includes(name)) continue;
    const row: any = { model: name, label, size: s, paper: PAPER[name] ?? null, times: {} as Record<string, number | null> };
    try {
      if (!anySc.models?.create) throw new Error('no sc.models');
      const model = anySc.models.create(name, opts ?? {});
      model.eval();
      const sm = summarize(model, [1, 3, s, s]);
      row.params = sm.params;
      row.gmac = sm.gmac;
      row.countedBy = sm.via;
      for (const dev of devices) {
        model.to(dev);
        const x = sc.zeros([1, 3, s, s], { device: dev });
        const once = () => sc.noGrad(() => sc.tidy(() => { model.forward(x); sc.synchronize(); }));
        once();
        const ts: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now();
          once();
          ts.push(performance.now() - t0);
        }
        row.times[dev] = median(ts);
        x.dispose();
      }
      model.dispose();
    } catch (e) {
      row.error = (e as Error).message;
    }
    row.loadavg = loadavg();
    rows.push(row);
    console.log(`${label}: params ${fmt(row.params / 1e6, 3)} M, ${fmt(row.gmac, 2)} GMAC, ${devices.map((d) => `${d} ${fmt(row.times[d], 1)} ms`).join(', ')}${row.error ? ` (${row.error})` : ''}`);
  }
  const md = ['# Efficiency table (papers vs scalpel)', '',
    `${info.date}, ${info.cpu}, ${threads} CPU thread(s), loadavg ${info.loadavg.join(' ')}. ` +
    `Time: batch 1, eval mode under noGrad (the plain forward, no inference plan), one warm-up forward, then the median of ${runs} timed forwards ` +
    '(wall clock around the whole forward; on a GPU the clock stops after a device synchronize); FPS = 1000 / ms. ' +
    'GMAC = multiply-accumulates counted by the engine over one forward (what the papers call "GFLOPs"); GFLOP = 2 x GMAC.', '',
    mdTable(['Method', 'input', 'Params (M)', 'GMAC', 'GFLOP (2 x GMAC)', ...devices.flatMap((d) => [`scalpel ${d} (ms)`, `${d} FPS`]), 'paper Params (M)', 'paper GFLOPs', 'paper time', 'paper source'],
      rows.map((r) => [r.label, `${r.size}x${r.size}`, fmt(r.params / 1e6, 3), fmt(r.gmac, 2), fmt(r.gmac * 2, 2), ...devices.flatMap((d) => [fmt(r.times[d], 1), fmt(r.times[d] ? 1000 / r.times[d] : undefined, 1)]),
        paperCol(r.paper, 'params'), paperCol(r.paper, 'gflops'), paperCol(r.paper, 'time'), paperCol(r.paper, 'source')])), '',
    'The NExNet paper reports 30.4 M / 18 G for NExNet Seg; this project counts the SSL model with the whole autoencoder attached (see /work/shared/design/models.md) and the plain model separately; its row of Table 4 is shown beside the SSL model. The papers time on an A100 GPU, scalpel here on the devices this machine has.',
  ].join('\n');
  console.log('\n' + md);
  writeResults('table', { info: { ...info, loadavgEnd: loadavg() }, rows }, md);
}

main();
