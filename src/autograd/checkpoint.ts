// Activation checkpointing: checkpoint(fn, ...inputs) runs fn without recording a graph and
// keeps only its inputs; backward runs fn again with autograd on and backpropagates through that
// recomputation. Memory kept for backward drops from every activation inside fn to its inputs
// and output, for the cost of one more forward of fn.
import { defineOp, observeOps } from '../tensor/op';
import { GradNode, Tensor, tidy } from '../tensor/tensor';
import { defaultGenerator } from '../tensor/random';
import { isGradEnabled, setGradEnabled } from '../tensor/grad-mode';
import { backward, detach } from './engine';
import { shapeStr } from '../tensor/shape';

/** A checkpointed function returns one tensor, or an array of tensors and plain values. */
type CheckpointResult = Tensor | readonly unknown[];
type CheckpointFn<R extends CheckpointResult = CheckpointResult> = (...xs: Tensor[]) => R;
type CheckpointAttrs = { fn: CheckpointFn; inputCount: number };

let recomputing = 0;
/**
 * True while a checkpointed function runs again in backward. Layers with side effects that
 * must happen once per step (batch-norm running statistics, batch counters) skip them then.
 */
export function isRecomputing(): boolean {
  return recomputing > 0;
}

export const checkpointOp = defineOp<CheckpointAttrs>({
  name: 'checkpoint',
  backward({ inputs, attrs, saved }, grads) {
    const { fn, inputCount } = attrs;
    const params = inputs.slice(inputCount);
    if (grads.every((g) => !g)) return inputs.map(() => null);
    // Recompute with the random stream fn saw the first time (dropout masks), then put the
    // stream back where it is now.
    const now = defaultGenerator.getState();
    defaultGenerator.setState(saved.rng as number[]);
    const prevGrad = setGradEnabled(true);
    recomputing++;
    try {
      const xs = inputs.slice(0, inputCount).map((x) => {
        const d = detach(x);
        d.requiresGrad = x.requiresGrad;
        return d;
      });
      const outs = tensorsOf(fn(...xs), 'the recomputation');
      // Gradients of the parameters accumulate into their .grad here (as the outer backward
      // would); the inputs' gradients are handed back to the outer backward.
      const live = outs.map((o, i) => [o, grads[i]] as const).filter(([o, gi]) => gi && o.requiresGrad) as [Tensor, Tensor][];
      if (live.length === 1) backward(live[0][0], live[0][1]);
      else if (live.length > 1) backward(live.map(([o, gi]) => o.mul(gi).sum()).reduce((a, b) => a.add(b)));
      const inputGrads: (Tensor | null)[] = xs.map((d) => {
        const dg = d.grad;
        d.grad = null;
        return dg;
      });
      return [...inputGrads, ...params.map(() => null)];
    } finally {
      recomputing--;
      setGradEnabled(prevGrad);
      defaultGenerator.setState(now);
    }
  },
});

/** The float tensors of fn's result, in order (the node's outputs). */
function tensorsOf(r: unknown, where: string): Tensor[] {
  if (r instanceof Tensor) return [r];
  if (Array.isArray(r) && r.some((x) => x instanceof Tensor)) return r.filter((x): x is Tensor => x instanceof Tensor);
  throw new Error(`checkpoint: fn must return a Tensor or an array holding tensors, ${where} returned ${r === null ? 'null' : Array.isArray(r) ? 'an array without tensors' : typeof r}`);
}

/**
 * Runs fn(...inputs) keeping none of its intermediate activations for backward: they are
 * recomputed when backward reaches fn's output. The parameters fn uses are found by watching
 * its ops, so fn can be any function of tensors and modules (e.g. `(x) => block.forward(x)`).
 * Without autograd (noGrad, or nothing requiring grad) it is just fn(...inputs). Dropout inside
 * fn draws the same masks in the recomputation (the default generator is rewound); a generator
 * passed explicitly to an op inside fn is not. BatchNorm2d updates its running statistics once.
 */
export function checkpoint<R extends CheckpointResult>(fn: CheckpointFn<R>, ...inputs: Tensor[]): R {
  if (typeof fn !== 'function') throw new Error('checkpoint: the first argument must be a function of tensors');
  inputs.forEach((x, i) => {
    if (!(x instanceof Tensor)) throw new Error(`checkpoint: input ${i} must be a Tensor, got ${x === null ? 'null' : typeof x}`);
    x.assertAlive('checkpoint');
  });
  if (!isGradEnabled() || recomputing > 0) return fn(...inputs);
  const rng = defaultGenerator.getState();
  const leaves = new Set<Tensor>();
  const own = new Set(inputs);
  const firstId = Tensor.nextTensorId();
  let captured: Tensor | null = null;
  const stop = observeOps((_op, ins) => {
    for (const t of ins) {
      if (!t.requiresGrad || own.has(t) || t.id >= firstId) continue;
      if (t.isLeaf) leaves.add(t);
      else captured ??= t;
    }
  });
  const prev = setGradEnabled(false);
  let result: R;
  let outs: Tensor[];
  try {
    result = tidy(() => {
      const r = fn(...inputs);
      tensorsOf(r, 'it');
      return r;
    });
    outs = tensorsOf(result, 'it');
  } finally {
    setGradEnabled(prev);
    stop();
  }
  if (captured) {
    outs.forEach((o) => o.dispose());
    throw new Error(`checkpoint: fn reads a tensor ${shapeStr((captured as Tensor).shape)} that requires grad and was computed outside it; pass it to checkpoint as an input so its gradient can flow`);
  }
  const params = [...leaves];
  if (!inputs.some((x) => x.requiresGrad) && params.length === 0) return result;
  // The node is recorded by hand: its inputs (and so what backward keeps) are fn's inputs and
  // the parameters it read, which are known only after fn ran.
  const node: GradNode = { op: checkpointOp as never, inputs: [...inputs, ...params], outputs: outs, attrs: { fn, inputCount: inputs.length }, saved: { rng }, released: false };
  outs.forEach((o, i) => {
    if (o.dtype !== 'float32' && o.dtype !== 'float64') return;
    o.requiresGrad = true;
    o.gradFn = node;
    o.outputIndex = i;
  });
  return result;
}
