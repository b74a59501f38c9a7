// Model summaries: one forward pass under noGrad, observing every op to attribute output shapes,
// parameters and multiply-accumulates to the module that ran them.
//
// MACs are what the ops report through their `macs` function: convolutions (Cout*Cin/g*kh*kw
// per output pixel; transposed: per input pixel), matrix products (bmm: B*M*N*K, which covers
// Linear layers such as MaSA's q/k/v projections) and decay attention (q k^T and A v: 2*B*L*L*D).
// Element-wise ops, normalisation, pooling, interpolation, softmax and T-PEN's power expansion
// are not counted (like the usual PyTorch counters, e.g. thop/fvcore for these layers). Only ops
// that run count: NExNet Seg at 224 gives 16.16 GMAC, not models.md's 16.5, because its forward
// (like tools/pytorch/models.py) skips the last NEx block's unused att branch (0.31 GMAC).
import { Device } from '../tensor/device';
import { DTYPES } from '../tensor/dtype';
import { Tensor, isTensor } from '../tensor/tensor';
import { zeros } from '../tensor/create';
import { observeOps } from '../tensor/op';
import { tidy } from '../tensor/tensor';
import { noGrad } from '../autograd/engine';
import { Module, currentModulePath, trackModules } from './module';
import { Lambda } from './layers';

export interface SummaryRow {
  /** Dotted module path ('' for the model itself). */
  path: string;
  depth: number;
  type: string;
  /** Output shape(s) of the module's last call; null when the module did not run. */
  outputShape: number[] | number[][] | null;
  calls: number;
  /** Parameters registered directly on this module (not its children). */
  params: number;
  /** MACs of the ops this module ran itself (not inside a child module). */
  macs: number;
  /** MACs including the module's children. */
  totalMacs: number;
}

export interface SummaryResult {
  inputShape: number[];
  outputShape: number[] | number[][] | null;
  rows: SummaryRow[];
  totals: {
    params: number;
    trainableParams: number;
    macs: number;
    gmac: number;
    /** 2 * gmac. */
    gflops: number;
    /** Bytes of all op outputs of the forward (views that share their input's storage excluded). */
    activationBytes: number;
    /** Bytes of the parameters and buffers. */
    paramBytes: number;
  };
}

export interface SummaryOptions {
  /** Device of the dummy input (default: the device of the model's first parameter). */
  device?: Device;
}

function shapesOf(out: unknown): number[] | number[][] | null {
  if (isTensor(out)) return out.shape.slice();
  if (Array.isArray(out)) {
    const ts = out.filter(isTensor);
    if (ts.length) return ts.map((t) => t.shape.slice());
  }
  if (out && typeof out === 'object') {
    const ts = Object.values(out).filter(isTensor);
    if (ts.length) return ts.map((t) => t.shape.slice());
  }
  return null;
}

function typeName(m: Module): string {
  return m instanceof Lambda ? m.name : m.constructor.name;
}

/**
 * Runs one forward pass of `model` on a zero input of `inputShape` ([C, H, W] gets batch 1) in
 * eval mode under noGrad (training flags are restored afterwards) and returns per-module rows
 * and totals. See the file comment for which ops count as MACs.
 */
export function summary(model: Module, inputShape: number[], { device }: SummaryOptions = {}): SummaryResult {
  if (!(model instanceof Module)) throw new Error('summary: expected a Module');
  if (!Array.isArray(inputShape) || inputShape.length < 1 || !inputShape.every((d) => Number.isInteger(d) && d > 0)) throw new Error(`summary: inputShape must be a list of positive integers, got ${JSON.stringify(inputShape)}`);
  const shape = inputShape.length === 3 ? [1, ...inputShape] : inputShape.slice();
  const dev = device ?? model.parameters()[0]?.device ?? 'cpu';

  const mods = model.namedModules();
  const rows: SummaryRow[] = mods.map(([name, m]) => ({
    path: name,
    depth: name ? name.split('.').length : 0,
    type: typeName(m),
    outputShape: null,
    calls: 0,
    params: m.namedParameters().filter(([n]) => !n.includes('.')).reduce((a, [, t]) => a + t.size, 0),
    macs: 0,
    totalMacs: 0,
  }));
  const byPath = new Map<string, SummaryRow>();
  mods.forEach(([, m], i) => byPath.set(m.path, rows[i]));
  const rootRow = rows[0];

  // Capture each module's output shapes by wrapping its (tracking) forward for the duration.
  const restore: (() => void)[] = [];
  mods.forEach(([, m], i) => {
    if (i === 0) return;
    const own = Object.getOwnPropertyDescriptor(m, 'forward');
    const prev = m.forward;
    (m as { forward: unknown }).forward = function (...args: unknown[]) {
      const out = prev.apply(m, args);
      rows[i].outputShape = shapesOf(out);
      rows[i].calls++;
      return out;
    };
    restore.push(() => {
      if (own) Object.defineProperty(m, 'forward', own);
      else delete (m as { forward?: unknown }).forward;
    });
  });

  const flags = mods.map(([, m]) => m.training);
  let macs = 0, activationBytes = 0;
  const stop = observeOps((op, inputs, outputs, attrs) => {
    const row = byPath.get(currentModulePath()) ?? rootRow;
    const n = op.macs ? op.macs(inputs, outputs, attrs) : 0;
    row.macs += n;
    macs += n;
    for (const o of outputs) {
      if (inputs.some((t) => t.storage === o.storage)) continue;
      activationBytes += o.size * DTYPES[o.dtype].bytes;
    }
  });
  let outputShape: number[] | number[][] | null = null;
  try {
    model.eval();
    tidy(() => {
      noGrad(() => trackModules(() => {
        const x = zeros(shape, { device: dev });
        outputShape = shapesOf(model.forward(x));
      }));
    });
  } finally {
    stop();
    restore.forEach((f) => f());
    mods.forEach(([, m], i) => { m.training = flags[i]; });
  }
  rootRow.outputShape = outputShape;
  rootRow.calls = 1;

  // Cumulative MACs: every row adds its own MACs to itself and all its ancestors.
  const index = new Map(rows.map((r) => [r.path, r]));
  for (const r of rows) {
    r.totalMacs += r.macs;
    if (!r.path) continue;
    const parts = r.path.split('.');
    for (let k = parts.length - 1; k >= 0; k--) {
      const anc = index.get(parts.slice(0, k).join('.'));
      if (anc) anc.totalMacs += r.macs;
    }
  }
  const paramBytes = [...model.namedParameters(), ...model.namedBuffers()].reduce((a, [, t]) => a + t.size * DTYPES[t.dtype].bytes, 0);
  const params = model.numParameters();
  return {
    inputShape: shape,
    outputShape,
    rows,
    totals: { params, trainableParams: model.numParameters(true), macs, gmac: macs / 1e9, gflops: (2 * macs) / 1e9, activationBytes, paramBytes },
  };
}

const fmtInt = (n: number) => n.toLocaleString('en-US');
function fmtMacs(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)} K`;
  return String(n);
}
function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(2)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}
const fmtShape = (s: number[] | number[][] | null) => (s === null ? '-' : Array.isArray(s[0]) ? (s as number[][]).map((x) => `[${x.join(', ')}]`).join(' ') : `[${(s as number[]).join(', ')}]`);

/**
 * Renders a summary as a text table. maxDepth (default: all) limits the rows to modules at most
 * that deep; their MAC column then shows the cumulative count of the hidden children.
 */
export function formatSummary(result: SummaryResult, { maxDepth = Infinity }: { maxDepth?: number } = {}): string {
  const shown = result.rows.filter((r) => r.depth <= maxDepth && r.path !== '');
  const header = ['Layer', 'Type', 'Output shape', 'Params', 'MACs'];
  const body = shown.map((r) => {
    const collapsed = r.depth === maxDepth;
    const ownParams = collapsed ? result.rows.filter((c) => c.path === r.path || c.path.startsWith(`${r.path}.`)).reduce((a, c) => a + c.params, 0) : r.params;
    const m = collapsed ? r.totalMacs : r.macs;
    return [`${'  '.repeat(Math.max(0, r.depth - 1))}${r.path}`, r.type, fmtShape(r.outputShape), ownParams ? fmtInt(ownParams) : '-', m ? fmtMacs(m) : '-'];
  });
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((b) => b[c].length)));
  const line = (cells: string[]) => cells.map((s, c) => (c >= 3 ? s.padStart(widths[c]) : s.padEnd(widths[c]))).join('  ');
  const sep = '-'.repeat(widths.reduce((a, w) => a + w + 2, -2));
  const t = result.totals;
  return [
    line(header), sep, ...body.map(line), sep,
    `Input: ${fmtShape(result.inputShape)}   Output: ${fmtShape(result.outputShape)}`,
    `Params: ${fmtInt(t.params)} (trainable ${fmtInt(t.trainableParams)}, ${fmtBytes(t.paramBytes)})`,
    `MACs: ${t.gmac.toFixed(3)} G   FLOPs (2 x MACs): ${t.gflops.toFixed(3)} G`,
    `Forward activations: ${fmtBytes(t.activationBytes)}`,
  ].join('\n');
}
