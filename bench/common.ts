// Shared helpers for the benchmarks: machine info, timing, markdown tables, result files.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const ROOT = path.resolve(__dirname, '..');
export const RESULTS = path.join(ROOT, 'bench', 'results');

export function loadavg(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

export function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    logicalCpus: cpus.length,
    totalMemGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadavg: loadavg(),
    date: new Date().toISOString(),
  };
}

/** Value of --name=value / --name value on the command line (or the env var), else def. */
export function arg(name: string, def?: string): string | undefined {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) return argv[i + 1] && !argv[i + 1].startsWith('--') ? argv[i + 1] : 'true';
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  const env = process.env[`BENCH_${name.toUpperCase().replace(/-/g, '_')}`];
  return env ?? def;
}

export function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * sc.synchronize(): a clock read after a call that only queued its kernels would time the
 * queueing. Required lazily: scripts that only parse or print results do not load the addon.
 */
export function settle(): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  require('../src/tensor/device').synchronize();
}

/** Runs fn warmup times, then until budgetMs elapsed (at least minRuns, at most maxRuns); ms per run. */
export function timeIt(fn: () => void, { warmup = 1, minRuns = 3, maxRuns = 50, budgetMs = 400 } = {}): { median: number; min: number; runs: number } {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  const start = performance.now();
  while (ts.length < minRuns || (ts.length < maxRuns && performance.now() - start < budgetMs)) {
    const t0 = performance.now();
    fn();
    settle();
    ts.push(performance.now() - t0);
  }
  return { median: median(ts), min: Math.min(...ts), runs: ts.length };
}

/**
 * Kernel microbenchmarks: two warm-up calls, then `rounds` timings of `reps` back-to-back calls
 * each; ms per call, median and best of the rounds.
 */
export function timeReps(fn: () => void, reps: number, rounds = 5): { median: number; min: number } {
  fn();
  fn();
  settle();
  const ts: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let q = 0; q < reps; q++) fn();
    settle();
    ts.push((performance.now() - t0) / reps);
  }
  return { median: median(ts), min: Math.min(...ts) };
}

export function fmt(x: number | null | undefined, digits = 2): string {
  if (x == null || !Number.isFinite(x)) return '-';
  if (Math.abs(x) >= 1000) return x.toFixed(0);
  if (Math.abs(x) >= 100) return x.toFixed(Math.min(digits, 1));
  return x.toFixed(digits);
}

export function mdTable(headers: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map(String).join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

export function writeResults(base: string, json: unknown, md: string): void {
  fs.mkdirSync(RESULTS, { recursive: true });
  fs.writeFileSync(path.join(RESULTS, `${base}.json`), JSON.stringify(json, null, 2) + '\n');
  fs.writeFileSync(path.join(RESULTS, `${base}.md`), md + '\n');
  console.log(`wrote ${path.relative(process.cwd(), path.join(RESULTS, base))}.{md,json}`);
}
