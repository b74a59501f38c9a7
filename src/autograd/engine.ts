// Reverse-mode autograd over the nodes that apply() records: backward() walks them in reverse
// topological order, accumulates leaf gradients into .grad and frees the graph.
import { GradNode, Tensor, tidy } from '../tensor/tensor';
import { isGradEnabled, setGradEnabled } from '../tensor/grad-mode';
import { keep } from '../tensor/scope';
import { add, onesLike } from '../tensor/ops/elementwise';
import { contiguous } from '../tensor/ops/view';
import { shapeStr, sameShape } from '../tensor/shape';

/** Runs fn with gradient recording off; returns fn's result. */
export function noGrad<T>(fn: () => T): T {
  const prev = setGradEnabled(false);
  try {
    return fn();
  } finally {
    setGradEnabled(prev);
  }
}

/** Runs fn with gradient recording on (inside a noGrad block, for example). */
export function enableGrad<T>(fn: () => T): T {
  const prev = setGradEnabled(true);
  try {
    return fn();
  } finally {
    setGradEnabled(prev);
  }
}

export { isGradEnabled };

/** A tensor sharing t's memory, cut from the graph. */
export function detach(t: Tensor): Tensor {
  t.assertAlive('detach');
  return new Tensor(t.storage, t.shape.slice(), t.dtype, t.strides.slice(), t.offset);
}

function topoOrder(root: GradNode): GradNode[] {
  const order: GradNode[] = [];
  const seen = new Set<GradNode>();
  const stack: [GradNode, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [node, i] = top;
    if (i < node.inputs.length) {
      top[1]++;
      const child = node.inputs[i].gradFn;
      if (child && !seen.has(child)) {
        seen.add(child);
        stack.push([child, 0]);
      }
    } else {
      order.push(node);
      stack.pop();
    }
  }
  return order.reverse(); // root first
}

export interface BackwardOptions {
  /** Keep the graph so backward can run through it again. */
  retainGraph?: boolean;
  /**
   * Dispose each intermediate tensor of the graph (every output of a recorded op but the root)
   * as soon as the last node that reads it has run its backward, as PyTorch frees saved
   * activations: backward's peak memory then falls as it goes instead of holding every
   * activation until the step's tidy() ends. For training steps where nothing outside keeps an
   * intermediate (fit() uses it); reading one afterwards is an error that says it was freed.
   */
  freeActivations?: boolean;
}

/** Computes gradients of `root` (a scalar, or with `grad` of root's shape) into leaves' .grad. */
export function backward(root: Tensor, grad?: Tensor | null, opts: BackwardOptions = {}): void {
  root.assertAlive('backward');
  if (!root.requiresGrad) throw new Error('backward: the tensor does not require grad (no input had requiresGrad, or it was computed under noGrad)');
  if (!grad && root.size !== 1) throw new Error(`backward: a gradient is needed for a non-scalar output of shape ${shapeStr(root.shape)}`);
  if (grad && !sameShape(grad.shape, root.shape)) throw new Error(`backward: gradient shape ${shapeStr(grad.shape)} does not match the output's ${shapeStr(root.shape)}`);
  if (opts.retainGraph && opts.freeActivations) throw new Error('backward: retainGraph and freeActivations exclude each other (a retained graph needs its activations)');
  const prev = setGradEnabled(false);
  try {
    tidy(() => {
      const seed = grad ?? onesLike(root);
      // Gradients that became a leaf's .grad: never freed here.
      const assigned = new Set<Tensor>();
      // Set per node below: gradients this backward made and nothing else holds, which a leaf
      // may take as its .grad without a copy.
      let ownable: (g: Tensor) => boolean = () => false;
      const accumulateLeaf = (leaf: Tensor, g: Tensor) => {
        if (!sameShape(g.shape, leaf.shape)) throw new Error(`backward: internal error: gradient ${shapeStr(g.shape)} for a leaf of shape ${shapeStr(leaf.shape)}`);
        if (leaf.grad) {
          const old = leaf.grad;
          leaf.grad = keep(add(old, g));
          assigned.delete(old);
          old.dispose();
        } else if (g.isContiguous() && ownable(g)) {
          // A leaf's .grad is its own contiguous tensor (optimisers update it in place).
          leaf.grad = keep(g);
          assigned.add(g);
        } else {
          leaf.grad = keep(contiguous(add(g, 0)));
        }
      };
      if (!root.gradFn) {
        accumulateLeaf(root, seed);
        return;
      }
      if (root.gradFn.released) throw new Error('backward: the graph was already freed by an earlier backward(); pass {retainGraph: true} to the first call');
      const pending = new Map<GradNode, (Tensor | null)[]>();
      pending.set(root.gradFn, root.gradFn.outputs.map((_, i) => (i === root.outputIndex ? seed : null)));
      // Gradients are freed as soon as the last node that reads them has run, so backward's peak
      // is the activations plus the gradients in flight, not every gradient of the graph. Only
      // tensors this backward created are freed early (ids are increasing): a backward that
      // returns a tensor from elsewhere keeps it, and the caller's seed and leaves' .grad stay.
      const firstId = Tensor.nextTensorId();
      const uses = new Map<Tensor, number>();
      const hold = (t: Tensor) => uses.set(t, (uses.get(t) ?? 0) + 1);
      const releaseIfUnused = (t: Tensor) => {
        if (t.id >= firstId && !uses.get(t) && !assigned.has(t) && t !== grad) {
          uses.delete(t);
          t.dispose();
        }
      };
      const release = (t: Tensor) => {
        uses.set(t, (uses.get(t) ?? 1) - 1);
        releaseIfUnused(t);
      };
      hold(seed);
      const order = topoOrder(root.gradFn);
      // freeActivations: how many nodes still to run read each intermediate (as an input or as
      // their own output); at zero it is disposed. Leaves (parameters, inputs) and the root stay.
      const readers = new Map<Tensor, number>();
      if (opts.freeActivations) {
        for (const node of order)
          for (const t of [...node.inputs, ...node.outputs]) if (t.gradFn && t !== root) readers.set(t, (readers.get(t) ?? 0) + 1);
      }
      const doneWith = (node: GradNode) => {
        if (!opts.freeActivations) return;
        for (const t of [...node.inputs, ...node.outputs]) {
          const left = (readers.get(t) ?? 0) - 1;
          readers.set(t, left);
          if (left === 0) t.disposeAs('backward({ freeActivations: true }) freed it once the graph no longer needed it');
        }
        for (const v of Object.values(node.saved)) if (v instanceof Tensor) v.dispose();
        node.saved = {};
      };
      for (const node of order) {
        const gOut = pending.get(node);
        pending.delete(node);
        if (!gOut || gOut.every((g) => g === null)) {
          doneWith(node);
          continue;
        }
        if (node.released) throw new Error(`backward: the graph through '${node.op.name}' was already freed; pass {retainGraph: true} to the first backward()`);
        // Temporaries of the op's backward (not its returned gradients) are freed when it returns.
        const gIn = tidy(() => node.op.backward!({ inputs: node.inputs, outputs: node.outputs, attrs: node.attrs, saved: node.saved }, gOut));
        ownable = (g) => g.id >= firstId && !uses.get(g) && !assigned.has(g) && g !== grad && gIn.filter((x) => x === g).length === 1;
        node.inputs.forEach((inp, i) => {
          const g = gIn[i];
          if (!g || !inp.requiresGrad) return;
          if (!sameShape(g.shape, inp.shape)) throw new Error(`backward: '${node.op.name}' produced a gradient of shape ${shapeStr(g.shape)} for input ${i} of shape ${shapeStr(inp.shape)}`);
          if (inp.gradFn) {
            const slot = pending.get(inp.gradFn) ?? inp.gradFn.outputs.map(() => null);
            const cur = slot[inp.outputIndex];
            const next = cur ? add(cur, g) : g;
            hold(next);
            slot[inp.outputIndex] = next;
            pending.set(inp.gradFn, slot);
            if (cur) release(cur);
          } else {
            accumulateLeaf(inp, g);
          }
        });
        // Gradients summed into a slot or a leaf and not held anywhere else go now.
        for (const g of gIn) if (g) releaseIfUnused(g);
        for (const g of gOut) if (g) release(g);
        doneWith(node);
      }
      if (!opts.retainGraph) {
        for (const node of order) {
          node.released = true;
          node.saved = {};
          node.inputs = [];
        }
      }
    });
  } finally {
    setGradEnabled(prev);
  }
}
