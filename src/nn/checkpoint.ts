// Activation checkpointing for modules: sc.nn.checkpoint(fn, ...inputs) (the function form, from
// autograd) and checkpointModules(model), which checkpoints each chosen child while training.
import { checkpoint } from '../autograd/checkpoint';
import { isGradEnabled } from '../tensor/grad-mode';
import { Tensor } from '../tensor/tensor';
import { Module } from './module';
import { ModuleList } from './layers';

export { checkpoint, isRecomputing } from '../autograd/checkpoint';

const WRAPPED = Symbol('checkpointed');

/**
 * Makes `m.forward` checkpointed while training under autograd (one tensor in, one out): its
 * activations are recomputed in backward instead of kept. Eval and noGrad forwards are untouched.
 * Returns m. Idempotent.
 */
export function checkpointed<M extends Module>(m: M): M {
  const tagged = m as M & { [WRAPPED]?: true };
  if (tagged[WRAPPED]) return m;
  const inner = m.forward;
  (m as { forward: unknown }).forward = function (this: Module, ...args: unknown[]) {
    if (m.training && isGradEnabled() && args.length > 0 && args.every((a) => a instanceof Tensor)) {
      return checkpoint((...xs) => inner.apply(m, xs) as Tensor | unknown[], ...(args as Tensor[]));
    }
    return inner.apply(m, args);
  };
  tagged[WRAPPED] = true;
  return m;
}

/**
 * Checkpoints the model's stages: its direct children that hold parameters (the items of a
 * ModuleList child, which has no forward of its own, count as children), or those `pick`
 * selects. Training then keeps only the tensors passed between stages, and each stage's inside
 * is recomputed once during backward (about one extra forward per step). Returns the names
 * wrapped.
 */
export function checkpointModules(model: Module, pick: (name: string, child: Module) => boolean = (_n, c) => c.parameters().length > 0): string[] {
  const names: string[] = [];
  const visit = (m: Module, prefix: string) => {
    for (const [name, child] of m.children()) {
      const full = prefix ? `${prefix}.${name}` : name;
      if (child instanceof ModuleList) visit(child, full);
      else if (pick(full, child)) {
        checkpointed(child);
        names.push(full);
      }
    }
  };
  visit(model, '');
  return names;
}
