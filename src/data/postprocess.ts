/**
 * Post-processing of binary (0/1) masks, applied after thresholding:
 *   lcc          keep only the largest connected foreground component;
 *   min-area=N   remove foreground components with fewer than N pixels;
 *   fill         fill holes: background regions that do not touch the image border.
 *
 * Connectivity: foreground components are 8-connected (diagonal neighbours join), and
 * background regions (holes) are 4-connected, the dual pairing of digital topology: with
 * 8-connected foreground, a background region that leaks out only through a diagonal gap
 * between two foreground pixels is enclosed, so it is a hole (as scipy's binary_fill_holes
 * with its default cross structure treats it). Ties for the largest component go to the
 * one met first in raster order, so the result is deterministic.
 *
 * Masks are laid out row-major [h, w]; every function returns a new array and leaves its
 * input unchanged.
 */

export type PostStep = { op: 'lcc' } | { op: 'min-area'; area: number } | { op: 'fill' };

/** Parsed `--post` steps, applied in the order written. */
export type PostSpec = PostStep[];

function checkMask(mask: ArrayLike<number>, h: number, w: number, where: string): void {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) throw new Error(`${where}: mask size must be positive integers, got ${h}x${w}`);
  if (mask.length !== h * w) throw new Error(`${where}: mask has ${mask.length} values, expected ${h}x${w} = ${h * w}`);
}

/**
 * Labels the connected components of the pixels where `mask[i] === value`, with 4- or
 * 8-connectivity. Returns labels (0 = not part of any component, 1..count in raster order of
 * each component's first pixel) and each component's area (areas[k - 1] for label k).
 */
export function labelComponents(mask: ArrayLike<number>, h: number, w: number, opts: { connectivity?: 4 | 8; value?: 0 | 1 } = {}): { labels: Int32Array; count: number; areas: number[] } {
  checkMask(mask, h, w, 'labelComponents');
  const conn = opts.connectivity ?? 8;
  if (conn !== 4 && conn !== 8) throw new Error(`labelComponents: connectivity must be 4 or 8, got ${String(conn)}`);
  const want = opts.value ?? 1;
  const inSet = (i: number) => (mask[i] ? 1 : 0) === want;
  const labels = new Int32Array(h * w);
  const areas: number[] = [];
  // Explicit stack (flood fill): recursion would overflow on large components.
  const stack = new Int32Array(h * w);
  let count = 0;
  for (let start = 0; start < h * w; start++) {
    if (labels[start] || !inSet(start)) continue;
    const label = ++count;
    let top = 0, area = 0;
    stack[top++] = start;
    labels[start] = label;
    while (top > 0) {
      const i = stack[--top];
      area++;
      const y = (i / w) | 0, x = i - y * w;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          if ((dx === 0 && dy === 0) || (conn === 4 && dx !== 0 && dy !== 0)) continue;
          const nx = x + dx;
          if (nx < 0 || nx >= w) continue;
          const j = ny * w + nx;
          if (!labels[j] && inSet(j)) {
            labels[j] = label;
            stack[top++] = j;
          }
        }
      }
    }
    areas.push(area);
  }
  return { labels, count, areas };
}

/** Keeps only the largest 8-connected foreground component (an empty mask stays empty). */
export function keepLargestComponent(mask: ArrayLike<number>, h: number, w: number): Uint8Array {
  const { labels, count, areas } = labelComponents(mask, h, w, { connectivity: 8 });
  const out = new Uint8Array(h * w);
  if (count === 0) return out;
  let best = 0;
  for (let k = 1; k < count; k++) if (areas[k] > areas[best]) best = k;
  for (let i = 0; i < out.length; i++) out[i] = labels[i] === best + 1 ? 1 : 0;
  return out;
}

/** Removes 8-connected foreground components with fewer than `minArea` pixels. */
export function removeSmallComponents(mask: ArrayLike<number>, h: number, w: number, minArea: number): Uint8Array {
  if (!Number.isInteger(minArea) || minArea < 1) throw new Error(`removeSmallComponents: minArea must be a positive integer, got ${String(minArea)}`);
  const { labels, areas } = labelComponents(mask, h, w, { connectivity: 8 });
  const out = new Uint8Array(h * w);
  for (let i = 0; i < out.length; i++) out[i] = labels[i] && areas[labels[i] - 1] >= minArea ? 1 : 0;
  return out;
}

/** Sets to foreground every 4-connected background region that does not touch the image border. */
export function fillHoles(mask: ArrayLike<number>, h: number, w: number): Uint8Array {
  const { labels, count } = labelComponents(mask, h, w, { connectivity: 4, value: 0 });
  const touchesBorder = new Uint8Array(count + 1);
  for (let x = 0; x < w; x++) {
    touchesBorder[labels[x]] = 1;
    touchesBorder[labels[(h - 1) * w + x]] = 1;
  }
  for (let y = 0; y < h; y++) {
    touchesBorder[labels[y * w]] = 1;
    touchesBorder[labels[y * w + w - 1]] = 1;
  }
  const out = new Uint8Array(h * w);
  for (let i = 0; i < out.length; i++) out[i] = mask[i] ? 1 : labels[i] && !touchesBorder[labels[i]] ? 1 : 0;
  return out;
}

const STEP_NAMES = ['lcc', 'min-area=N', 'fill'];

/**
 * Parses a post-processing spec such as `lcc,min-area=64,fill` (comma-separated steps,
 * applied in the order written; `none` or an empty list of steps is not accepted, pass no
 * spec instead). Throws an Error naming the bad step.
 */
export function parsePostSpec(spec: string): PostSpec {
  if (typeof spec !== 'string') throw new Error(`post-processing spec must be a string like 'lcc,min-area=64,fill', got ${typeof spec}`);
  const parts = spec.split(',').map((s) => s.trim());
  if (spec.trim() === '' || parts.some((p) => p === '')) throw new Error(`post-processing spec '${spec}' has an empty step (expected comma-separated steps: ${STEP_NAMES.join(', ')})`);
  const steps: PostSpec = [];
  const seen = new Set<string>();
  for (const part of parts) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? undefined : part.slice(eq + 1).trim();
    if (seen.has(name)) throw new Error(`post-processing spec '${spec}': step '${name}' is given twice`);
    seen.add(name);
    if (name === 'lcc' || name === 'fill') {
      if (value !== undefined) throw new Error(`post-processing step '${name}' takes no value, got '${part}'`);
      steps.push({ op: name });
    } else if (name === 'min-area') {
      if (value === undefined || value === '') throw new Error(`post-processing step 'min-area' needs a value in pixels, e.g. min-area=64`);
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < 1) throw new Error(`post-processing step min-area must be a positive integer (pixels), got '${value}'`);
      steps.push({ op: 'min-area', area: Number(value) });
    } else {
      throw new Error(`unknown post-processing step '${name}' in '${spec}' (expected ${STEP_NAMES.join(', ')})`);
    }
  }
  return steps;
}

/** Applies the steps (a parsed spec or a spec string) in order to a binary mask; returns a new 0/1 mask. */
export function postprocessMask(mask: ArrayLike<number>, h: number, w: number, spec: PostSpec | string): Uint8Array {
  const steps = typeof spec === 'string' ? parsePostSpec(spec) : spec;
  checkMask(mask, h, w, 'postprocessMask');
  let m: Uint8Array = Uint8Array.from(mask as ArrayLike<number>, (v) => (v ? 1 : 0));
  for (const s of steps) {
    if (s.op === 'lcc') m = keepLargestComponent(m, h, w);
    else if (s.op === 'min-area') m = removeSmallComponents(m, h, w, s.area);
    else if (s.op === 'fill') m = fillHoles(m, h, w);
    else throw new Error(`postprocessMask: unknown step ${JSON.stringify(s)}`);
  }
  return m;
}

/** A spec back in its string form (for logs and metrics JSON). */
export function formatPostSpec(steps: PostSpec): string {
  return steps.map((s) => (s.op === 'min-area' ? `min-area=${s.area}` : s.op)).join(',');
}
